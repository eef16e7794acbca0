"""The fleet push's pacer: yields after a bounded slice of work, stands back while the loop lags."""

import asyncio

from rm_server.services.pacing import MAX_PAUSE, TARGET_LAG, Pacer, pause_for


def test_pause_follows_the_loop_lag():
    assert pause_for(0.0) == 0.0
    assert pause_for(TARGET_LAG / 2) == 0.0
    assert pause_for(TARGET_LAG + 0.001) == min(TARGET_LAG + 0.001, MAX_PAUSE)
    assert pause_for(10.0) == MAX_PAUSE


async def test_bulk_work_yields_once_its_budget_is_spent():
    others = 0

    async def operator():
        nonlocal others
        while True:
            others += 1
            await asyncio.sleep(0)

    task = asyncio.ensure_future(operator())
    await asyncio.sleep(0)
    spent = Pacer(lambda: 0.0, budget=0.0)  # every unit spends the budget
    for _ in range(5):
        before = others
        await spent.tick()
        assert others > before  # the other task ran in between
    assert spent.pauses == 5
    fresh = Pacer(lambda: 0.0, budget=60.0)  # within the budget: no yield at all
    before = others
    for _ in range(5):
        await fresh.tick()
    assert fresh.pauses == 0 and others == before
    task.cancel()


async def test_pacer_stands_back_while_the_loop_lags():
    lags = [0.2]
    pacer = Pacer(lambda: lags[0], budget=0.0)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for _ in range(3):
        await pacer.tick()
    assert loop.time() - t0 >= 3 * MAX_PAUSE  # three pauses, each capped
    lags[0] = 0.0
    t0 = loop.time()
    for _ in range(3):
        await pacer.tick()
    assert loop.time() - t0 < 3 * MAX_PAUSE
