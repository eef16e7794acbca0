"""A group-commit batch with one item that cannot be written still writes the others (item 2)."""

from __future__ import annotations

import asyncio

from rm_server.services.batching import GroupCommit


async def test_poison_item_fails_alone():
    writes: list[list[int]] = []

    async def write(items: list[int]) -> list[int]:
        writes.append(list(items))
        if 13 in items:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return [i * 2 for i in items]

    commit = GroupCommit(write)
    results = await asyncio.gather(*(commit.submit(i) for i in range(40)), return_exceptions=True)
    assert isinstance(results[13], OverflowError)
    assert [r for i, r in enumerate(results) if i != 13] == [i * 2 for i in range(40) if i != 13]
    # Bisection: a poison item costs about 2*log2(n) extra writes, not one per item.
    assert len(writes) <= 2 + 2 * 6, len(writes)
