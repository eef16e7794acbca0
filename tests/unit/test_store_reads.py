"""Reads see every committed write, even with other reads in flight on the shared reader."""

import asyncio

from rm_server.store import Store


async def test_reads_never_see_a_snapshot_older_than_a_committed_write(tmp_path):
    store = await Store.open(tmp_path / "s.db")
    try:
        async with store.db.write() as c:
            await c.executemany("INSERT INTO settings (key, value) VALUES (?, '0')", [(f"k{i}",) for i in range(2000)])

        async def writer_then_read(i: int) -> bool:
            async with store.db.write() as c:
                await c.execute("INSERT INTO settings (key, value) VALUES (?, '1')", (f"new{i}",))
            return await store.db.fetchone("SELECT 1 FROM settings WHERE key = ?", (f"new{i}",)) is not None

        async def big_reads() -> None:
            for _ in range(20):
                await store.db.fetchall("SELECT * FROM settings")

        results = await asyncio.gather(big_reads(), big_reads(), *[writer_then_read(i) for i in range(200)])
        assert all(results[2:])
    finally:
        await store.close()
