"""The one reconnect backoff: the agent's WebSocket, the console's events stream and its job logs."""

from __future__ import annotations

import random
from typing import Callable


class Backoff:
    """Jittered exponential backoff: 1 s, 2 s, 4 s … capped at 60 s, each drawn from [d/2, d]."""

    MAX_ATTEMPT = 32  # 2**32 s is far past any cap; bounds the exponent

    def __init__(self, base: float = 1.0, cap: float = 60.0, rng: Callable[[], float] = random.random) -> None:
        self.base, self.cap, self.rng = base, cap, rng
        self.attempt = 0

    def jump_to_cap(self) -> None:
        """Retry at the cap from now on: only an operator can fix what went wrong."""
        self.attempt = self.MAX_ATTEMPT

    def reset(self) -> None:
        self.attempt = 0

    def next(self) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** self.attempt)
        self.attempt = min(self.attempt + 1, self.MAX_ATTEMPT)
        return ceiling / 2 + self.rng() * ceiling / 2
