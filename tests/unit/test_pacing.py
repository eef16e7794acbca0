"""The fleet push's pacer: yields after a bounded slice of work, stands back while the loop lags."""

import asyncio

from rm_server.services.pacing import (
    BACKLOG_MAX, BACKLOG_MIN, BACKLOG_POLL, BACKLOG_STEP, BACKLOG_WAIT, MAX_PAUSE, OPERATOR_PAUSE, TARGET_LAG,
    InFlight, Pacer, pause_for,
)


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


async def test_a_full_backlog_holds_the_push_until_half_of_it_is_answered():
    answered = [0]
    in_flight = InFlight(lambda: answered[0], horizon=60.0)
    pacer = Pacer(lambda: 0.0, budget=60.0, backlog=in_flight, limit=10)
    loop = asyncio.get_running_loop()

    async def agents():  # answer one frame per poll until the push may go on
        while True:
            await asyncio.sleep(BACKLOG_POLL)
            answered[0] += 1

    task = asyncio.ensure_future(agents())
    for _ in range(9):
        in_flight.add()
        await pacer.tick()
    assert pacer.pauses == 0  # below the limit: the budget alone decides
    in_flight.add()
    t0 = loop.time()
    await pacer.tick()
    assert pacer.backlog_waits == 1 and in_flight() <= 5  # waited for answers, not a fixed time
    assert loop.time() - t0 < BACKLOG_WAIT
    task.cancel()


async def test_unanswered_frames_stop_counting_after_the_horizon():
    # An agent that never answers must not hold the push back for good.
    loop = asyncio.get_running_loop()
    in_flight = InFlight(lambda: 0, horizon=0.05)
    in_flight.add(3)
    assert in_flight() == 3
    t0 = loop.time()
    pacer = Pacer(lambda: 0.0, budget=60.0, backlog=in_flight, limit=3)
    await pacer.tick()  # waits for the horizon at most, then goes on
    assert in_flight() == 0 and loop.time() - t0 < BACKLOG_WAIT
    answered = [5]
    counted = InFlight(lambda: answered[0])  # answers before the push started do not count
    counted.add(2)
    answered[0] += 1
    assert counted() == 1


async def test_operators_requests_get_the_loop_between_slices():
    loop = asyncio.get_running_loop()
    waiting = [1]
    pacer = Pacer(lambda: 0.0, budget=0.0, operators=lambda: waiting[0])
    t0 = loop.time()
    for _ in range(5):
        await pacer.tick()
    assert loop.time() - t0 >= 5 * OPERATOR_PAUSE  # a real pause, not just one loop turn
    waiting[0] = 0
    t0 = loop.time()
    for _ in range(5):
        await pacer.tick()
    assert loop.time() - t0 < 5 * OPERATOR_PAUSE


async def test_the_backlog_limit_grows_while_the_loop_keeps_up_and_halves_when_it_lags():
    answered, lags = [0], [0.0]
    in_flight = InFlight(lambda: answered[0], horizon=60.0)
    pacer = Pacer(lambda: lags[0], budget=60.0, backlog=in_flight, limit=200)

    async def answer_all():
        await asyncio.sleep(0)
        answered[0] = in_flight.sent

    async def fill_and_answer():
        while in_flight() < pacer.limit:
            in_flight.add()
        await asyncio.gather(pacer.tick(), answer_all())  # the wait ends at the next poll

    await fill_and_answer()
    assert pacer.limit == 200 + BACKLOG_STEP
    for _ in range(100):
        await fill_and_answer()
    assert pacer.limit == BACKLOG_MAX  # bounded
    lags[0] = 10 * TARGET_LAG
    await fill_and_answer()
    assert pacer.limit == BACKLOG_MAX // 2  # a late loop halves it, at once
    for _ in range(20):
        await fill_and_answer()
    assert pacer.limit == BACKLOG_MIN  # never below the floor
