"""The second copy on the server: a copy job after each successful backup of a copy-enabled
group (or by the group's copy cron), the copy repository's reports, and the host's copy lag."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from rm_core import protocol as p
from rm_core.copies import CopyLag, GroupCopy, copy_lag
from rm_core.cron import CronError, previous_fire
from rm_core.enums import ActorKind, CredentialSlot, JobKind, JobState
from rm_core.jobs import Job
from rm_server.services.agent_messages import AgentMessages
from rm_server.services.hosts import HostService
from rm_server.services.jobs import JobService
from rm_server.store import SYSTEM, NewJob, NotFound, Store
from rm_server.store.copies import Copies, CopyCronRow
from rm_server.ws.agent_hub import AgentConnection

log = logging.getLogger("rm_server.copies")

GOOD_BACKUP = (JobState.succeeded, JobState.warning)  # a warning backup wrote its snapshot too


def copy_due(now: datetime, row: CopyCronRow) -> bool:
    """The group's copy cron fired since it last fired (saving the policy counts as a fire)."""
    try:
        fired_at = previous_fire(row.cron, row.timezone, now)
    except CronError:
        return False
    return row.fired_at is None or fired_at > row.fired_at


@dataclass(eq=False)
class CopyService:
    store: Store
    copies: Copies
    jobs: JobService
    hosts: HostService
    clock: Callable[[], datetime]

    async def _start(self, host_id: str, group_id: str) -> Job | None:
        """One copy job for the group, unless one already waits to start (it will copy the new
        snapshot too); a running one may have listed the snapshots before this one existed."""
        if await self.copies.waiting_copy(group_id) is not None:
            return None
        (job,) = await self.jobs.create(SYSTEM, [NewJob(host_id, JobKind.copy, ActorKind.system, None, None, group_id)])
        return job

    async def after_backup(self, job: Job) -> Job | None:
        """A successful backup of a copy-enabled group without a copy cron is followed by a copy."""
        if job.kind != JobKind.backup or job.state not in GOOD_BACKUP or not job.source_group_id:
            return None
        try:
            group = await self.store.schedules.group(job.host_id, job.source_group_id)
        except NotFound:
            return None
        if not group.copy_.enabled or group.copy_.cron:
            return None
        if await self.store.credentials.get(job.host_id, CredentialSlot.copy.value) is None:
            return None
        return await self._start(job.host_id, group.id)

    async def tick(self) -> list[str]:
        """Start the copies whose cron fired (queued for a host that is away, like its backups)."""
        now = self.clock()
        started = []
        for row in await self.copies.cron_rows():
            if not copy_due(now, row):
                continue
            await self.copies.mark_fired(row.group_id, now)
            if await self.store.credentials.get(row.host_id, CredentialSlot.copy.value) is None:
                continue
            job = await self._start(row.host_id, row.group_id)
            if job is not None:
                started.append(job.id)
        return started

    def register(self, messages: AgentMessages) -> None:
        """Join the agent-message table (copy.report) and follow finished jobs and snapshot lists."""
        messages.handlers["copy.report"] = self.on_copy_report
        messages.after_job.append(self.after_backup)
        messages.after_snapshots.append(self.refresh)

    async def on_copy_report(self, conn: AgentConnection, env: p.Envelope) -> None:
        await self.on_report(conn.host_id, env.payload)

    # ------------------------------------------------------------ what the copy holds

    async def on_report(self, host_id: str, report: p.CopyReport) -> None:
        await self.copies.put_report(host_id, report)
        await self.refresh(host_id)

    async def refresh(self, host_id: str) -> CopyLag | None:
        """Recompute the host's copy lag from the primary's and the copy's snapshot lists;
        operators hear of the host when it changed."""
        try:
            groups = [g for g in await self.store.schedules.groups(host_id) if g.copy_.enabled]
        except NotFound:
            return None
        has_copy = await self.store.credentials.get(host_id, CredentialSlot.copy.value) is not None
        enabled = has_copy and bool(groups)
        lag = CopyLag(None, None, 0)
        if enabled:
            lag = copy_lag(await self.store.reports.snapshots(host_id), await self.copies.snapshots(host_id),
                           [GroupCopy(g.tag, timedelta(hours=g.copy_.max_lag_hours)) for g in groups])
        if await self.copies.set_lag(host_id, enabled, lag):
            await self.hosts.changed(host_id)
        return lag
