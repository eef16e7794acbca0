"""The SQLite-built host list must say exactly what the model-built one says."""

import json
import sqlite3
from datetime import datetime, timezone

from rm_core.api import Host
from rm_core.enums import HostStatus
from rm_core.ids import new_id
from rm_core.protocol import RepoStats
from rm_server.store import Actor, Store


async def three_hosts(store: Store) -> list[str]:
    ids = [new_id() for _ in range(3)]
    async with store.db.write() as c:
        await c.executemany("INSERT INTO hosts (id, hostname, created_at) VALUES (?, ?, '2026-01-01T00:00:00+00:00')",
                            [(h, f"h{i}") for i, h in enumerate(ids)])
    return ids


async def test_list_json_matches_models(tmp_path):
    store = await Store.open(tmp_path / "s.db")
    try:
        ids = [new_id() for _ in range(4)]
        async with store.db.write() as c:
            await c.executemany(
                "INSERT INTO hosts (id, hostname, status, created_at, initial_paths) VALUES (?, ?, ?, ?, ?)",
                [(h, f"h{i}", ["pending", "online", "offline", "online"][i], "2026-01-01T00:00:00+00:00",
                  '["/etc"]' if i else "[]") for i, h in enumerate(ids)],
            )
            await c.execute(
                "UPDATE hosts SET stale = 1, last_backup_job_id = 'j1', last_backup_state = 'warning',"
                " last_backup_at = '2026-01-02T00:00:00+00:00', last_seen = '2026-01-02T00:00:00+00:00',"
                " restic_version = '0.14.0' WHERE id = ?", (ids[1],))
        await store.reports.replace_stats(ids[1], RepoStats(total_size=1234))
        from_sql = [Host.model_validate(h) for h in json.loads(await store.hosts.list_json())["hosts"]]
        assert from_sql == await store.hosts.page()
        h1 = next(h for h in from_sql if h.id == ids[1])
        assert h1.repo_size == 1234 and h1.stale and h1.last_backup.state == "warning"
        online = json.loads(await store.hosts.list_json(status=HostStatus.online))["hosts"]
        assert sorted(h["hostname"] for h in online) == ["h1", "h3"]
        assert len(json.loads(await store.hosts.list_json(status=HostStatus.online, limit=1))["hosts"]) == 1
        assert json.loads(await store.hosts.list_json(q="h%"))["hosts"] == [], "LIKE wildcards are escaped"
        after = json.loads(await store.hosts.list_json(after=ids[1]))["hosts"]
        assert [h["id"] for h in after] == sorted(ids)[sorted(ids).index(ids[1]) + 1:]
    finally:
        await store.close()


async def test_full_list_body_is_cached_until_a_write_commits(tmp_path):
    store = await Store.open(tmp_path / "s.db")
    try:
        ids = await three_hosts(store)
        first = await store.hosts.list_json()
        assert await store.hosts.list_json() is first  # served again, not rebuilt
        assert await store.hosts.list_json(limit=2) is not first  # filtered lists are never cached

        await store.hosts.touch_many([(ids[0], datetime(2026, 5, 1, tzinfo=timezone.utc))])  # a heartbeat flush
        after_touch = json.loads(await store.hosts.list_json())["hosts"]
        assert next(h for h in after_touch if h["id"] == ids[0])["last_seen"].startswith("2026-05-01")

        await store.reports.replace_stats(ids[1], RepoStats(total_size=99))  # a joined row changes
        assert next(h for h in json.loads(await store.hosts.list_json())["hosts"] if h["id"] == ids[1])["repo_size"] == 99

        before = await store.hosts.list_json()
        try:  # a rolled-back write changes nothing, and the body may stay
            async with store.db.write() as c:
                await c.execute("UPDATE hosts SET hostname = 'zz' WHERE id = ?", (ids[2],))
                raise RuntimeError("abort")
        except RuntimeError:
            pass
        assert b"zz" not in await store.hosts.list_json()
        assert json.loads(before) == json.loads(await store.hosts.list_json())

        # another process writes (rm-server host remove runs beside the server)
        other = sqlite3.connect(tmp_path / "s.db")
        other.execute("DELETE FROM hosts WHERE id = ?", (ids[2],))
        other.commit()
        other.close()
        assert [h["id"] for h in json.loads(await store.hosts.list_json())["hosts"]] == sorted(ids[:2])
    finally:
        await store.close()


