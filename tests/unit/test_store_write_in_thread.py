"""Transactions run in one hop to the writer thread (fleet slices, ack commits): committed
as a whole or not at all, seen by caches and readers, audited only when committed."""

import asyncio

import pytest

from rm_server.store import Actor, Store
from rm_server.store.common import audit_row_sync
from rm_server.store.lanes import OPERATOR_LANES

ADMIN = Actor("operator", "op1", "admin")


async def test_commits_as_a_whole_and_bumps_the_generation(tmp_path):
    store = await Store.open(tmp_path / "s.db")
    try:
        before = store.db.generation

        def write(conn):
            conn.execute("INSERT INTO settings (key, value) VALUES ('a', '1')")
            conn.execute("INSERT INTO settings (key, value) VALUES ('b', '2')")
            return "done"

        assert await store.db.write_in_thread(write) == "done"
        assert store.db.generation == before + 1  # cached reads (the full host list) rebuild
        rows = await store.db.fetchall("SELECT key FROM settings WHERE key IN ('a', 'b') ORDER BY key")
        assert [r[0] for r in rows] == ["a", "b"]
    finally:
        await store.close()


async def test_a_failure_rolls_back_everything_and_the_writer_goes_on(tmp_path):
    store = await Store.open(tmp_path / "s.db")
    try:
        def fails(conn):
            conn.execute("INSERT INTO settings (key, value) VALUES ('x', '1')")
            raise ValueError("half-way")

        with pytest.raises(ValueError, match="half-way"):
            await store.db.write_in_thread(fails)
        assert await store.db.fetchall("SELECT 1 FROM settings WHERE key = 'x'") == []
        # No transaction left open: both kinds of writes work afterwards, in any order.
        async with store.db.write() as c:
            await c.execute("INSERT INTO settings (key, value) VALUES ('y', '1')")
        await store.db.write_in_thread(lambda conn: conn.execute("INSERT INTO settings (key, value) VALUES ('z', '1')"))
        assert len(await store.db.fetchall("SELECT 1 FROM settings WHERE key IN ('y', 'z')")) == 2
    finally:
        await store.close()


async def test_writes_of_both_kinds_never_interleave(tmp_path):
    store = await Store.open(tmp_path / "s.db")
    try:
        async def classic(i):
            async with store.db.write() as c:
                await c.execute("INSERT INTO settings (key, value) VALUES (?, '1')", (f"c{i}",))
                await asyncio.sleep(0)
                await c.execute("UPDATE settings SET value = '2' WHERE key = ?", (f"c{i}",))

        async def threaded(i):
            await store.db.write_in_thread(
                lambda conn: conn.execute("INSERT INTO settings (key, value) VALUES (?, '2')", (f"t{i}",)))

        await asyncio.gather(*[classic(i) for i in range(20)], *[threaded(i) for i in range(20)])
        rows = await store.db.fetchall("SELECT value FROM settings WHERE key GLOB '[ct]*'")
        assert [r[0] for r in rows] == ["2"] * 40
    finally:
        await store.close()


async def test_audit_entries_are_announced_after_commit_only(tmp_path):
    store = await Store.open(tmp_path / "s.db")
    heard = []
    store.hosts._audit_listeners.append(heard.append)
    try:
        def audited_write(conn, now, audited):
            audited.append(audit_row_sync(conn, now, ADMIN, "fleet.policy", "nightly", {"hosts": 3}))

        await store.hosts.tx_in_thread(audited_write)
        assert [(e["action"], e["target"], e["details"]) for e in heard] == [("fleet.policy", "nightly", {"hosts": 3})]
        rows = await store.db.fetchall("SELECT id, action FROM audit WHERE action = 'fleet.policy'")
        assert [tuple(r) for r in rows] == [(heard[0]["id"], "fleet.policy")]

        def fails(conn, now, audited):
            audited.append(audit_row_sync(conn, now, ADMIN, "fleet.policy", "other"))
            raise RuntimeError("no")

        with pytest.raises(RuntimeError):
            await store.hosts.tx_in_thread(fails)
        assert len(heard) == 1 and len(await store.db.fetchall("SELECT 1 FROM audit WHERE target = 'other'")) == 0
    finally:
        await store.close()


