"""A backup's live log, made from restic's `backup --json` stdout.

What the operator sees while a backup runs (and the server stores), bounded whatever the
size of the tree:
* `job.progress` at most once a second (the console's progress bar);
* a human progress line ("43% · 8,444 / 20,000 files · 55 KiB / 125 KiB · 55 KiB/s · ETA 2s")
  at most every `RunnerSettings.progress_log_seconds`, and when 25/50/75 % are passed;
* restic's warnings and errors (stderr, see lines.py) as they happen, within the job's budget;
* the summary in human units, once restic has exited (so it follows every warning).
`verbose_status` (one per file) and other JSON messages are never forwarded.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from rm_agent.job_run import JobRun
from rm_core import humanize as H
from rm_core import restic as R

PROGRESS_EVENT_SECONDS = 1.0  # job.progress: what a progress bar needs, no more
MILESTONES = (25.0, 50.0, 75.0)  # percent done that always gets a progress line


class BackupLog:
    """The stdout handler of one `restic backup --json` run and what it learned (the summary)."""

    def __init__(self, run: JobRun, clock: Callable[[], float] = time.monotonic) -> None:
        self.run = run
        self.summary: dict[str, Any] = {}
        self._clock = clock
        self._started = clock()
        self._last_event: float | None = None
        self._last_line = self._started
        self._milestone = 0  # index of the next milestone not yet passed
        self._plain = run.line("stdout")
        self._error = run.line("stderr")

    def on_stdout(self, line: str) -> None:
        msg = R.parse_json_line(line)
        if msg is None:
            self._plain(line)
            return
        kind = msg.get("message_type")
        if kind == "status":
            self._status(msg)
        elif kind == "summary":
            self.summary.update(R.backup_summary(msg) or {})
        elif kind in ("error", "exit_error"):
            self._error(line)  # lines.py words it and spends the error budget

    def finish(self) -> None:
        """After restic exited: the summary as one readable line."""
        if self.summary:
            self.run.events.log(self.run.job, "stdout", H.backup_summary(self.summary))

    def _status(self, msg: dict[str, Any]) -> None:
        prog = R.progress_from_status(msg)
        if prog is None:
            return
        run, now = self.run, self._clock()
        if self._last_event is None or now - self._last_event >= PROGRESS_EVENT_SECONDS:
            self._last_event = now
            run.events.progress(run.job, prog)
        passed = False
        while (prog.percent is not None and self._milestone < len(MILESTONES)
               and prog.percent >= MILESTONES[self._milestone]):
            self._milestone += 1
            passed = True
        if not passed and now - self._last_line < run.settings.progress_log_seconds:
            return
        self._last_line = now
        elapsed = msg.get("seconds_elapsed") or (now - self._started)
        run.events.log(run.job, "stdout", H.backup_progress(**vars(prog), elapsed_seconds=elapsed))
