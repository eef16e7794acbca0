"""The console's side of the bench: a Textual driver that renders like a terminal and
timestamps every frame it is handed, and keys sent in through it, timed to the frame that
shows their effect."""

from __future__ import annotations

import asyncio
import time
from collections import deque

from textual import events
from textual.drivers.headless_driver import HeadlessDriver

SIZE = (200, 50)


class TimedDriver(HeadlessDriver):
    """Renders like a terminal driver (not headless) and timestamps every frame it is handed."""

    frames = 0
    bytes = 0
    waiters: list[tuple[str, float, asyncio.Future]] = []
    recent: deque[tuple[float, str]] = deque(maxlen=200)  # a waiter may be registered after its frame

    @property
    def is_headless(self) -> bool:
        return False  # App._display only builds frames for a non-headless driver

    def write(self, data: str) -> None:
        now = time.perf_counter()
        cls = type(self)
        cls.frames += 1
        cls.bytes += len(data)
        cls.recent.append((now, data))
        if cls.waiters:
            keep = []
            for marker, after, fut in cls.waiters:
                if not fut.done() and now >= after and marker in data:
                    fut.set_result(now)
                elif not fut.done():
                    keep.append((marker, after, fut))
            cls.waiters = keep

    @classmethod
    def expect(cls, marker: str, after: float) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        for t, data in cls.recent:
            if t >= after and marker in data:
                fut.set_result(t)
                return fut
        cls.waiters.append((marker, after, fut))
        return fut

    @classmethod
    def reset(cls) -> None:
        """Counters and frames of a previous size's app gone."""
        cls.frames = cls.bytes = 0
        cls.recent.clear()
        cls.waiters = []


def fleet_screen(app):
    from rm_tui.screens.fleet import FleetScreen

    return app.screen if isinstance(app.screen, FleetScreen) else None


def selected_hostname(app) -> str | None:
    fleet = fleet_screen(app)
    hid = fleet.selected_host_id() if fleet else None
    return fleet.hosts[hid].hostname if hid else None


class Console:
    """Keys in through the driver, frames out of it."""

    def __init__(self, app) -> None:
        self.app = app

    def send(self, key: str, char: str | None = None) -> None:
        ev = events.Key(key, char)
        ev.set_sender(self.app)
        self.app.post_message(ev)  # what the driver does with a key read from the terminal

    async def key_to_frame(self, key: str, expect, timeout: float) -> float | None:
        """Send `key`; ms until a frame holding expect() (computed once the key is handled)."""
        t0 = time.perf_counter()
        before = selected_hostname(self.app)
        self.send(key)
        end = time.monotonic() + timeout
        # which host the key selects is known once the app handled it; the frame comes after
        while time.monotonic() < end:
            now_sel = selected_hostname(self.app)
            if now_sel != before:
                break
            await asyncio.sleep(0.0005)
        else:
            return None
        fut = TimedDriver.expect(expect(), t0)
        try:
            t1 = await asyncio.wait_for(fut, max(0.01, end - time.monotonic()))
        except asyncio.TimeoutError:
            return None
        return (t1 - t0) * 1000

    async def keys(self, n: int, timeout: float, budget: float) -> tuple[list[float], int]:
        """n down/up presses (down to row ~n/2, back up), paced; timeouts counted."""
        out, lost = [], 0
        end = time.monotonic() + budget
        for i in range(n):
            if time.monotonic() > end:
                break
            key = "down" if (i // 20) % 2 == 0 else "up"
            ms = await self.key_to_frame(key, lambda: selected_hostname(self.app) or "\0", timeout)
            if ms is None:
                lost += 1
            else:
                out.append(ms)
            await asyncio.sleep(0.05)
        return out, lost
