"""The agent daemon: one connection to the server, the outbox, the runner, the scheduler."""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import ValidationError

from rm_agent.config import AgentConfig, state_dir
from rm_agent.connection import ProtocolRejected, describe_error, ssl_param, ws_url
from rm_agent.outbox import Outbox
from rm_agent.restic_exec import detect_version
from rm_agent.runner import Job, JobResult, Runner, RunnerSettings
from rm_agent.scheduler import Clock, Scheduler
from rm_agent.secrets import SecretStore
from rm_core import protocol as p
from rm_core.backoff import Backoff
from rm_core.enums import ActorKind, CredentialSlot, JobKind
from rm_core.ids import new_id
from rm_core.restic import Progress
from rm_core.times import utcnow
from rm_core.version import PROTOCOL_VERSION, __version__

log = logging.getLogger("rm_agent")

LOG_BATCH_LINES = 200
LOG_BATCH_SECONDS = 0.25


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat()


class Agent:
    heartbeat_interval = 30.0
    hello_timeout = 15.0
    first_connect_grace = 15.0  # how long the scheduler waits for the first connection at start

    def __init__(self, config: AgentConfig, config_path: Path, *, clock: Clock = utcnow,
                 hostname: str | None = None) -> None:
        self.config = config
        self.dir = state_dir(config_path)
        self.clock = clock
        self.hostname = hostname or socket.gethostname()
        self.outbox = Outbox(self.dir / "state.db")
        self.secret_store = SecretStore(self.dir / "secrets.enc", config.key_bytes())
        self.creds = self.secret_store.load()  # SecretsCorrupt propagates: never overwritten
        self.bandwidth = p.Bandwidth.model_validate(self.outbox.get("bandwidth") or {})
        settings = RunnerSettings(
            restic_binary=config.restic_binary, tmp_dir=self.dir / "tmp", allow_hooks=config.allow_hooks,
            default_timeout=config.default_timeout_seconds, cancel_grace=config.cancel_grace_seconds,
        )
        self.runner = Runner(settings, self, lambda slot: self.creds.get(slot.value), lambda: self.bandwidth)
        self.runner.on_pid = lambda job, pid: self.outbox.set_pid(job.job_id, pid) if job.started_at else None
        self.scheduler = Scheduler(self.outbox, self._on_fire, clock)
        self.restic_version: str | None = None
        self.online = False
        self.online_event = asyncio.Event()
        self.first_attempt_done = asyncio.Event()
        self._queue: asyncio.Queue[str] | None = None
        self._log_buf: dict[str, list[tuple[str, str, str]]] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self._pending_reports: dict[str, dict[str, Any]] = {}
        self._stopping = False

    # ------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; then interrupt restic runs cleanly and record them."""
        self.restic_version = await detect_version(self.config.restic_binary)
        if self.restic_version is None:
            log.error("restic not found as %r: jobs will fail until it is installed", self.config.restic_binary)
        lost = self.outbox.mark_lost(self.clock())
        for job_id in lost:
            log.warning("job %s was running when the agent stopped: reported as lost", job_id)
        self._status("connecting")
        tasks = [asyncio.create_task(self._connection_loop(), name="connection"),
                 asyncio.create_task(self._run_scheduler(), name="scheduler")]
        try:
            await stop.wait()
        finally:
            self._stopping = True
            self.runner.stopping = True
            await self.runner.shutdown()
            self._flush_all()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._status("stopped")
            self.outbox.close()

    async def _run_scheduler(self) -> None:
        try:
            await asyncio.wait_for(self.first_attempt_done.wait(), self.first_connect_grace)
        except asyncio.TimeoutError:
            pass
        await self.scheduler.run()

    def _status(self, state: str, error: str | None = None) -> None:
        self.outbox.put("status", {"state": state, "since": _iso(self.clock()), "pid": os.getpid(),
                                   "server_url": self.config.server_url, "error": error,
                                   "restic_version": self.restic_version})

    # ------------------------------------------------------------ connection

    async def _connection_loop(self) -> None:
        backoff = Backoff()
        timeout = aiohttp.ClientTimeout(total=None, connect=15, sock_connect=15)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                error = None
                try:
                    if await self._session(http):
                        backoff.reset()
                except asyncio.CancelledError:
                    raise
                except ProtocolRejected as exc:
                    error = str(exc)
                    backoff.jump_to_cap()  # an operator has to act
                except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValidationError, ValueError) as exc:
                    error = describe_error(exc)
                    if isinstance(exc, aiohttp.WSServerHandshakeError) and exc.status in (401, 403):
                        backoff.jump_to_cap()
                except Exception as exc:  # a bug in a handler must not end the connection loop
                    log.exception("connection session crashed")
                    error = describe_error(exc)
                finally:
                    self._set_offline()
                    self.first_attempt_done.set()
                delay = backoff.next()
                if error:
                    log.warning("connection to %s failed: %s; retrying in %.1fs", self.config.server_url, error, delay)
                else:
                    log.info("disconnected from %s; reconnecting in %.1fs", self.config.server_url, delay)
                self._status("disconnected", error)
                await asyncio.sleep(delay)

    def _hello(self) -> p.Hello:
        running = list(dict.fromkeys(self.runner.running() + [e.job_id for e in self.outbox.pending(limit=10_000)]))
        return p.Hello(
            protocol_version=PROTOCOL_VERSION, agent_version=__version__, hostname=self.hostname,
            os=platform.system().lower(), arch=platform.machine(), restic_version=self.restic_version,
            applied_schedule_version=self.scheduler.version, running_jobs=running,
            outbox_high_seq=self.outbox.high_seq(),
        )

    async def _session(self, http: aiohttp.ClientSession) -> bool:
        """One connection; returns True when it got as far as hello.ok."""
        ws = await http.ws_connect(
            ws_url(self.config.server_url), headers={"Authorization": f"Bearer {self.config.agent_token}"},
            ssl=ssl_param(self.config.server_url, self.config.fingerprint), heartbeat=None,
            max_msg_size=32 * 1024 * 1024,
        )
        tasks: list[asyncio.Task[None]] = []
        try:
            await ws.send_str(p.encode(p.message(self._hello())))
            first = await ws.receive(timeout=self.hello_timeout)
            if first.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"server closed the connection during hello (code {ws.close_code})")
            env = p.parse_server_message(first.data)
            if env.type == "error":
                raise ProtocolRejected(f"server refused hello: {env.payload.code}: {env.payload.message}")
            if env.type != "hello.ok":
                raise ConnectionError(f"expected hello.ok, got {env.type}")
            log.info("connected to %s (server %s)", self.config.server_url, env.payload.server_version)
            await self._resend(ws)
            self._queue = asyncio.Queue()
            self.online = True  # from here new events go through the queue, behind the resent ones
            self.online_event.set()
            self.first_attempt_done.set()
            self._status("connected")
            for type_, payload in list(self._pending_reports.items()):
                self._send(type_, payload)
            self._pending_reports.clear()
            tasks = [asyncio.create_task(self._writer(ws, self._queue)),
                     asyncio.create_task(self._heartbeat())]
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self._handle(msg.data)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    break
            return True
        finally:
            self._set_offline()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await ws.close()

    def _set_offline(self) -> None:
        self.online = False
        self.online_event.clear()
        self._queue = None

    async def _resend(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Everything not yet acked, in the order it happened (events added meanwhile included)."""
        last = 0
        sent = 0
        while True:
            batch = self.outbox.pending(after_id=last)
            if not batch:
                break
            for ev in batch:
                await ws.send_str(p.encode(p.Envelope(type=ev.type, payload=ev.payload)))
                last = ev.id
                sent += 1
        if sent:
            log.info("resent %d unacknowledged job events", sent)

    async def _writer(self, ws: aiohttp.ClientWebSocketResponse, queue: asyncio.Queue[str]) -> None:
        while True:
            frame = await queue.get()
            await ws.send_str(frame)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            self._send_payload(p.Heartbeat(running_jobs=self.runner.running()))

    def _send(self, type_: str, payload: dict[str, Any]) -> bool:
        if self._queue is None:
            return False
        self._queue.put_nowait(p.encode(p.Envelope(type=type_, payload=payload)))
        return True

    def _send_payload(self, payload: p.Payload) -> bool:
        if self._queue is None:
            return False
        self._queue.put_nowait(p.encode(p.message(payload)))
        return True

    # ------------------------------------------------------------ server messages

    def _handle(self, raw: str) -> None:
        try:
            env = p.parse_server_message(raw)
        except p.UnknownMessageType as exc:
            log.warning("ignoring unknown message type %r from the server", exc.type)
            return
        except ValidationError as exc:
            log.warning("ignoring malformed message from the server: %s", str(exc)[:300])
            return
        handler = getattr(self, "_on_" + env.type.replace(".", "_"), None)
        if handler is None:
            return
        try:
            handler(env.payload)
        except Exception:
            log.exception("handling %s failed", env.type)

    def _on_hello_ok(self, payload: p.HelloOk) -> None:
        pass

    def _on_error(self, payload: p.Error) -> None:
        log.warning("server error %s: %s", payload.code, payload.message)

    def _on_schedule_set(self, payload: p.ScheduleSet) -> None:
        self.scheduler.apply(payload)
        log.info("applied schedule version %d (%d schedules)", payload.version, len(payload.schedules))
        self._send_payload(p.ScheduleAck(version=payload.version))

    def _on_config_update(self, payload: p.ConfigUpdate) -> None:
        creds = {c.slot.value: c for c in payload.credentials}
        if creds != self.creds:
            self.secret_store.save(creds)
            self.creds = creds
        self.bandwidth = payload.bandwidth
        self.outbox.put("bandwidth", payload.bandwidth.model_dump(mode="json"))

    def _on_command_run(self, payload: p.CommandRun) -> None:
        if payload.job_id in self.runner.jobs or self.outbox.known_job(payload.job_id):
            log.info("job %s already known; ignoring repeated command.run", payload.job_id)
            return
        params = dict(payload.params)
        group = params.get("source_group") or {}
        job = Job(payload.job_id, payload.kind, params, source_group_id=group.get("id"))
        self.runner.submit(job)

    def _on_command_cancel(self, payload: p.CommandCancel) -> None:
        if not self.runner.cancel(payload.job_id):
            log.info("cancel for job %s which is not running here", payload.job_id)

    def _on_ack(self, payload: p.Ack) -> None:
        self.outbox.ack(payload.job_id, payload.upto_seq)

    # ------------------------------------------------------------ schedule fires

    async def _on_fire(self, spec: p.ScheduleSpec, at: datetime) -> None:
        if self.online and self._send_payload(p.ScheduleFire(schedule_id=spec.id, scheduled_at=at, fire_id=new_id())):
            return
        log.info("server unreachable at fire time of schedule %s: running its backups here", spec.name)
        for group in spec.source_groups:
            self.runner.submit(Job(
                new_id(), JobKind.backup, {"source_group": group.model_dump(mode="json")},
                actor_kind=ActorKind.schedule, schedule_id=spec.id, source_group_id=group.id,
            ))

    # ------------------------------------------------------------ JobEvents (from the runner)

    def started(self, job: Job) -> None:
        assert job.started_at is not None
        payload = p.JobStarted(
            job_id=job.job_id, started_at=job.started_at, kind=job.kind, schedule_id=job.schedule_id,
            source_group_id=job.source_group_id, actor_kind=job.actor_kind,
        ).model_dump(mode="json")
        self._send("job.started", self.outbox.start_job(job.job_id, job.kind.value, payload))
        log.info("job %s (%s) started", job.job_id, job.kind.value)

    def log(self, job: Job, stream: str, text: str) -> None:
        buf = self._log_buf.setdefault(job.job_id, [])
        buf.append((_iso(utcnow()), stream, text))
        if len(buf) >= LOG_BATCH_LINES:
            self._flush(job.job_id)
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(LOG_BATCH_SECONDS, self._flush_all)

    def _flush(self, job_id: str) -> None:
        lines = self._log_buf.pop(job_id, None)
        if lines:
            payload = self.outbox.append_logs(job_id, lines)
            if payload:
                self._send("job.log", payload)

    def _flush_all(self) -> None:
        self._flush_handle = None
        for job_id in list(self._log_buf):
            self._flush(job_id)

    def progress(self, job: Job, progress: Progress) -> None:
        self._send_payload(p.JobProgress(job_id=job.job_id, **progress.__dict__))

    def finished(self, job: Job, result: JobResult) -> None:
        self._flush(job.job_id)
        error = result.error
        if self._stopping and result.state.value == "cancelled":
            error = "the agent was stopped while this job ran; restic was interrupted cleanly"
        fields = p.JobFinished(
            job_id=job.job_id, seq=2, state=result.state, exit_code=result.exit_code, summary=result.summary,
            error=error, finished_at=self.clock(),
        ).model_dump(mode="json", exclude={"job_id", "seq"})
        self._send("job.finished", self.outbox.finish_job(job.job_id, fields))
        log.info("job %s finished: %s%s", job.job_id, result.state.value, f" ({error})" if error else "")

    def report(self, type_: str, payload: dict[str, Any]) -> None:
        if not self._send(type_, payload):
            self._pending_reports[type_] = payload  # newest replaces older: it is a full report

    # ------------------------------------------------------------ helpers for status/tests

    def credentials(self, slot: CredentialSlot) -> p.RepoCredentials | None:
        return self.creds.get(slot.value)
