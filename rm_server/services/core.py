"""Domain services: what happens when an operator or an agent changes something.

Handlers stay thin and call these; these call the store and push to agents and operators."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from rm_core import protocol as p
from rm_core.api import FleetPolicyBody, FleetPolicyResult, Job, JobBody
from rm_core.enums import ActorKind, CredentialSlot, JobKind, JobState
from rm_server.errors import ConflictError
from rm_server.keys import AGENTS, CONFIG, EVENTS, MASTER_KEY, STORE
from rm_server.security import SealError
from rm_server.services.batching import GroupCommit
from rm_server.store import SYSTEM, Actor, NewJob, NotFound, UnknownJob

if TYPE_CHECKING:
    from rm_server.store.jobs import Applied
    from rm_server.ws.agents import AgentConnection

log = logging.getLogger("rm_server.services")

# Hosts told per step of a fleet push; the loop serves other requests between steps.
PUSH_SLICE = 100


class Services:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.notifier = None  # set by the notify module when it starts
        # Fleet-scale writes go through group commit (see batching.py).
        self._hellos = GroupCommit(self._write_hellos)
        self._acks = GroupCommit(self._write_acks)
        self._logs = GroupCommit(lambda items: self.store.jobs.apply_logs(items))

    @property
    def store(self):
        return self.app[STORE]

    @property
    def hub(self):
        return self.app[AGENTS]

    @property
    def events(self):
        return self.app[EVENTS]

    # ------------------------------------------------------------ hosts

    async def host_changed(self, host_id: str) -> None:
        if not self.events.subscribers:
            return
        try:
            host = await self.store.hosts.get(host_id)
        except NotFound:
            self.events.publish("host.updated", {"id": host_id, "deleted": True})
            return
        self.events.publish("host.updated", host)

    async def host_offline(self, host_id: str, last_seen: datetime | None) -> None:
        if await self.store.hosts.set_offline(host_id, last_seen):
            await self.host_changed(host_id)

    async def agent_hello(self, conn: "AgentConnection", env: p.Envelope) -> None:
        """hello.ok, then the schedule (always), then config, then reconcile and dispatch."""
        from rm_server.ws.agents import hello_ok

        hello: p.Hello = env.payload
        host_id = conn.host_id
        await self._hellos.submit((host_id, hello))
        conn.send(hello_ok(), env.id)
        await self.push_schedules(conn, [host_id])
        conn.send(await self.config_update(host_id))
        lost, requeued = await self.store.jobs.reconcile_hello(host_id, hello.running_jobs)
        for job in lost + requeued:
            self.job_changed(job)
        await self.host_changed(host_id)
        await self.auto_init(host_id)
        await self.dispatch_queued(host_id)

    async def _write_hellos(self, items: list[tuple[str, p.Hello]]) -> list[None]:
        await self.store.hosts.record_hellos(items, self.app[CONFIG].clock())
        return [None] * len(items)

    # ------------------------------------------------------------ schedules + config

    async def push_schedules(self, conn: "AgentConnection | None", host_ids: list[str]) -> int:
        """Send each host's agent its full schedule set (on `conn`, or on its live connection)."""
        sent = 0
        for host_id, payload in (await self.store.fleet.schedule_set_payloads(host_ids)).items():
            target = conn or self.hub.get(host_id)
            if target is not None:
                sent += target.send_frame(p.encode_raw("schedule.set", payload))
        return sent

    async def schedule_changed(self, host_id: str) -> None:
        conn = self.hub.get(host_id)
        if conn is not None:
            await self.push_schedules(conn, [host_id])
        listing = await self.store.schedules.list(host_id)
        self.events.publish("schedule.updated", {"host_id": host_id, "version": listing.version,
                                                 "applied_version": listing.applied_version})

    def _open(self, host_id: str, slot: str, sealed: bytes) -> p.RepoCredentials | None:
        try:
            raw = self.app[MASTER_KEY].open(sealed, f"repo:{host_id}:{slot}")
        except SealError:
            log.error("credentials of host %s slot %s cannot be opened with this master key", host_id, slot)
            return None
        return p.RepoCredentials.model_validate_json(raw)

    def seal(self, host_id: str, creds: p.RepoCredentials) -> bytes:
        return self.app[MASTER_KEY].seal(creds.model_dump_json().encode(), f"repo:{host_id}:{creds.slot.value}")

    async def credentials(self, host_id: str) -> dict[str, p.RepoCredentials]:
        sealed = await self.store.credentials.all_for_host(host_id)
        opened = {slot: self._open(host_id, slot, blob) for slot, blob in sealed.items()}
        return {slot: c for slot, c in opened.items() if c is not None}

    async def config_update(self, host_id: str) -> p.ConfigUpdate:
        bandwidth = await self.store.hosts.get_json(host_id, "bandwidth")
        creds = await self.credentials(host_id)
        return p.ConfigUpdate(bandwidth=p.Bandwidth(**bandwidth), credentials=list(creds.values()))

    async def config_changed(self, host_id: str) -> None:
        conn = self.hub.get(host_id)
        if conn is not None:
            conn.send(await self.config_update(host_id))

    async def apply_policy(self, actor: Actor, name: str, body: FleetPolicyBody) -> FleetPolicyResult:
        """Write the policy to every selected host, then push the new schedule sets in slices so
        the loop stays free for other requests while thousands of agents are told."""
        sel = body.hosts
        host_ids = await self.store.fleet.select_hosts(sel.ids, sel.status, sel.q)
        group = {"includes": body.includes, "excludes": body.excludes, "tag": body.tag or name,
                 "retention": body.retention.model_dump(exclude_none=True)}
        schedule = {"cron": body.cron, "timezone": body.timezone, "enabled": body.enabled}
        await self.store.fleet.apply_policy(actor, name, host_ids, group, schedule)
        online = [h for h in host_ids if self.hub.get(h) is not None]
        pushed = 0
        for start in range(0, len(online), PUSH_SLICE):
            pushed += await self.push_schedules(None, online[start:start + PUSH_SLICE])
            await asyncio.sleep(0)
        if self.events.subscribers:
            for host_id in host_ids:
                self.events.publish("schedule.updated", {"host_id": host_id})
        return FleetPolicyResult(name=name, hosts=len(host_ids), pushed=pushed)

    # ------------------------------------------------------------ jobs

    def job_changed(self, job: Job) -> None:
        self.events.publish("job.updated", job)
        if job.state in (JobState.failed, JobState.lost) and self.notifier is not None:
            self.notifier.job_failed(job)

    async def new_job(self, actor: Actor, host_id: str, body: JobBody, *, actor_kind: ActorKind = ActorKind.user,
                      schedule_id: str | None = None) -> Job:
        await self.store.hosts.get(host_id)
        if body.source_group_id:
            await self.store.schedules.group(host_id, body.source_group_id)
        params = body.model_dump(exclude={"kind", "source_group_id"}, exclude_none=True, exclude_defaults=True)
        new = NewJob(host_id, body.kind, actor_kind, actor.id if actor.kind == "user" else None, schedule_id,
                     body.source_group_id, params)
        (job,) = await self.store.jobs.create(actor, [new])
        self.job_changed(job)
        await self.dispatch(job)
        return await self.store.jobs.get(job.id)

    async def create_jobs(self, actor: Actor, jobs: list[NewJob]) -> list[Job]:
        created = await self.store.jobs.create(actor, jobs)
        for job in created:
            self.job_changed(job)
            await self.dispatch(job)
        return [await self.store.jobs.get(j.id) for j in created]

    async def command_params(self, job: Job) -> dict[str, Any]:
        """Everything the agent needs to run the job, resolved at dispatch time."""
        params = dict(job.params)
        if job.kind == JobKind.backup:
            group = await self.store.schedules.group(job.host_id, job.source_group_id)
            params["source_group"] = p.SourceGroupSpec(**group.model_dump()).model_dump(mode="json")
        elif job.kind == JobKind.forget:
            groups = await self.store.schedules.groups(job.host_id)
            if job.source_group_id:
                groups = [g for g in groups if g.id == job.source_group_id]
            params["source_groups"] = [p.SourceGroupSpec(**g.model_dump()).model_dump(mode="json")
                                       for g in groups if not g.retention.is_empty()]
        return params

    async def dispatch(self, job: Job) -> bool:
        conn = self.hub.get(job.host_id)
        if conn is None or job.state != JobState.queued:
            return False
        try:
            params = await self.command_params(job)
        except NotFound as exc:
            failed = await self.store.jobs.finish_on_server(SYSTEM, job.id, JobState.failed, str(exc))
            if failed:
                self.job_changed(failed)
            return False
        dispatched = await self.store.jobs.mark_dispatched(job.id)
        if dispatched is None:
            return False
        conn.send(p.CommandRun(job_id=job.id, kind=job.kind, params=params))
        self.job_changed(dispatched)
        return True

    async def dispatch_queued(self, host_id: str) -> None:
        for job in await self.store.jobs.queued_for_host(host_id):
            await self.dispatch(job)

    async def auto_init(self, host_id: str) -> None:
        """First connect of a host with credentials and no init job yet: initialise its repository."""
        if not await self.store.credentials.get(host_id, CredentialSlot.repo.value):
            return
        if await self.store.jobs.list(host_id=host_id, kind=JobKind.init, limit=1):
            return
        await self.create_jobs(SYSTEM, [NewJob(host_id, JobKind.init, ActorKind.system)])

    async def cancel(self, actor: Actor, job_id: str) -> Job:
        job = await self.store.jobs.get(job_id)
        if job.state.terminal:
            raise ConflictError(f"job {job_id} already ended ({job.state.value})", {"state": job.state.value})
        if job.state == JobState.queued:
            ended = await self.store.jobs.finish_on_server(actor, job_id, JobState.cancelled, "cancelled before it ran")
            if ended:
                self.job_changed(ended)
                return ended
            job = await self.store.jobs.get(job_id)
        await self.store.audit.record(actor, "job.cancel", job_id)
        if not self.hub.send(job.host_id, p.CommandCancel(job_id=job_id)):
            raise ConflictError("the host is offline; the job is cancelled when its agent reconnects and reports it",
                                {"state": job.state.value})
        return job

    # ------------------------------------------------------------ agent messages

    async def on_heartbeat(self, conn: "AgentConnection", env: p.Envelope) -> None:
        conn.last_seen = self.app[CONFIG].clock()

    async def _write_acks(self, items: list[tuple[str, int]]) -> list[tuple[int, int] | None]:
        newest: dict[str, int] = {}
        for host_id, version in items:
            newest[host_id] = max(version, newest.get(host_id, 0))
        recorded = await self.store.hosts.set_applied_versions(newest)
        return [recorded.get(host_id) for host_id, _ in items]

    async def on_schedule_ack(self, conn: "AgentConnection", env: p.Envelope) -> None:
        recorded = await self._acks.submit((conn.host_id, env.payload.version))
        if recorded is not None:
            self.events.publish("schedule.updated", {"host_id": conn.host_id, "version": recorded[0],
                                                     "applied_version": recorded[1]})

    async def close(self) -> None:
        """Finish the writes gathered for group commit before the store closes."""
        for batcher in (self._hellos, self._acks, self._logs):
            await batcher.drain()

    async def on_schedule_fire(self, conn: "AgentConnection", env: p.Envelope) -> None:
        fire: p.ScheduleFire = env.payload
        host_id = conn.host_id
        if not await self.store.schedules.record_fire(host_id, fire.schedule_id, fire.fire_id, fire.scheduled_at):
            return  # a resent fire: its jobs were made the first time
        try:
            schedule = await self.store.schedules.get(host_id, fire.schedule_id)
        except NotFound:
            conn.send(p.Error(code="unknown_schedule", message=f"schedule {fire.schedule_id} is gone"), env.id)
            return
        jobs = [NewJob(host_id, JobKind.backup, ActorKind.schedule, None, schedule.id, gid)
                for gid in schedule.source_group_ids]
        await self.create_jobs(Actor("schedule", schedule.id, schedule.name), jobs)

    async def _apply(self, conn: "AgentConnection", env: p.Envelope, apply) -> "Applied | None":
        """Apply one durable job event and ack it; an event for a job the host does not own gets an error."""
        job_id = env.payload.job_id
        try:
            applied = await apply()
        except UnknownJob:
            conn.send(p.Error(code="unknown_job", message=f"job {job_id} is not known for this host"), env.id)
            return None
        conn.send(p.Ack(job_id=job_id, upto_seq=applied.acked_seq))
        return applied

    async def on_job_started(self, conn: "AgentConnection", env: p.Envelope) -> None:
        ev: p.JobStarted = env.payload
        owns = await self.store.schedules.owns(conn.host_id, ev.schedule_id, ev.source_group_id)
        applied = await self._apply(conn, env, lambda: self.store.jobs.apply_started(conn.host_id, ev, owns))
        if applied and applied.job:
            self.job_changed(applied.job)

    async def on_job_log(self, conn: "AgentConnection", env: p.Envelope) -> None:
        ev: p.JobLog = env.payload
        result = await self._logs.submit((conn.host_id, ev))
        if isinstance(result, UnknownJob):
            conn.send(p.Error(code="unknown_job", message=f"job {ev.job_id} is not known for this host"), env.id)
            return
        conn.send(p.Ack(job_id=ev.job_id, upto_seq=result.acked_seq))
        if result.lines:
            self.events.publish_log(ev.job_id, result.lines)

    async def on_job_finished(self, conn: "AgentConnection", env: p.Envelope) -> None:
        ev: p.JobFinished = env.payload
        applied = await self._apply(conn, env, lambda: self.store.jobs.apply_finished(conn.host_id, ev))
        if applied and applied.job:
            self.job_changed(applied.job)
            if applied.job.kind == JobKind.backup:
                await self.host_changed(conn.host_id)

    async def on_job_progress(self, conn: "AgentConnection", env: p.Envelope) -> None:
        self.events.publish("job.progress", {"host_id": conn.host_id, **env.payload.model_dump(mode="json")})

    async def on_snapshots(self, conn: "AgentConnection", env: p.Envelope) -> None:
        await self.store.reports.replace_snapshots(conn.host_id, env.payload.snapshots)

    async def on_repo_stats(self, conn: "AgentConnection", env: p.Envelope) -> None:
        await self.store.reports.replace_stats(conn.host_id, env.payload)
        await self.host_changed(conn.host_id)

    def register_handlers(self) -> None:
        for type_, handler in {
            "heartbeat": self.on_heartbeat,
            "schedule.ack": self.on_schedule_ack,
            "schedule.fire": self.on_schedule_fire,
            "job.started": self.on_job_started,
            "job.log": self.on_job_log,
            "job.finished": self.on_job_finished,
            "job.progress": self.on_job_progress,
            "snapshots.report": self.on_snapshots,
            "repo.stats": self.on_repo_stats,
        }.items():
            self.hub.register(type_, handler)

