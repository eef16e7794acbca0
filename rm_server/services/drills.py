"""Restore drills on the server: the ticker that starts them by their cron, and the rule
that flags a source group whose last good drill is too old (one webhook per change).

`due()` and `overdue()` are pure: plain values and a time, tested as tables."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable

from rm_core.cron import CronError, previous_fire
from rm_core.drills import DrillPolicy
from rm_core.enums import ActorKind, JobKind
from rm_server.store import SYSTEM, Actor, NewJob
from rm_server.store.drills import DrillRow

log = logging.getLogger("rm_server.drills")


def due(now: datetime, row: DrillRow) -> bool:
    """The drill's cron fired since it last fired (saving a policy counts as a fire)."""
    policy = row.policy
    if not policy.enabled or not policy.cron:
        return False
    try:
        fired_at = previous_fire(policy.cron, policy.timezone, now)
    except CronError:
        return False
    since = row.last_fire or row.updated_at
    return fired_at > since


def overdue(now: datetime, row: DrillRow) -> bool:
    """No succeeded drill within max_age_hours (counted from the policy's save when never)."""
    policy = row.policy
    if not policy.enabled or not policy.max_age_hours:
        return False
    since = row.last_success or row.updated_at
    return now - since > timedelta(hours=policy.max_age_hours)


class DrillTicker:
    def __init__(self, store: Any, jobs: Any, notify: Callable[[bool, dict[str, Any]], None],
                 clock: Callable[[], datetime],
                 host_changed: Callable[[str], Awaitable[None]] | None = None) -> None:
        self.store = store
        self.jobs = jobs
        self.notify = notify
        self.clock = clock
        # the host resource carries drill_overdue: operators' consoles follow it by host.updated
        self.host_changed = host_changed

    async def set_policy(self, actor: Actor, host_id: str, group_id: str, policy: DrillPolicy) -> None:
        """An operator's drill policy for the group; saving it counts as the cron's fire (due())."""
        await self.store.drills.put(actor, host_id, group_id, policy)

    async def tick(self) -> list[str]:
        """Start the drills that are due on online hosts; flag overdue groups. Returns job ids."""
        now = self.clock()
        started: list[str] = []
        for row in await self.store.drills.ticker_rows():
            if due(now, row) and row.online:
                # drills restore from the repository live: never queued for a host that is away
                await self.store.drills.mark_fired(row.group_id, now)
                tick = now.replace(second=0, microsecond=0).isoformat()  # one per group and minute
                started += [job.id for job in await self.jobs.create(SYSTEM, [NewJob(
                    row.host_id, JobKind.drill, ActorKind.system, None, None, row.group_id, tick=tick)])]
            late = overdue(now, row)
            if late != row.overdue and await self.store.drills.set_overdue(row.group_id, late):
                self.notify(late, {"host_id": row.host_id, "source_group_id": row.group_id,
                                   "last_success": row.last_success.isoformat() if row.last_success else None,
                                   "max_age_hours": row.policy.max_age_hours})
                if self.host_changed is not None:
                    await self.host_changed(row.host_id)
        return started
