"""restic's output as job log lines: escape codes stripped, JSON errors made readable, secrets hidden."""

from __future__ import annotations

from typing import Callable

from rm_agent.jobs import Job, JobEvents
from rm_core import restic as R


def line_handler(events: JobEvents, job: Job, stream: str) -> Callable[[str], None]:
    """A callback for one output stream of a restic (or hook) run of `job`."""

    def handle(line: str) -> None:
        line = R.strip_ansi(line)
        if not line.strip():
            return
        if stream == "stderr":
            msg = R.parse_json_line(line)
            if msg is not None:
                line = R.json_error_message(msg) or line
        events.log(job, stream, R.redact(line, job.secrets))

    return handle


def agent_line(events: JobEvents, job: Job, text: str) -> None:
    """A line the agent itself adds to the job's log (what it did, why it waited)."""
    events.log(job, "agent", text)
