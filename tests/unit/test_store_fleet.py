"""A fleet policy is written in slices; each committed slice is pushed while the next is written."""

import asyncio

from rm_core.ids import new_id
from rm_server.store import Actor, Store

ADMIN = Actor("operator", "op1", "admin")
GROUP = {"includes": ["/etc"], "excludes": [], "tag": "nightly", "retention": {"keep_daily": 7}}
SCHEDULE = {"cron": "0 3 * * *", "timezone": "UTC", "enabled": True}


async def test_slices_are_pushed_in_order_after_their_commit_beside_the_next_write(tmp_path, monkeypatch):
    store = await Store.open(tmp_path / "s.db")
    monkeypatch.setattr(store.fleet.d, "policy_slice", 2)
    try:
        ids = sorted(new_id() for _ in range(5))
        async with store.db.write() as c:
            await c.executemany("INSERT INTO hosts (id, hostname, status, created_at, initial_paths)"
                                " VALUES (?, ?, 'online', '2026-01-01T00:00:00+00:00', '[]')",
                                [(h, f"h{i}") for i, h in enumerate(ids)])
        pushed = []

        async def push(chunk):
            # Read before the first await: the next slice's write is scheduled behind this
            # task, so it cannot have committed yet (read after the query below, a fast write
            # could already have bumped it, and the wait would be for a write that never comes).
            generation = store.db.generation
            rows = await store.db.fetchall(
                f"SELECT schedule_version FROM hosts WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            assert [r[0] for r in rows] == [1] * len(chunk)  # committed before it is pushed
            pushed.append(chunk)
            if chunk[-1] != ids[-1]:  # the next slice gets written while this one is pushed
                # Were the write held back until this push returns, this would never end:
                # the timeout is the failure, not the synchronisation.
                await asyncio.wait_for(store.db.committed_after(generation), 5)

        await store.fleet.apply_policy(ADMIN, "nightly", ids, GROUP, SCHEDULE, push)
        assert pushed == [ids[0:2], ids[2:4], ids[4:5]]
        # Once more: updated in place, one group and one schedule per host, linked.
        await store.fleet.apply_policy(ADMIN, "nightly", ids, {**GROUP, "includes": ["/srv"]},
                                       {**SCHEDULE, "cron": "5 4 * * *"}, None)
        rows = await store.db.fetchall(
            "SELECT h.schedule_version, s.cron, g.includes FROM hosts h JOIN schedules s ON s.host_id = h.id"
            " JOIN schedule_groups sg ON sg.schedule_id = s.id JOIN source_groups g ON g.id = sg.source_group_id"
            " ORDER BY h.id")
        assert [tuple(r) for r in rows] == [(2, "5 4 * * *", '["/srv"]')] * 5
        audit = await store.db.fetchall("SELECT count(*) FROM audit WHERE action = 'fleet.policy'")
        assert audit[0][0] == 6  # one entry per slice
        # New hosts and known ones in the same slices: inserted beside updated, nothing doubled.
        more = sorted(new_id() for _ in range(2))
        async with store.db.write() as c:
            await c.executemany("INSERT INTO hosts (id, hostname, status, created_at, initial_paths)"
                                " VALUES (?, ?, 'online', '2026-01-01T00:00:00+00:00', '[]')",
                                [(h, f"n{i}") for i, h in enumerate(more)])
        await store.fleet.apply_policy(ADMIN, "nightly", more + ids, GROUP, SCHEDULE, None)
        rows = await store.db.fetchall(
            "SELECT h.id, count(DISTINCT s.id), count(DISTINCT g.id), max(s.cron) FROM hosts h"
            " JOIN schedules s ON s.host_id = h.id JOIN schedule_groups sg ON sg.schedule_id = s.id"
            " JOIN source_groups g ON g.id = sg.source_group_id AND g.host_id = h.id GROUP BY h.id ORDER BY h.id")
        assert [tuple(r) for r in rows] == [(h, 1, 1, "0 3 * * *") for h in sorted(more + ids)]
    finally:
        await store.close()
