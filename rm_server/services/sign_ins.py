"""Failed sign-ins: one log line each, and an audit entry each up to a budget per window.

Who tried which username from where (and why it failed) is what an admin needs to spot a
guessing attack; the password never leaves the login handler. The log takes every failure
the login limiter let through (it bounds them per address; a line is cheap and rotated).
The audit keeps its rows forever and announces each one to every console, so a flood from
many addresses must not grow it without bound: the first `per_window` failures of a window
are listed, later ones only counted, and one `auth.login_failed_summary` entry gives the
count when the window ends. The window opens at the first failure and closes on a timer,
so a flood that stops is still summarised."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from rm_server.store import SYSTEM, Actor, Store

log = logging.getLogger("rm_server.auth")

REASONS = {"wrong_password": "wrong password", "unknown_user": "no such operator",
           "disabled": "account disabled"}


@dataclass(eq=False)
class FailedSignIns:
    store: Store
    per_window: int = 60
    window_seconds: float = 60.0
    listed: int = 0
    unlisted: int = 0
    _timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    async def failed(self, address: str, username: str, reason: str) -> None:
        log.warning("sign-in failed for %r from %s (%s)", username, address, REASONS.get(reason, reason))
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.window_seconds, lambda: loop.create_task(self.close_window()))
        if self.listed >= self.per_window:
            self.unlisted += 1
            return
        self.listed += 1
        await self.store.audit.record(Actor("client", None, address), "auth.login_failed", username,
                                      {"username": username, "address": address, "reason": reason})

    async def close_window(self) -> None:
        """End the current window: its unlisted failures get their one summary entry."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        listed, unlisted = self.listed, self.unlisted
        self.listed = self.unlisted = 0
        if unlisted:
            log.warning("%d more failed sign-ins in the last %.0f s were not listed one by one in the audit",
                        unlisted, self.window_seconds)
            await self.store.audit.record(SYSTEM, "auth.login_failed_summary", None, {
                "unlisted": unlisted, "listed": listed, "window_seconds": self.window_seconds})
