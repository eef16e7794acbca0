"""What the server does with each message an agent sends: hello, then a table of
handlers by message type. Fleet-scale writes go through group commit (batching.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from rm_core import protocol as p
from rm_core.log_frames import as_wire, parse_job_log
from rm_core.enums import ActorKind, CredentialSlot, JobKind
from rm_core.jobs import Job
from rm_core.version import PROTOCOL_VERSION, __version__
from rm_server.services.batching import GroupCommit
from rm_server.services.credentials import CredentialService
from rm_server.services.hosts import HostService
from rm_server.services.jobs import JobService
from rm_server.services.schedules import ScheduleService, send_schedule_sets
from rm_server.store import Actor, HelloState, NewJob, NotFound, Store, JobNotOnHost
from rm_server.store.jobs import Applied
from rm_server.ws.agent_hub import AgentConnection
from rm_server.ws.event_hub import EventHub

log = logging.getLogger("rm_server.agents")

MINTED_JOBS_PER_HOUR = 120
ACK_LINGER = 0.01  # seconds an ack batch waits for more (19k acks follow a fleet push)

# A handler either awaits (most) or, for high-rate frames, returns None and finishes by callback.
MessageHandler = Callable[[AgentConnection, p.Envelope], Awaitable[None] | None]


class AgentMessages:
    def __init__(self, store: Store, events: EventHub, clock: Callable[[], datetime], hosts: HostService,
                 jobs: JobService, schedules: ScheduleService, credentials: CredentialService) -> None:
        self.store = store
        self.events = events
        self.clock = clock
        self.hosts = hosts
        self.jobs = jobs
        self.schedules = schedules
        self.credentials = credentials
        # Fleet-scale writes go through group commit (see batching.py).
        self._hellos = GroupCommit(self._write_hellos)
        # A second stage, so one batch's reads run beside the next batch's write.
        self._hello_reads = GroupCommit(self._read_hellos)
        self._acks = GroupCommit(self._write_acks, linger=ACK_LINGER)
        self._logs = GroupCommit(store.jobs.apply_logs)
        # host_id -> server times (monotonic) of the agent-minted jobs accepted this hour.
        self._minted: dict[str, deque[float]] = {}
        # schedule.acks queued but not yet written, per connection, and who waits for them:
        # a later frame of the same socket waits, so one socket's frames still apply in order.
        self._unsettled: dict[AgentConnection, int] = {}
        self._settle_waiters: dict[AgentConnection, asyncio.Future[None]] = {}
        self.acks_received = 0  # schedule.acks read so far: a fleet push paces by its answers
        self.handlers: dict[str, MessageHandler] = {
            "heartbeat": self.on_heartbeat,
            "schedule.ack": self.on_schedule_ack,
            "schedule.fire": self.on_schedule_fire,
            "job.started": self.on_job_started,
            "job.log": self.on_job_log,
            "job.finished": self.on_job_finished,
            "job.progress": self.on_job_progress,
            "snapshots.report": self.on_snapshots,
            "repo.stats": self.on_repo_stats,
        }
        # what else follows a finished job or a report (the copy service: a copy after a backup,
        # the copy lag after a snapshot list); set by app.py once those services exist
        self.after_job: list[Callable[[Job], Awaitable[object]]] = []
        self.after_snapshots: list[Callable[[str], Awaitable[object]]] = []
        self.after_stats: list[Callable[[str, p.RepoStats], Awaitable[object]]] = []
        self.after_hello: list[Callable[[str], Awaitable[object]]] = []

    async def close(self) -> None:
        """Finish the writes gathered for group commit before the store closes."""
        for batcher in (self._hellos, self._hello_reads, self._acks, self._logs):
            await batcher.drain()

    # ------------------------------------------------------------ hello

    async def hello(self, conn: AgentConnection, env: p.Envelope) -> None:
        """hello.ok, then the schedule (always), then config, then reconcile and dispatch.

        The hello's write and everything it needs to read are batched (group commit, then a
        batched read): in a reconnect storm thousands of hellos share one transaction and a
        few reads."""
        hello: p.Hello = env.payload
        host_id = conn.host_id
        await self._hellos.submit((host_id, hello))
        state = await self._hello_reads.submit(host_id)
        if state is None:  # the host went away meanwhile: the slow path says what is left
            conn.welcome(p.HelloOk(server_version=__version__, protocol_version=PROTOCOL_VERSION), env.id)
            await self.schedules.push(conn, [host_id])
            conn.send(await self.credentials.config_update(host_id, conn.features))
        else:
            with conn.corked():  # three frames, one transmit (a reconnect storm sends 19k of these)
                conn.welcome(p.HelloOk(server_version=__version__, protocol_version=PROTOCOL_VERSION), env.id)
                await send_schedule_sets({host_id: state.schedule_set}, lambda _: conn)  # never suspends
                conn.send(self.credentials.config_from(host_id, state.bandwidth, state.sealed, conn.features))
        if state is None or state.active_jobs:
            lost, requeued = await self.store.jobs.reconcile_hello(host_id, hello.running_jobs)
            for job in lost + requeued:
                self.jobs.changed(job)
            # a cancel passed to a replica that died before it reached the agent
            for job_id in await self.store.jobs.cancels_requested(host_id):
                conn.send(p.CommandCancel(job_id=job_id))
        await self.hosts.changed(host_id)
        if state is None or (CredentialSlot.repo.value in state.sealed and not state.has_init_job):
            await self.jobs.auto_init(host_id)
        if state is None or state.queued_jobs or state.active_jobs:  # requeued ones too; auto_init dispatches its own
            await self.jobs.dispatch_queued(host_id)
        for follow in self.after_hello:  # e.g. a key rotation whose phase job was lost goes on
            await follow(host_id)

    async def _write_hellos(self, items: list[tuple[str, p.Hello]]) -> list[None]:
        moved = await self.store.hosts.record_hellos(items, self.clock())
        self.hosts.moved(moved)  # newest wins: the replica that held them lets go
        return [None] * len(items)

    async def _read_hellos(self, host_ids: list[str]) -> list[HelloState | None]:
        states = await self.store.hellos.states(host_ids)
        return [states.get(host_id) for host_id in host_ids]

    # ------------------------------------------------------------ every later frame

    async def dispatch(self, conn: AgentConnection, raw: Any) -> None:
        """Parse one frame and run its handler; a bad frame or a failing handler gets an
        error reply and never drops the connection."""
        try:
            # job.log, the bulk of ingest, skips the models when it is well-formed (log_frames.py)
            env = parse_job_log(raw) or p.parse_agent_message(raw)
        except p.UnknownMessageType as exc:
            conn.send(p.Error(code="unknown_type", message=str(exc)), exc.envelope.id)
            return
        except ValidationError as exc:
            # One line per bad frame, naming the sender: a hostile agent must not fill the log.
            first = exc.errors(include_url=False, include_input=False)[:1]
            where = ".".join(str(x) for x in first[0]["loc"]) + ": " + first[0]["msg"] if first else "invalid"
            log.warning("malformed frame from host %s refused (%d problems; first %s)",
                        conn.host_id, exc.error_count(), where[:200])
            conn.send(p.Error(code="malformed", message=str(exc)[:500]))
            return
        handler = self.handlers.get(env.type)
        if handler is None:
            conn.send(p.Error(code="unexpected", message=f"{env.type!r} is not expected now"), env.id)
            return
        if conn in self._unsettled and env.type != "schedule.ack":  # acks keep their order by themselves
            await self._settled(conn)
        try:
            pending = handler(conn, env)
            if pending is not None:
                await pending
        except Exception as exc:  # one bad message must not drop the agent
            # One line per failed frame naming the sender; the traceback only when debugging.
            log.error("%s from host %s failed: %s: %s", env.type, conn.host_id, type(exc).__name__, str(exc)[:200],
                      exc_info=log.isEnabledFor(logging.DEBUG))
            conn.send(p.Error(code="handler_failed", message=f"{env.type}: {type(exc).__name__}"), env.id)

    async def on_heartbeat(self, conn: AgentConnection, env: p.Envelope) -> None:
        conn.last_seen = self.clock()

    async def _write_acks(self, items: list[tuple[str, int]]) -> list[tuple[int, int] | None]:
        newest: dict[str, int] = {}
        for host_id, version in items:
            newest[host_id] = max(version, newest.get(host_id, 0))
        recorded = await self.store.hosts.set_applied_versions(newest)
        return [recorded.get(host_id) for host_id, _ in items]

    def on_schedule_ack(self, conn: AgentConnection, env: p.Envelope) -> None:
        """No await: the frame is queued for the next group commit and the socket's reader goes
        on to its next frame; the event (or an error reply) follows the write by callback."""
        host_id = conn.host_id

        def stored(recorded: tuple[int, int] | None, exc: BaseException | None) -> None:
            self._settle(conn)
            if exc is not None:
                log.error("schedule.ack from %s not stored: %s", host_id, exc)
                conn.send(p.Error(code="handler_failed", message=f"schedule.ack: {type(exc).__name__}"), env.id)
            elif recorded is not None:
                self.events.publish("schedule.updated", {"host_id": host_id, "version": recorded[0],
                                                         "applied_version": recorded[1]})

        self.acks_received += 1
        self._unsettled[conn] = self._unsettled.get(conn, 0) + 1
        self._acks.submit_nowait((host_id, env.payload.version), stored)

    def _settle(self, conn: AgentConnection) -> None:
        left = self._unsettled.pop(conn) - 1
        if left:
            self._unsettled[conn] = left
            return
        waiter = self._settle_waiters.pop(conn, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _settled(self, conn: AgentConnection) -> None:
        """Wait until this socket's queued acks are written (only when another frame follows them)."""
        waiter = self._settle_waiters.get(conn)
        if waiter is None:
            waiter = self._settle_waiters[conn] = asyncio.get_running_loop().create_future()
        await asyncio.shield(waiter)

    async def on_schedule_fire(self, conn: AgentConnection, env: p.Envelope) -> None:
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
        await self.jobs.create(Actor("schedule", schedule.id, schedule.name), jobs)

    def _unknown_job(self, conn: AgentConnection, env: p.Envelope) -> None:
        conn.send(p.Error(code="unknown_job", message=f"job {env.payload.job_id} is not known for this host"), env.id)

    async def _apply(self, conn: AgentConnection, env: p.Envelope,
                     apply: Callable[[], Awaitable[Applied]]) -> Applied | None:
        """Apply one durable job event and ack it; an event for a job the host does not own gets an error."""
        try:
            applied = await apply()
        except JobNotOnHost:
            self._unknown_job(conn, env)
            return None
        conn.send(p.Ack(job_id=env.payload.job_id, upto_seq=applied.acked_seq))
        return applied

    def _may_mint(self, host_id: str) -> bool:
        """Agent-minted jobs (run while the server was away) per host per hour: a hostile
        agent must not fill the database with jobs; a real one mints a few per schedule."""
        now = time.monotonic()
        window = self._minted.setdefault(host_id, deque())
        while window and window[0] < now - 3600:
            window.popleft()
        if len(window) >= MINTED_JOBS_PER_HOUR:
            return False
        window.append(now)
        return True

    async def on_job_started(self, conn: AgentConnection, env: p.Envelope) -> None:
        ev: p.JobStarted = env.payload
        if await self.store.jobs.host_of(ev.job_id) is None and not self._may_mint(conn.host_id):
            log.warning("host %s minted more than %d jobs in an hour; job %s refused",
                        conn.host_id, MINTED_JOBS_PER_HOUR, ev.job_id)
            conn.send(p.Error(code="rate_limited", message=f"more than {MINTED_JOBS_PER_HOUR} agent-run jobs "
                                                           "in an hour; try again later"), env.id)
            return
        owns = await self.store.schedules.owns(conn.host_id, ev.schedule_id, ev.source_group_id)
        applied = await self._apply(conn, env, lambda: self.store.jobs.apply_started(conn.host_id, ev, owns))
        if applied and applied.job:
            self.jobs.changed(applied.job)

    async def on_job_log(self, conn: AgentConnection, env: p.Envelope) -> None:
        ev = as_wire(env.payload)
        result = await self._logs.submit((conn.host_id, ev))
        if isinstance(result, JobNotOnHost):
            self._unknown_job(conn, env)
            return
        conn.send(p.Ack(job_id=ev.job_id, upto_seq=result.acked_seq))
        if result.lines:
            self.events.publish_log(ev.job_id, result.lines)

    async def on_job_finished(self, conn: AgentConnection, env: p.Envelope) -> None:
        ev: p.JobFinished = env.payload
        applied = await self._apply(conn, env, lambda: self.store.jobs.apply_finished(conn.host_id, ev))
        if applied and applied.job:
            self.jobs.changed(applied.job)
            if applied.job.kind == JobKind.backup:
                await self.hosts.changed(conn.host_id)
            for follow in self.after_job:
                await follow(applied.job)

    async def on_job_progress(self, conn: AgentConnection, env: p.Envelope) -> None:
        # Only for the sender's own jobs: operators read progress next to a host's job, and
        # one agent must not be able to paint another host's backup.
        job_id = env.payload.job_id
        if await self.store.jobs.host_of(job_id) != conn.host_id:
            conn.send(p.Error(code="unknown_job", message=f"job {job_id} is not known for this host"), env.id)
            return
        self.events.publish("job.progress", {"host_id": conn.host_id, **env.payload.model_dump(mode="json")})

    async def on_snapshots(self, conn: AgentConnection, env: p.Envelope) -> None:
        await self.store.reports.replace_snapshots(conn.host_id, env.payload.snapshots)
        for follow in self.after_snapshots:
            await follow(conn.host_id)

    async def on_repo_stats(self, conn: AgentConnection, env: p.Envelope) -> None:
        await self.store.reports.replace_stats(conn.host_id, env.payload)
        for follow in self.after_stats:
            await follow(conn.host_id, env.payload)
        await self.hosts.changed(conn.host_id)
