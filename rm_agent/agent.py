"""The agent daemon: wires the session, the outbox, the runner and the scheduler together.

Where things live: the WebSocket session in connection.py, what each server message does in
handlers.py, job events made durable in job_events.py, jobs in runner.py / job_kinds.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import socket
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from rm_agent.config import AgentConfig, save_config, state_dir
from rm_agent.connection import Session
from rm_agent.handlers import dispatch
from rm_agent.job_events import JobEventSink
from rm_agent.jobs import Job, RunnerSettings
from rm_agent.outbox import Outbox
from rm_agent.queries import QueryRunner
from rm_agent.restic_exec import detect_version
from rm_agent.runner import Runner
from rm_agent.scheduler import Clock, Scheduler
from rm_agent.secrets import SecretStore
from rm_core import protocol as p
from rm_core.enums import ActorKind, JobKind
from rm_core.ids import new_id
from rm_core.times import iso, utcnow
from rm_core.version import AGENT_FEATURES, PROTOCOL_VERSION, __version__
from rm_core.waiting import wait_event

log = logging.getLogger("rm_agent")


class Agent:
    first_connect_grace = 15.0  # how long the scheduler waits for the first connection at start

    def __init__(self, config: AgentConfig, config_path: Path, *, clock: Clock = utcnow,
                 hostname: str | None = None, first_url: int | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.dir = state_dir(config_path)
        self.clock = clock
        self.hostname = hostname or socket.gethostname()
        self.outbox = Outbox(self.dir / "state.db")
        self.secret_store = SecretStore(self.dir / "secrets.enc", config.key_bytes())
        self.creds = self.secret_store.load()  # SecretsCorrupt propagates: never overwritten
        self.bandwidth = p.Bandwidth.model_validate(self.outbox.get("bandwidth") or {})
        self.restic_version: str | None = None
        self.session = Session(config, self.outbox, hello=self._hello, on_message=lambda raw: dispatch(self, raw),
                               on_online=self._on_online, on_status=self._status,
                               running_jobs=lambda: self.runner.running(), start=first_url)
        self.events = JobEventSink(self.outbox, self.session.send, self.session.send_payload, clock)
        settings = RunnerSettings(
            restic_binary=config.restic_binary, tmp_dir=self.dir / "tmp", allow_hooks=config.allow_hooks,
            default_timeout=config.default_timeout_seconds, cancel_grace=config.cancel_grace_seconds,
        )
        self.runner = Runner(settings, self.events, lambda slot: self.creds.get(slot.value), lambda: self.bandwidth)
        self.runner.on_pid = lambda job, pid: self.outbox.set_pid(job.job_id, pid) if job.started_at else None
        self.scheduler = Scheduler(self.outbox, self._on_fire, clock)
        self.queries = QueryRunner(restic_binary=config.restic_binary, tmp_dir=self.dir / "tmp",
                                   send=self.session.send_payload, credentials=lambda slot: self.creds.get(slot.value),
                                   bandwidth=lambda: self.bandwidth)

    @property
    def online(self) -> bool:
        return self.session.online

    def send_payload(self, payload: p.Payload, ref: str | None = None) -> bool:
        return self.session.send_payload(payload, ref)

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
        tasks = [asyncio.create_task(self.session.run(), name="connection"),
                 asyncio.create_task(self._run_scheduler(), name="scheduler")]
        if lost:
            # Takes the repository's runner lock before any job can: jobs queue behind it.
            tasks.append(asyncio.create_task(self.runner.remove_stale_locks(), name="unlock"))
        try:
            await stop.wait()
        finally:
            self.events.stopping = True
            await self.queries.shutdown()
            await self.runner.shutdown()
            self.events.flush_all()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._status("stopped")
            self.outbox.close()

    async def _run_scheduler(self) -> None:
        await wait_event(self.session.first_attempt_done, self.first_connect_grace)
        await self.scheduler.run()

    def _status(self, state: str, error: str | None = None) -> None:
        """What `rm-agent status` shows (another process reads it from the outbox)."""
        self.outbox.put("status", {"state": state, "since": iso(self.clock()), "pid": os.getpid(),
                                   "server_url": self.session.url, "error": error,
                                   "restic_version": self.restic_version})

    def adopt_server_urls(self, urls: list[str]) -> None:
        """Take the server's list of URLs (`config.update`) as this agent's own, in agent.json
        too, so a replica added after enrollment is known without editing every host.

        Refused, with a warning, when it breaks the enrollment rule or leaves out the URL this
        agent reached the server by: a mistyped `--agent-url` must never cut a fleet off from
        the one address it knows works."""
        try:  # agent.json's own rule for server_urls (one URL an entry, checked, each once, ≤ 16)
            config = AgentConfig.model_validate({**self.config.model_dump(), "server_urls": urls, "server_url": ""})
        except ValidationError as exc:
            log.warning("the server's list of URLs is not taken: %s", exc.errors()[0]["msg"])
            return
        wanted = config.server_urls
        if wanted == self.session.urls:
            return
        if self.session.url not in wanted:
            log.warning("the server's list of URLs %s leaves out %s, which this agent reached it by: not taken",
                        wanted, self.session.url)
            return
        save_config(self.config_path, config)  # atomic: a crash leaves the old list or the new
        self.config = config
        self.session.use_urls(wanted)
        log.info("server URLs now %s (from the server)", ", ".join(wanted))

    # ------------------------------------------------------------ session callbacks

    def _hello(self) -> p.Hello:
        running = list(dict.fromkeys(self.runner.running() + [e.job_id for e in self.outbox.pending(limit=10_000)]))
        return p.Hello(
            protocol_version=PROTOCOL_VERSION, agent_version=__version__, hostname=self.hostname,
            os=platform.system().lower(), arch=platform.machine(), restic_version=self.restic_version,
            applied_schedule_version=self.scheduler.version, running_jobs=running,
            outbox_high_seq=self.outbox.high_seq(), features=list(AGENT_FEATURES),
        )

    def _on_online(self) -> None:
        self._status("connected")
        self.events.send_pending_reports()

    # ------------------------------------------------------------ schedule fires

    async def _on_fire(self, spec: p.ScheduleSpec, at: datetime) -> None:
        if self.online and self.send_payload(p.ScheduleFire(schedule_id=spec.id, scheduled_at=at, fire_id=new_id())):
            return
        log.info("server unreachable at fire time of schedule %s: running its backups here", spec.name)
        for group in spec.source_groups:
            self.runner.submit(Job(
                new_id(), JobKind.backup, {"source_group": group.model_dump(mode="json")},
                actor_kind=ActorKind.schedule, schedule_id=spec.id, source_group_id=group.id,
            ))
