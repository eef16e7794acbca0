"""The runner's job events made durable and sent: outbox first, then the socket when online.

Log lines are batched (LOG_BATCH_LINES or LOG_BATCH_SECONDS, whichever comes first) so a
chatty restic does not write one outbox row per line.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any, Callable

from rm_agent.jobs import Job, JobResult
from rm_agent.outbox import Outbox
from rm_core import protocol as p
from rm_core.bounds import cut_log_line
from rm_core.restic import Progress
from rm_core.times import iso, utcnow

log = logging.getLogger("rm_agent")

LOG_BATCH_LINES = 200
LOG_BATCH_SECONDS = 0.25

Send = Callable[[str, dict[str, Any]], bool]


class JobEventSink:
    """Implements rm_agent.jobs.JobEvents for the agent."""

    def __init__(self, outbox: Outbox, send: Send, send_payload: Callable[[p.Payload], bool],
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.outbox = outbox
        self.send = send
        self.send_payload = send_payload
        self.clock = clock
        self.stopping = False  # set when the agent stops: cancelled jobs then say why
        self._log_buf: dict[str, list[tuple[str, str, str]]] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self._pending_reports: dict[str, dict[str, Any]] = {}

    def started(self, job: Job) -> None:
        assert job.started_at is not None
        payload = p.JobStarted(
            job_id=job.job_id, started_at=job.started_at, kind=job.kind, schedule_id=job.schedule_id,
            source_group_id=job.source_group_id, actor_kind=job.actor_kind,
        ).model_dump(mode="json")
        self.send("job.started", self.outbox.start_job(job.job_id, job.kind.value, payload))
        log.info("job %s (%s) started", job.job_id, job.kind.value)

    def log(self, job: Job, stream: str, text: str) -> None:
        buf = self._log_buf.setdefault(job.job_id, [])
        # Cut here, before the outbox: the server would cut it anyway (bounds.MAX_LOG_LINE).
        buf.append((iso(utcnow()), stream, cut_log_line(text)))
        if len(buf) >= LOG_BATCH_LINES:
            self._flush(job.job_id)
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(LOG_BATCH_SECONDS, self.flush_all)

    def _flush(self, job_id: str) -> None:
        lines = self._log_buf.pop(job_id, None)
        if lines:
            payload = self.outbox.append_logs(job_id, lines)
            if payload:
                self.send("job.log", payload)

    def flush_all(self) -> None:
        self._flush_handle = None
        for job_id in list(self._log_buf):
            self._flush(job_id)

    def progress(self, job: Job, progress: Progress) -> None:
        self.send_payload(p.JobProgress(job_id=job.job_id, **progress.__dict__))

    def finished(self, job: Job, result: JobResult) -> None:
        self._flush(job.job_id)
        error = result.error
        if self.stopping and result.state.value == "cancelled":
            error = "the agent was stopped while this job ran; restic was interrupted cleanly"
        fields = p.JobFinished(
            job_id=job.job_id, seq=2, state=result.state, exit_code=result.exit_code, summary=result.summary,
            error=error, finished_at=self.clock(),
        ).model_dump(mode="json", exclude={"job_id", "seq"})
        self.send("job.finished", self.outbox.finish_job(job.job_id, fields))
        log.info("job %s finished: %s%s", job.job_id, result.state.value, f" ({error})" if error else "")

    def report(self, type_: str, payload: dict[str, Any]) -> None:
        if not self.send(type_, payload):
            self._pending_reports[type_] = payload  # newest replaces older: it is a full report

    def send_pending_reports(self) -> None:
        """On (re)connect: the newest report of each type that found the agent offline."""
        for type_, payload in list(self._pending_reports.items()):
            self.send(type_, payload)
        self._pending_reports.clear()
