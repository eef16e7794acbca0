import asyncio

import pytest

from rm_server.services.batching import GroupCommit


async def test_items_arriving_during_a_write_share_the_next_one():
    writes: list[list[int]] = []
    gate = asyncio.Event()

    async def write(items):
        writes.append(items)
        if len(writes) == 1:
            await gate.wait()  # hold the first write open while more items arrive
        return [i * 10 for i in items]

    gc = GroupCommit(write)
    first = asyncio.ensure_future(gc.submit(1))
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(gc.submit(i)) for i in range(2, 7)]
    await asyncio.sleep(0)
    gate.set()
    assert await first == 10
    assert await asyncio.gather(*rest) == [20, 30, 40, 50, 60]
    assert writes == [[1], [2, 3, 4, 5, 6]]


async def test_a_failed_write_reaches_its_own_waiter_and_the_next_batch_still_runs():
    async def write(items):
        if 0 in items:
            raise RuntimeError("disk full")
        return items

    gc = GroupCommit(write)
    results = await asyncio.gather(gc.submit(0), gc.submit(1), return_exceptions=True)
    # The batch is split and retried: only the item that fails alone hears of it.
    assert isinstance(results[0], RuntimeError) and results[1] == 1
    assert await gc.submit(5) == 5
    await gc.drain()


async def test_result_count_must_match():
    async def write(items):
        return []

    with pytest.raises(ValueError):
        await GroupCommit(write).submit(1)


async def test_submit_nowait_calls_back_once_per_item_in_submission_order():
    writes: list[list[int]] = []
    gate = asyncio.Event()

    async def write(items):
        writes.append(items)
        if len(writes) == 1:
            await gate.wait()
        if 13 in items:
            raise RuntimeError("disk full")
        return [i * 10 for i in items]

    gc = GroupCommit(write)
    seen: list[tuple[int, object]] = []
    for i in (1, 2, 3):  # 1 is written alone; 2 and 3 wait for the next write
        gc.submit_nowait(i, lambda r, e, i=i: seen.append((i, r if e is None else type(e))))
        await asyncio.sleep(0)
    for i in (13, 14):
        gc.submit_nowait(i, lambda r, e, i=i: seen.append((i, r if e is None else type(e))))
    gate.set()
    await gc.drain()
    assert writes[0] == [1]
    assert [i for i, _ in seen] == [1, 2, 3, 13, 14]  # nothing lost, nothing reordered
    assert dict(seen)[1] == 10
    # the batch holding the failing item tells each of its items; other batches are unaffected
    failed = {i for i, r in seen if r is RuntimeError}
    assert 13 in failed and 1 not in failed


async def test_a_lingering_batch_gathers_items_that_arrive_meanwhile():
    batches = []

    async def write(items):
        batches.append(list(items))
        await asyncio.sleep(0)
        return items

    done = []
    lingering = GroupCommit(write, linger=0.05)
    for i in range(3):  # each in its own loop turn, all within the linger
        lingering.submit_nowait(i, lambda r, e: done.append(r))
        await asyncio.sleep(0)
    await lingering.drain()
    assert batches == [[0, 1, 2]] and done == [0, 1, 2]  # one write, callbacks in order

    batches.clear()
    eager = GroupCommit(write)
    for i in range(3):
        eager.submit_nowait(i, lambda r, e: None)
        await asyncio.sleep(0)
    await eager.drain()
    assert len(batches) > 1  # without it the first item is written alone
