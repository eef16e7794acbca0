"""The anomaly tell on the server: each good backup judged against its group's history (the
pure rule is rm_core/anomaly.py), a flagged one marked `warning` with its reason, raised as
`backup.anomaly` and shown on its host until an operator acknowledges it; while it is open a
group with `pause_forget` keeps every snapshot. Also the plots' history and the fleet's growth."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from rm_core import protocol as p
from rm_core.anomaly import Run, judge, lines
from rm_core.enums import JobKind, JobState
from rm_core.history import AcknowledgeBody, Anomaly, FleetGrowth, GroupHistory, HistoryRun, HostGrowth
from rm_core.jobs import Job
from rm_server.services.agent_messages import AgentMessages
from rm_server.services.hosts import HostService
from rm_server.store import Actor, NotFound, Store
from rm_server.store.anomalies import Anomalies, PastRun
from rm_server.ws.event_hub import EventHub

log = logging.getLogger("rm_server.anomalies")

GOOD = (JobState.succeeded, JobState.warning)
SLACK = 10  # more past runs read than the policy's history: flagged ones are left out


@dataclass(eq=False)
class AnomalyService:
    store: Store
    anomalies: Anomalies
    hosts: HostService
    events: EventHub
    notify: Callable[[str, str, str | None], None]  # Notifier.backup_anomaly(host_id, reason, job_id)
    clock: Callable[[], datetime]

    def register(self, messages: AgentMessages) -> None:
        """Judge every finished backup first (a copy that follows reads the same job), and keep
        the repository's size after every report."""
        messages.after_job.insert(0, self.after_backup)
        messages.after_stats.append(self.on_stats)

    async def on_stats(self, host_id: str, stats: p.RepoStats) -> None:
        if stats.total_size is not None:
            await self.anomalies.add_size(host_id, stats.total_size)

    async def _history(self, group_id: str, depth: int, before_job: str | None = None) -> tuple[list[PastRun], list[Run]]:
        """The group's past good backups (newest first) and the runs its usual is made of:
        backups flagged and not yet acknowledged are not usual."""
        past = await self.anomalies.past_runs(group_id, depth + SLACK, before_job)
        flagged = await self.anomalies.open_job_ids(group_id)
        runs = [r for r in (Run.of(pr.summary) for pr in past if pr.job_id not in flagged) if r is not None]
        return past, runs[:depth]

    async def after_backup(self, job: Job) -> Anomaly | None:
        if job.kind != JobKind.backup or job.state not in GOOD or not job.source_group_id:
            return None
        size = (await self.store.reports.stats(job.host_id) or {}).get("total_size")
        try:
            group = await self.store.schedules.group(job.host_id, job.source_group_id)
        except NotFound:
            return None
        run = Run.of(job.summary)
        verdict = None
        if run is not None and group.anomaly.enabled:
            _, history = await self._history(group.id, group.anomaly.history, before_job=job.id)
            verdict = judge(run, history, group.anomaly)
        if verdict is None:
            await self.anomalies.set_repo_size(job.id, size)
            return None
        found = await self.anomalies.record(job.host_id, group.id, job.id, verdict.measure, verdict.reason,
                                            verdict.details(), size)
        if found is None:
            return None  # judged before (a resent job.finished)
        log.warning("backup %s of host %s (group %s) is an anomaly: %s", job.id, job.host_id, group.name,
                    verdict.reason)
        # job.updated straight to operators: the job's own warning alert would only repeat this one
        self.events.publish("job.updated", await self.store.jobs.get(job.id))
        self.notify(job.host_id, f"{group.name}: {verdict.reason}", job.id)
        await self.hosts.changed(job.host_id)
        return found

    # ------------------------------------------------------------ operators

    async def of_host(self, host_id: str, open_only: bool, limit: int) -> list[Anomaly]:
        await self.store.hosts.get(host_id)
        return await self.anomalies.of_host(host_id, open_only=open_only, limit=limit)

    async def acknowledge(self, actor: Actor, host_id: str, body: AcknowledgeBody) -> list[Anomaly]:
        await self.store.hosts.get(host_id)
        if body.source_group_id:
            await self.store.schedules.group(host_id, body.source_group_id)
        done = await self.anomalies.acknowledge(actor, host_id, body.ids, body.source_group_id, body.note)
        if done:
            await self.hosts.changed(host_id)
        return done

    async def history(self, host_id: str, group_id: str, limit: int) -> GroupHistory:
        """The group's last `limit` good backups, oldest first, and the lines the next one meets."""
        group = await self.store.schedules.group(host_id, group_id)
        past, runs = await self._history(group.id, max(limit, group.anomaly.history))
        drawn = lines(runs[: group.anomaly.history], group.anomaly) if group.anomaly.enabled else {}
        out = []
        for pr in reversed(past[:limit]):
            run = Run.of(pr.summary)
            summary = pr.summary or {}
            duration = summary.get("total_duration")
            out.append(HistoryRun(
                job_id=pr.job_id, finished_at=pr.finished_at, state=pr.state,
                duration=float(duration) if isinstance(duration, (int, float)) else None,
                data_added=run.data_added if run else None, files_changed=run.files_changed if run else None,
                total_files=run.total_files if run else None, repo_size=pr.repo_size, anomaly=pr.anomaly))
        return GroupHistory(source_group_id=group.id, runs=out,
                            lines={k: round(v.threshold, 3) for k, v in drawn.items() if k != "files_removed"})

    async def growth(self, days: int, limit: int) -> FleetGrowth:
        """Every host's repository size over the last `days` days, fastest growing first."""
        now = self.clock()
        since = now - timedelta(days=days)
        sizes = await self.anomalies.sizes_since(since)
        hosts = await self.store.hosts.get_many(list(sizes))
        out = []
        for host_id, points in sizes.items():
            host = hosts.get(host_id)
            if host is None:
                continue
            daily = _daily(points, since, days)
            first, last = points[0][1], points[-1][1]
            out.append(HostGrowth(host_id=host_id, hostname=host.hostname, size=last, size_before=first,
                                  growth=last - first, points=daily))
        out.sort(key=lambda h: (-(h.growth or 0), h.hostname))
        return FleetGrowth(days=days, hosts=out[:limit])


def _daily(points: list[tuple[datetime, int]], since: datetime, days: int) -> list[int]:
    """The size at the end of each day from `since` (a day without a report keeps the last size)."""
    out: list[int] = []
    i, last = 0, points[0][1]
    for day in range(1, days + 1):
        end = since + timedelta(days=day)
        while i < len(points) and points[i][0] <= end:
            last = points[i][1]
            i += 1
        out.append(last)
    return out