async def test_readers_never_wait_behind_a_fleet_write(tmp_path):
    # WAL and separate reader connections: a fleet slice holding the writer (here: until the
    # test lets it go) must not delay an operator's read, which sees the last committed state.
    import threading

    store = await Store.open(tmp_path / "s.db")
    try:
        holding, release = threading.Event(), threading.Event()

        def long_write(conn):
            conn.execute("INSERT INTO settings (key, value) VALUES ('slice', '1')")
            holding.set()
            release.wait(10)

        write = asyncio.ensure_future(store.db.write_in_thread(long_write))
        await asyncio.get_running_loop().run_in_executor(None, holding.wait, 10)
        for _ in range(3):  # each reader connection in turn
            rows = await asyncio.wait_for(store.db.fetchall("SELECT count(*) FROM settings WHERE key = 'slice'"), 2)
            assert rows[0][0] == 0  # not yet committed: not seen, and not waited for
        release.set()
        await write
        assert (await store.db.fetchall("SELECT count(*) FROM settings WHERE key = 'slice'"))[0][0] == 1
    finally:
        release.set()
        await store.close()


async def test_a_waiter_wakes_on_the_next_write_of_either_kind_and_not_before(tmp_path):
    store = await Store.open(tmp_path / "s.db")
    try:
        async def classic():
            async with store.db.write() as c:
                await c.execute("INSERT INTO settings (key, value) VALUES ('c', '1')")

        async def threaded():
            await store.db.write_in_thread(lambda conn: conn.execute(
                "INSERT INTO settings (key, value) VALUES ('t', '1')"))

        for write in (classic, threaded):
            before = store.db.generation
            waiters = [asyncio.ensure_future(store.db.committed_after(before)) for _ in range(2)]
            await store.db.fetchall("SELECT 1")  # the waiters are parked; a read is no write
            assert not any(w.done() for w in waiters)
            await write()
            assert await asyncio.wait_for(asyncio.gather(*waiters), 5) == [before + 1] * 2
        # Already past: no wait at all.
        assert await store.db.committed_after(before) == store.db.generation
    finally:
        await store.close()


async def test_operators_reads_never_queue_behind_the_bulk_lane(tmp_path):
    # The bulk lane (a 19k host list, a push's schedule sets) held by a query that waits until
    # the test lets it go: operators' queries still run, on the other readers, meanwhile.
    import threading

    from rm_server.store.lanes import LaneName

    store = await Store.open(tmp_path / "s.db")
    try:
        inside, release = threading.Event(), threading.Event()

        def gate() -> int:
            inside.set()
            release.wait(10)
            return 1

        await store.db.on_lane(LaneName.BULK, lambda conn: conn.create_function("gate", 0, gate))
        bulk = asyncio.ensure_future(store.db.fetchall("SELECT gate()", bulk=True))
        await asyncio.get_running_loop().run_in_executor(None, inside.wait, 10)
        for _ in range(4):  # operators' queries, one after another and three at once
            rows = await asyncio.wait_for(store.db.fetchall("SELECT 2"), 2)
            assert rows[0][0] == 2
        many = await asyncio.wait_for(asyncio.gather(*(store.db.fetchone(f"SELECT {i}") for i in range(3))), 2)
        assert [row[0] for row in many] == [0, 1, 2]
        assert not bulk.done()
        release.set()
        assert (await bulk)[0][0] == 1
    finally:
        release.set()
        await store.close()


async def test_health_probes_share_one_read_per_second_and_a_failure_is_not_remembered(tmp_path):
    store = await Store.open(tmp_path / "s.db")
    reads = []
    real = store.db.fetchone

    async def counting(sql, params=()):
        reads.append(sql)
        return await real(sql, params)

    store.db.fetchone = counting
    try:
        await asyncio.gather(*(store.ping() for _ in range(20)))  # at once: one read
        await store.ping()  # just after: still fresh
        assert reads == ["SELECT 1"]
        store.ping_fresh = 0
        await store.ping()
        assert len(reads) == 2
        for lane in OPERATOR_LANES:  # every operators' lane gone (the bulk lane is not theirs)
            await store.db.lane(lane).close()
        with pytest.raises(RuntimeError):
            await store.ping()
        store.ping_fresh = 60
        with pytest.raises(RuntimeError):  # the failure answered nobody for the next minute
            await store.ping()
    finally:
        store.db.fetchone = real
        await store.close()


async def test_rows_are_converted_in_the_reader_thread(tmp_path):
    # 19k rows turned into Python values in the loop's thread were one uninterruptible piece
    import threading

    store = await Store.open(tmp_path / "s.db")
    try:
        seen = await store.db.fetchall("SELECT 1 UNION ALL SELECT 2", bulk=True,
                                       convert=lambda rows: ([r[0] for r in rows], threading.get_ident()))
        assert seen[0] == [1, 2] and seen[1] != threading.get_ident()
        with pytest.raises(ZeroDivisionError):  # a failing conversion reaches the caller
            await store.db.fetchall("SELECT 1", convert=lambda rows: 1 / 0)
        assert (await store.db.fetchall("SELECT 3"))[0][0] == 3  # and the reader goes on
    finally:
        await store.close()
