"""The agent's own schedule: rm_core.cron fire times in each schedule's zone, persisted, caught up.

The scheduler owns no network: on each due fire it calls `on_fire(schedule, scheduled_at)`
and the agent decides (send `schedule.fire` when connected, run the backups itself when
not). The last fire of every schedule is persisted before `on_fire` runs, so a fire is
handled at most once and a fire missed while the agent was down runs once at start.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Awaitable, Callable

from rm_agent.outbox import Outbox
from rm_core import cron
from rm_core.protocol import ScheduleSet, ScheduleSpec
from rm_core.times import utcnow
from rm_core.waiting import wait_event

log = logging.getLogger("rm_agent.scheduler")

Clock = Callable[[], datetime]
FireHandler = Callable[[ScheduleSpec, datetime], Awaitable[None]]


def _tz(name: str) -> str:
    """The schedule's zone, or UTC (logged) when this host does not know it."""
    try:
        cron.zone(name or "UTC")
    except cron.CronError:
        log.warning("unknown time zone %r; using UTC", name)
        return "UTC"
    return name or "UTC"


def latest_fire(spec: ScheduleSpec, now: datetime) -> datetime:
    """The most recent fire time at or before `now`, in UTC (see rm_core.cron)."""
    return cron.previous_fire(spec.cron or "", _tz(spec.timezone), now).astimezone(timezone.utc)


def next_fire(spec: ScheduleSpec, after: datetime) -> datetime:
    """The first fire time strictly after `after`, in UTC."""
    return cron.next_fire(spec.cron or "", _tz(spec.timezone), after).astimezone(timezone.utc)


def active(spec: ScheduleSpec) -> bool:
    return spec.enabled and not spec.manual and bool(spec.cron) and cron.is_valid(spec.cron or "")


class Scheduler:
    def __init__(self, store: Outbox, on_fire: FireHandler, clock: Clock = utcnow) -> None:
        self.store = store
        self.on_fire = on_fire
        self.clock = clock
        self._changed = asyncio.Event()
        saved = store.get("schedule_set")
        self.current = ScheduleSet.model_validate(saved) if saved else ScheduleSet(version=0, schedules=[])

    @property
    def version(self) -> int:
        return self.current.version

    def apply(self, new: ScheduleSet) -> None:
        """Replace every entry; new schedules start counting from now (no retro fire)."""
        now = self.clock()
        fires = self.store.last_fires()
        kept = {s.id: fires.get(s.id, now) for s in new.schedules}
        self.store.replace_fires(kept)
        self.store.put("schedule_set", new.model_dump(mode="json"))
        self.current = new
        self._changed.set()

    def due(self, now: datetime | None = None) -> list[tuple[ScheduleSpec, datetime]]:
        """Schedules whose latest fire time is after their recorded last fire (one each)."""
        now = now or self.clock()
        fires = self.store.last_fires()
        out = []
        for spec in self.current.schedules:
            if not active(spec):
                continue
            last = fires.get(spec.id)
            if last is None:  # first sight (e.g. state from an older agent): start counting now
                self.store.set_last_fire(spec.id, now)
                continue
            fire = latest_fire(spec, now)
            if fire > last:
                out.append((spec, fire))
        return out

    def next_wakeup(self, now: datetime | None = None) -> datetime | None:
        now = now or self.clock()
        times = [next_fire(s, now) for s in self.current.schedules if active(s)]
        return min(times) if times else None

    async def tick(self) -> int:
        """Fire everything due now; returns how many fired."""
        fired = 0
        for spec, at in self.due():
            self.store.set_last_fire(spec.id, at)  # before running: at most once per fire
            log.info("schedule %s (%s) fires for %s", spec.name, spec.id, at.isoformat())
            try:
                await self.on_fire(spec, at)
            except Exception:
                log.exception("handling fire of schedule %s failed", spec.id)
            fired += 1
        return fired

    async def run(self) -> None:
        """Tick, then sleep until the next fire time or a schedule change."""
        while True:
            await self.tick()
            wake = self.next_wakeup()
            delay = 60.0 if wake is None else max(0.05, (wake - self.clock()).total_seconds())
            self._changed.clear()
            # re-check at least once a minute: wall clocks jump (NTP, suspend); a cancel (the
            # agent stopping) always ends the loop (rm_core/waiting.py)
            await wait_event(self._changed, min(delay, 60.0))