async def test_consoles_asking_for_the_full_list_at_once_share_one_build_off_the_bulk_lane(tmp_path):
    import asyncio

    from rm_server.store.lanes import LaneName
    store = await Store.open(tmp_path / "s.db")
    try:
        ids = await three_hosts(store)
        builds = []
        real = store.db.fetchall

        async def counting(sql, params=(), lane=None, *, bulk=False, **kw):
            if "json_group_array" in sql:
                builds.append((lane, bulk))
            return await real(sql, params, lane, bulk=bulk, **kw)

        store.db.fetchall = counting
        bodies = await asyncio.gather(*(store.hosts.list_json() for _ in range(5)))
        assert len(builds) == 1 and all(b is bodies[0] for b in bodies)
        assert builds[0][0] is LaneName.WHOLE_LIST and not builds[0][1]  # a push's reads never queue behind it
        await store.hosts.touch_many([(ids[0], datetime(2026, 5, 1, tzinfo=timezone.utc))])
        again = await asyncio.gather(*(store.hosts.list_json() for _ in range(3)))
        assert len(builds) == 2 and again[0] is not bodies[0] and b"2026-05-01" in again[0]
        # a console asking after its own write never joins a build that read before that write
        queried, gate = asyncio.Event(), asyncio.Event()
        real_list = store.hosts._list_json

        async def slow_tail(*args, **kwargs):
            body = await real_list(*args, **kwargs)
            queried.set()
            await gate.wait()
            return body

        store.hosts._list_json = slow_tail
        await store.hosts.touch_many([(ids[2], datetime(2026, 6, 1, tzinfo=timezone.utc))])
        early = asyncio.ensure_future(store.hosts.list_json())
        await asyncio.wait_for(queried.wait(), 5)  # its rows are read; the build is not done yet
        await store.hosts.rename(Actor("operator", "op1", "admin"), ids[1], "renamed-after")
        late = asyncio.ensure_future(store.hosts.list_json())
        await asyncio.sleep(0)
        gate.set()
        assert b"renamed-after" not in await early and b"renamed-after" in await late
    finally:
        store.db.fetchall = real
        await store.close()


async def test_token_lookups_asked_together_share_a_query_and_each_gets_its_own_host(tmp_path):
    import asyncio
    store = await Store.open(tmp_path / "s.db")
    try:
        ids = await three_hosts(store)
        async with store.db.write() as c:
            await c.executemany("INSERT INTO agent_tokens (token_hash, host_id, created_at) VALUES (?, ?, '2026-01-01')",
                                [(f"hash-{i}", h) for i, h in enumerate(ids)])
        queries = []
        real = store.db.fetchall

        async def counting(sql, params=(), reader=None, *, bulk=False):
            queries.append(sql)
            assert bulk  # a storm's lookups queue on the bulk lane, never before operators' queries
            return await real(sql, params, reader, bulk=bulk)

        store.db.fetchall = counting
        asked = ["hash-2", "nope", "hash-0", "hash-2", "hash-1"]
        found = await asyncio.gather(*(store.hosts.host_for_agent_token(h) for h in asked))
        assert found == [ids[2], None, ids[0], ids[2], ids[1]]
        assert len(queries) <= 2  # the first lookup alone, then everyone who asked meanwhile

        async with store.db.write() as c:  # revoked: the next lookup must not find it
            await c.execute("DELETE FROM agent_tokens WHERE token_hash = 'hash-1'")
        assert await store.hosts.host_for_agent_token("hash-1") is None
    finally:
        await store.close()


async def test_acks_are_recorded_in_one_statement_never_above_the_issued_version(tmp_path):
    store = await Store.open(tmp_path / "s.db")
    try:
        ids = sorted(new_id() for _ in range(3))
        async with store.db.write() as c:
            await c.executemany(
                "INSERT INTO hosts (id, hostname, status, created_at, initial_paths, schedule_version)"
                " VALUES (?, ?, 'online', '2026-01-01T00:00:00+00:00', '[]', 5)",
                [(h, f"h{i}") for i, h in enumerate(ids)])
        generation = store.db.generation
        recorded = await store.hosts.set_applied_versions({ids[0]: 5, ids[1]: 9, "gone": 3, ids[2]: 0})
        assert recorded == {ids[0]: (5, 5), ids[1]: (5, 5), ids[2]: (5, 0)}  # 9 was never issued
        assert store.db.generation == generation + 1  # the cached host list is rebuilt
        rows = await store.db.fetchall("SELECT id, applied_schedule_version FROM hosts ORDER BY id")
        assert [tuple(r) for r in rows] == [(ids[0], 5), (ids[1], 5), (ids[2], 0)]
        assert await store.hosts.set_applied_versions({}) == {}
    finally:
        await store.close()
