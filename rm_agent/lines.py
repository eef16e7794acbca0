"""restic's output as job log lines: escape codes stripped, JSON errors made readable, secrets hidden.

Every warning or error restic reports goes to the log at once, but a job shows at most
`RunnerSettings.max_error_lines` of them: a big unreadable tree would otherwise flood the
log (and the outbox, and the server) with one line per file. The rest are counted and
summed up in one line when the restic run ends.
"""

from __future__ import annotations

from typing import Any, Callable

from rm_agent.jobs import Job, JobEvents
from rm_core import humanize as H
from rm_core import restic as R

MAX_ERROR_LINES = 200


class ErrorBudget:
    """How many of a job's error lines were shown, and how many were held back since the last note."""

    def __init__(self, limit: int = MAX_ERROR_LINES) -> None:
        self.limit = limit
        self.shown = 0
        self.hidden = 0

    def take(self) -> bool:
        """True if one more error line may be shown."""
        if self.shown < self.limit:
            self.shown += 1
            return True
        self.hidden += 1
        return False

    def note_hidden(self, events: JobEvents, job: Job) -> None:
        """The "… N more errors not shown" line, once per restic run that had more than the budget."""
        if self.hidden:
            agent_line(events, job, f"… {H.plural(self.hidden, 'more error')} not shown "
                                    f"(the log shows the first {self.limit} of a job)")
            self.hidden = 0


def line_handler(events: JobEvents, job: Job, stream: str, budget: ErrorBudget | None = None) -> Callable[[str], None]:
    """A callback for one output stream of a restic (or hook) run of `job`.

    With a budget, each stderr line is one error or warning and spends one line of it."""

    def handle(line: str) -> None:
        line = R.strip_ansi(line)
        if not line.strip():
            return
        if stream == "stderr":
            msg = R.parse_json_line(line)
            if msg is not None:
                line = R.error_message(msg) or line
            if budget is not None and not budget.take():
                return
        events.log(job, stream, R.redact(line, job.secrets))

    return handle


def agent_line(events: JobEvents, job: Job, text: str) -> None:
    """A line the agent itself adds to the job's log (what it did, why it waited)."""
    events.log(job, "agent", text)
