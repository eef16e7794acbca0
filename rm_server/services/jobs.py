"""The job lifecycle on the server: create, dispatch to the agent, cancel, and announce
every change (operators' events, the failure webhook)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from rm_core import protocol as p
from rm_core.enums import ActorKind, CredentialSlot, JobKind, JobState, RepoTarget
from rm_core.jobs import Job, JobBody
from rm_core.version import COPY_FEATURE, ROTATE_FEATURE
from rm_server.errors import BadRequest, ConflictError
from rm_server.services.notify import Notifier
from rm_server.services.relay import Relay
from rm_server.store import SYSTEM, Actor, NewJob, NotFound, Store
from rm_server.ws.agent_hub import AgentHub
from rm_server.ws.event_hub import EventHub


class RetentionPaused(Exception):
    """Every group a forget would touch waits for an acknowledged anomaly."""


def needed_feature(kind: JobKind, params: dict[str, Any]) -> str | None:
    """The agent feature a job needs beyond protocol 1 (docs/protocol.md), or None."""
    if kind == JobKind.rotate_key:
        return ROTATE_FEATURE
    if kind == JobKind.copy or params.get("repo") == "copy":
        return COPY_FEATURE
    return None


def agent_too_old(host_id: str, feature: str) -> ConflictError:
    return ConflictError(f"the agent of host {host_id} is too old for this job (it lacks the {feature!r} feature); "
                         "upgrade rm-agent on the host", {"feature": feature}, code="agent_too_old")


@dataclass(eq=False)
class JobService:
    store: Store
    hub: AgentHub
    events: EventHub
    notifier: Notifier
    # another host's repository credentials, for a cross-host restore (CredentialService, set after both exist)
    credentials_of: Callable[[str], Awaitable[p.RepoCredentials | None]] | None = None
    # what a rotate_key phase job carries as it is sent (RotationService, set by app.py)
    rotation_params: Callable[[Job], Awaitable[dict[str, Any]]] | None = None
    # groups whose retention waits for an acknowledged anomaly (AnomalyService, set by app.py)
    paused_groups: Callable[[str], Awaitable[set[str]]] | None = None
    # /metrics' job outcome counter (Metrics.job_changed, set by the app)
    count_outcome: Callable[[Job], None] | None = None
    # the other replicas (PostgreSQL): a job for a host whose agent another replica holds goes there
    relay: Relay | None = None

    def register(self, relay: Relay) -> None:
        """Take the other replicas' `dispatch` and `cancel` for agents this replica holds."""
        self.relay = relay
        relay.handlers["dispatch"] = self._dispatch_here
        relay.handlers["cancel"] = self._cancel_here
        relay.resync_handlers.append(self._resync)

    async def _dispatch_here(self, message: dict[str, Any]) -> None:
        if self.hub.get(str(message["host"])) is not None:
            await self.dispatch_queued(str(message["host"]))

    def _cancel_here(self, message: dict[str, Any]) -> None:
        self.hub.send(str(message["host"]), p.CommandCancel(job_id=str(message["job"])))

    async def _resync(self) -> None:
        """Wake-ups were lost while this replica's listener was away: the queued rows were not."""
        for host_id in await self.store.jobs.hosts_with_queued():
            if self.hub.get(host_id) is not None:
                await self.dispatch_queued(host_id)

    def changed(self, job: Job) -> None:
        self.events.publish("job.updated", job)
        self.notifier.job_changed(job)
        if self.count_outcome is not None:
            self.count_outcome(job)

    async def new_job(self, actor: Actor, host_id: str, body: JobBody) -> Job:
        """One job an operator asked for; dispatched at once when the host is online."""
        await self.store.hosts.get(host_id)
        if body.source_group_id:
            await self.store.schedules.group(host_id, body.source_group_id)
        if body.from_host_id:
            await self._check_cross_host(host_id, body.from_host_id)
        params = body.model_dump(mode="json", exclude={"kind", "source_group_id"}, exclude_none=True,
                                 exclude_defaults=True)
        feature = needed_feature(body.kind, params)
        conn = self.hub.get(host_id)
        if feature and conn is not None and feature not in conn.features:
            raise agent_too_old(host_id, feature)
        if body.kind == JobKind.copy or params.get("repo") == "copy":
            if not await self.store.credentials.get(host_id, CredentialSlot.copy.value):
                raise ConflictError(f"host {host_id} has no copy repository; set it with PUT /hosts/{{id}}/repo/copy",
                                    {"field": "repo" if body.kind != JobKind.copy else "kind"})
        new = NewJob(host_id, body.kind, ActorKind.user, actor.id if actor.kind == "user" else None, None,
                     body.source_group_id, params)
        (job,) = await self.store.jobs.create(actor, [new])
        if body.from_host_id:
            await self.store.audit.record(actor, "restore.cross_host", job.id, {
                "host_id": host_id, "from_host_id": body.from_host_id, "snapshot_id": body.snapshot_id,
                "paths": body.paths, "target": body.target})
        self.changed(job)
        await self.dispatch(job)
        return await self.store.jobs.get(job.id)

    async def _check_cross_host(self, host_id: str, from_host_id: str) -> None:
        """Restoring host A's snapshot onto this host: A must exist and have a repository (JobBody
        allows from_host_id on a restore only)."""
        if from_host_id == host_id:
            raise BadRequest("from_host_id names the host itself; leave it out", {"field": "from_host_id"})
        await self.store.hosts.get(from_host_id)
        if not await self.store.credentials.get(from_host_id, CredentialSlot.repo.value):
            raise ConflictError(f"host {from_host_id} has no repository credentials to restore from",
                                {"from_host_id": from_host_id})

    async def create(self, actor: Actor, jobs: list[NewJob]) -> list[Job]:
        created = await self.store.jobs.create(actor, jobs)
        for job in created:
            self.changed(job)
            await self.dispatch(job)
        return [await self.store.jobs.get(j.id) for j in created]

    async def run_schedule(self, actor: Actor, host_id: str, schedule_id: str) -> list[Job]:
        """A schedule run by hand: one backup job per source group it names."""
        schedule = await self.store.schedules.get(host_id, schedule_id)
        return await self.create(actor, [NewJob(host_id, JobKind.backup, ActorKind.user, actor.id, schedule.id, gid)
                                         for gid in schedule.source_group_ids])

    async def command_params(self, job: Job) -> dict[str, Any]:
        """Everything the agent needs to run the job, resolved at dispatch time."""
        params = dict(job.params)
        if job.kind in (JobKind.backup, JobKind.copy):
            group = await self.store.schedules.group(job.host_id, _group_of(job))
            params["source_group"] = p.SourceGroupSpec(**group.model_dump()).model_dump(mode="json")
        elif job.kind == JobKind.forget:
            groups = await self.store.schedules.groups(job.host_id)
            if job.source_group_id:
                groups = [g for g in groups if g.id == job.source_group_id]
            # a group with an open anomaly and pause_forget keeps every snapshot until acknowledged
            paused = await self.paused_groups(job.host_id) if self.paused_groups else set()
            held = [g.name for g in groups if g.id in paused]
            kept = [g for g in groups if g.id not in paused and not g.retention.is_empty()]
            if held and not kept:
                raise RetentionPaused(f"retention paused for {', '.join(held)}: a backup anomaly waits for an "
                                      "operator (POST /api/v1/hosts/{id}/anomalies/acknowledge)")
            params["source_groups"] = [p.SourceGroupSpec(**g.model_dump()).model_dump(mode="json") for g in kept]
            if held:
                params["paused"] = held
        elif job.kind == JobKind.rotate_key:
            if self.rotation_params is None:
                raise NotFound("key rotation of job", job.id)
            params.update(await self.rotation_params(job))
        elif job.kind == JobKind.drill:
            group = await self.store.schedules.group(job.host_id, _group_of(job))
            policy = await self.store.drills.get(job.host_id, group.id)
            params["source_group"] = p.SourceGroupSpec(**group.model_dump()).model_dump(mode="json")
            params.setdefault("sample_files", policy.sample_files)
            params.setdefault("sample_mb", policy.sample_mb)
        elif job.kind == JobKind.restore and job.params.get("from_host_id"):
            # Opened here, sent in this one command.run, never stored with the job or on the agent.
            creds = await self.credentials_of(job.params["from_host_id"]) if self.credentials_of else None
            if creds is None:
                raise NotFound("repository credentials of host", job.params["from_host_id"])
            params["repo"] = creds.model_dump(mode="json")
        return params

    async def dispatch(self, job: Job) -> bool:
        if job.state != JobState.queued:
            return False
        conn = self.hub.get(job.host_id)
        if conn is None:  # the agent may be held by another replica: it dispatches from the row
            if self.relay is not None:
                self.relay.send({"t": "dispatch", "host": job.host_id})
            return False
        feature = needed_feature(job.kind, job.params)
        try:
            if feature and feature not in conn.features:
                raise agent_too_old(job.host_id, feature)
            params = await self.command_params(job)
        except RetentionPaused as exc:  # nothing went wrong: nothing may be removed yet
            ended = await self.store.jobs.finish_on_server(SYSTEM, job.id, JobState.cancelled, str(exc))
            if ended:
                self.changed(ended)
            return False
        except (NotFound, ConflictError) as exc:
            failed = await self.store.jobs.finish_on_server(SYSTEM, job.id, JobState.failed, str(exc))
            if failed:
                self.changed(failed)
            return False
        dispatched = await self.store.jobs.mark_dispatched(job.id)
        if dispatched is None:
            return False
        conn.send(p.CommandRun(job_id=job.id, kind=job.kind, params=params))
        self.changed(dispatched)
        return True

    async def dispatch_queued(self, host_id: str) -> None:
        for job in await self.store.jobs.queued_for_host(host_id):
            await self.dispatch(job)

    async def auto_init(self, host_id: str) -> None:
        """First connect of a host with credentials and no init job yet: initialise its repository."""
        if not await self.store.credentials.get(host_id, CredentialSlot.repo.value):
            return
        if await self.store.jobs.has_init(host_id, copy=False):
            return
        await self.create(SYSTEM, [NewJob(host_id, JobKind.init, ActorKind.system)])

    async def init_changed_repository(self, host_id: str, copy: bool = False) -> None:
        """The repository credentials changed: initialise what they now name. After a mistyped
        URL the first init failed, and nothing else would ever run one; on an existing
        repository init only checks the password opens it. One init still waiting to be sent
        is enough: the agent runs it with the credentials it holds by then."""
        if await self.store.jobs.has_init(host_id, copy=copy, queued_only=True):
            return
        params = {"repo": RepoTarget.copy.value} if copy else {}
        await self.create(SYSTEM, [NewJob(host_id, JobKind.init, ActorKind.system, params=params)])

    async def cancel(self, actor: Actor, job_id: str) -> Job:
        job = await self.store.jobs.get(job_id)
        if job.state.terminal:
            raise ConflictError(f"job {job_id} already ended ({job.state.value})", {"state": job.state.value})
        if job.state == JobState.queued:
            ended = await self.store.jobs.finish_on_server(actor, job_id, JobState.cancelled, "cancelled before it ran")
            if ended:
                self.changed(ended)
                return ended
            job = await self.store.jobs.get(job_id)
        await self.store.audit.record(actor, "job.cancel", job_id)
        if self.hub.send(job.host_id, p.CommandCancel(job_id=job_id)):
            return await self._cancel_requested(job_id)
        if self.relay is not None and self.relay.clustered and (await self.store.hosts.get(job.host_id)).status == "online":
            # Another replica holds the agent. The request is a row first: if that replica
            # dies before passing it on, the agent's next hello (anywhere) gets it.
            await self.store.jobs.request_cancel(job_id)
            self.relay.send({"t": "cancel", "host": job.host_id, "job": job_id})
            return await self._cancel_requested(job_id, stored=True)
        raise ConflictError("the host is offline; the job is cancelled when its agent reconnects and reports it",
                            {"state": job.state.value})


    async def _cancel_requested(self, job_id: str, stored: bool = False) -> Job:
        """The agent was told (or will be, by the replica holding it): every console learns it
        now (job.updated, cancel_requested), not once restic has stopped — which under an
        upload limit takes up to the agent's grace, its bar frozen meanwhile."""
        if not stored:
            await self.store.jobs.request_cancel(job_id)
        job = await self.store.jobs.get(job_id)
        if not job.state.terminal:
            self.changed(job)
        return job

def _group_of(job: Job) -> str:
    """The source group a backup or drill runs (its body names one; dispatch fails the job if not)."""
    if job.source_group_id is None:
        raise NotFound(f"source group of {job.kind} job", job.id)
    return job.source_group_id
