"""Bulk work on the event loop (a fleet push) in bounded slices, paced by what the loop has
to do besides it.

A fixed slice size is wrong both ways: too small when the server is idle, too large when
19k acks are flooding in. Three signals decide when the push stands back:

* the loop's measured lag (rm_loop_lag_seconds, metrics.py): its timers run late;
* the backlog: frames pushed whose answers have not been read yet, kept under a limit that
  grows while the loop keeps up and halves when it runs late (additive increase,
  multiplicative decrease, as TCP's window). Every pushed `schedule.set` comes back as a
  `schedule.ack` a few milliseconds later. asyncio reads all acks that arrived together
  in one loop iteration, so this limit bounds the longest stall an operator's request
  meets behind them, and keeps the acks (and the agents' and the kernel's buffers) from
  piling up faster than the loop reads them. (Acks read and not yet written
  cost the loop nothing: they are not counted, so a push goes on while the writer is busy
  with its next slice);
* operators' requests in flight: they get the loop between two slices."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

BUDGET = 0.005  # seconds of bulk work between yields
TARGET_LAG = 0.025  # half the 50 ms loop-lag target: below it, just yield
MAX_PAUSE = 0.005  # a longer pause would make the push itself the slow part
OPERATOR_PAUSE = 0.001  # between slices while an operator's request is in flight
BACKLOG = 300  # frames in flight to start with (~60 us of reading each: ~20 ms of acks)
# The range the limit moves in with the loop's lag. The floor keeps a push going when the
# loop lags for other reasons (a busy box); at 5,000 agents limits up to 4,000 let ack
# bursts push healthz p99 during the push to 217 ms, these bounds kept it near 60-80 ms.
BACKLOG_MIN, BACKLOG_MAX = 150, 1200
BACKLOG_STEP = 50  # the limit grows by this when a full backlog met a punctual loop
BACKLOG_POLL = 0.002  # how often a full backlog is looked at again
BACKLOG_WAIT = 0.25  # the longest wait for one backlog to drain (answers can be lost)


def pause_for(lag: float, target: float = TARGET_LAG, longest: float = MAX_PAUSE) -> float:
    """How long to stand back, given the loop's latest lag: nothing while it keeps up, then as
    long as it runs late (what others are waiting for), never more than `longest`."""
    return 0.0 if lag < target else min(lag, longest)


def _none() -> int:
    return 0


class Pacer:
    def __init__(self, lag: Callable[[], float], budget: float = BUDGET, *,
                 backlog: Callable[[], int] = _none, limit: int = BACKLOG,
                 operators: Callable[[], int] = _none) -> None:
        self.lag = lag
        self.budget = budget
        self.backlog = backlog
        self.limit = limit
        self.operators = operators
        self._loop = asyncio.get_running_loop()
        self._since = self._loop.time()
        self.pauses = 0
        self.backlog_waits = 0

    async def tick(self) -> None:
        """Call after each unit of work; yields to the loop once the budget is spent or the
        backlog is full, and then waits as the three signals say."""
        if self._loop.time() - self._since < self.budget and self.backlog() < self.limit:
            return
        self.pauses += 1
        lag = self.lag()
        pause = pause_for(lag)
        if pause:  # the loop runs late: fewer answers at a time (halved, down to a floor)
            self.limit = max(BACKLOG_MIN, self.limit // 2)
        elif self.operators():
            pause = OPERATOR_PAUSE
        await asyncio.sleep(pause)
        if self.backlog() >= self.limit:
            self.backlog_waits += 1
            # Until half of it has come back: sending resumes in slices, not frame by frame.
            deadline = self._loop.time() + BACKLOG_WAIT
            while self.backlog() > self.limit // 2 and self._loop.time() < deadline:
                await asyncio.sleep(BACKLOG_POLL)
            if lag < TARGET_LAG / 2:  # the loop kept up: a larger window keeps the agents busier
                self.limit = min(BACKLOG_MAX, self.limit + BACKLOG_STEP)
        self._since = self._loop.time()


class InFlight:
    """Frames sent and not yet answered: sent minus answers counted since the start.

    A frame sent more than `horizon` seconds ago counts as answered: an agent that drops
    off or never answers must not hold the push back for good."""

    def __init__(self, answered: Callable[[], int], horizon: float = 1.0) -> None:
        self._answered = answered
        self._start = answered()
        self._horizon = horizon
        self._loop = asyncio.get_running_loop()
        self.sent = 0
        self._marks: deque[tuple[float, int]] = deque()  # (when, sent so far)
        self._aged = 0  # sent so far as of `horizon` ago

    def add(self, count: int = 1) -> None:
        self.sent += count
        self._marks.append((self._loop.time(), self.sent))

    def __call__(self) -> int:
        cutoff = self._loop.time() - self._horizon
        marks = self._marks
        while marks and marks[0][0] < cutoff:
            self._aged = marks.popleft()[1]
        return max(0, self.sent - max(self._answered() - self._start, self._aged))
