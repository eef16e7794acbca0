"""Bulk work on the event loop (a fleet push) in bounded slices, paced by the loop's lag.

A fixed slice size is wrong both ways: too small when the server is idle, too large when
19k acks are flooding in. The pacer yields after `budget` seconds of its own work, and waits
longer the later the loop's timers run (rm_loop_lag_seconds, metrics.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

BUDGET = 0.005  # seconds of bulk work between yields
TARGET_LAG = 0.025  # half the 50 ms loop-lag target: below it, just yield
MAX_PAUSE = 0.005  # a longer pause would make the push itself the slow part


def pause_for(lag: float, target: float = TARGET_LAG, longest: float = MAX_PAUSE) -> float:
    """How long to stand back, given the loop's latest lag: nothing while it keeps up, then as
    long as it runs late (what others are waiting for), never more than `longest`."""
    return 0.0 if lag < target else min(lag, longest)


class Pacer:
    def __init__(self, lag: Callable[[], float], budget: float = BUDGET) -> None:
        self.lag = lag
        self.budget = budget
        self._loop = asyncio.get_running_loop()
        self._since = self._loop.time()
        self.pauses = 0

    async def tick(self) -> None:
        """Call after each unit of work; yields to the loop once the budget is spent."""
        if self._loop.time() - self._since < self.budget:
            return
        self.pauses += 1
        await asyncio.sleep(pause_for(self.lag()))
        self._since = self._loop.time()
