"""The fleet push's pacer: yields after a bounded slice of work, stands back while the loop lags."""

import asyncio

from rm_server.services.pacing import MAX_PAUSE, TARGET_LAG, Pacer, pause_for


def test_pause_follows_the_loop_lag():
    assert pause_for(0.0) == 0.0
    assert pause_for(TARGET_LAG / 2) == 0.0
    assert pause_for(0.03) == 0.03
    assert pause_for(10.0) == MAX_PAUSE


async def test_bulk_work_lets_others_run_in_between():
    pacer = Pacer(lambda: 0.0, budget=0.001)
    others = 0
    seen_during_work: list[int] = []

    async def operator():
        nonlocal others
        while True:
            others += 1
            await asyncio.sleep(0)

    task = asyncio.ensure_future(operator())
    await asyncio.sleep(0)
    start = others
    loop = asyncio.get_running_loop()
    end = loop.time() + 0.05
    while loop.time() < end:  # 50 ms of "work" in tiny units
        seen_during_work.append(others)
        await pacer.tick()
    task.cancel()
    assert pacer.pauses >= 10  # about one yield per 1 ms budget
    assert seen_during_work[-1] - start >= 10  # the other task ran between slices


async def test_pacer_stands_back_while_the_loop_lags():
    lags = [0.02]
    pacer = Pacer(lambda: lags[0], budget=0.0)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for _ in range(3):
        await pacer.tick()
    assert loop.time() - t0 >= 0.06  # three pauses of the measured 20 ms lag
    lags[0] = 0.0
    t0 = loop.time()
    for _ in range(3):
        await pacer.tick()
    assert loop.time() - t0 < 0.02
