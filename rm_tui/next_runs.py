"""Each host's next scheduled run, computed by the console's own clock from the host's crons.

A next-run time sent by the server would be stale a minute later; the crons are not. A fleet
under a few policies has a few distinct (cron, timezone) pairs however many hosts it has, so
each pair's next fire is computed once (rm_core.cron, in the schedule's time zone) and reused
for every host until that moment passes: a row costs a few dict lookups."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timezone

from rm_core.cron import CronError, next_fire

Pair = tuple[str, str]  # (cron, timezone)
NEVER = float("inf")
FAR = datetime.max.replace(tzinfo=timezone.utc)  # a cron that never fires: its "no next run" holds


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class NextRuns:
    def __init__(self, clock: Callable[[], datetime] = utc_now) -> None:
        self.clock = clock  # tests (and snapshots) set a fixed one
        self.crons: dict[str, tuple[Pair, ...]] = {}  # host_id -> its enabled cron schedules
        self.loaded = False
        self._fires: dict[Pair, tuple[datetime, datetime | None]] = {}  # pair -> (computed at, next fire)
        self._touched: set[str] = set()  # hosts changed by an event while a full list was on its way

    def begin_load(self) -> None:
        self._touched = set()

    def load(self, crons: dict[str, list[Pair]]) -> None:
        """The whole fleet's crons; a host an event changed meanwhile keeps what the event said."""
        fresh = {h: tuple(pairs) for h, pairs in crons.items()}
        for host_id in self._touched:
            if host_id in self.crons:
                fresh[host_id] = self.crons[host_id]
            else:
                fresh.pop(host_id, None)
        self.crons = fresh
        self.loaded = True

    def put(self, host_id: str, pairs: Iterable[Pair]) -> bool:
        """A host's crons from a schedule.updated event; True when they changed."""
        new = tuple(pairs)
        self._touched.add(host_id)
        if self.crons.get(host_id, ()) == new:
            return False
        if new:
            self.crons[host_id] = new
        else:
            self.crons.pop(host_id, None)
        return True

    def _fire(self, pair: Pair, now: datetime) -> datetime | None:
        since, fire = self._fires.get(pair, (None, None))
        if since is None or not since <= now < (fire or FAR):
            try:
                fire = next_fire(pair[0], pair[1], now)
            except CronError:
                fire = None  # the server validates crons; an unreadable one has no next run here
            self._fires[pair] = (now, fire)
        return fire

    def next(self, host_id: str, now: datetime | None = None) -> datetime | None:
        pairs = self.crons.get(host_id)
        if not pairs:
            return None
        now = now or self.clock()
        fires = [f for f in (self._fire(p, now) for p in pairs) if f is not None]
        return min(fires) if fires else None

    def sort_key(self, host_id: str) -> float:
        """Soonest first; hosts without a scheduled run last."""
        fire = self.next(host_id)
        return fire.timestamp() if fire else NEVER

    def passed(self, now: datetime | None = None) -> bool:
        """True when a computed next run is now in the past (the order by next run changed)."""
        now = now or self.clock()
        return any(f is not None and f <= now for _, f in self._fires.values())


def until(fire: datetime | None, now: datetime | None = None) -> str:
    """'in 42s', 'in 5m', 'in 3h', 'in 2d'; '—' without a scheduled run."""
    if fire is None:
        return "—"
    secs = max(0, int((fire - (now or datetime.now(timezone.utc))).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"in {secs // size}{unit}"
    return f"in {secs}s"
