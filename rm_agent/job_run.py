"""One job while it runs: its restic calls under the job's deadline and cancel, its log lines."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable

from rm_agent.jobs import Job, JobEvents, JobFailed, JobResult, RunnerSettings
from rm_agent.lines import ErrorBudget, agent_line, line_handler
from rm_agent.restic_exec import MissingCredentials, ResticContext, RunResult, run_restic
from rm_core import restic as R
from rm_core.enums import JobState

Version = tuple[int, int, int]


@dataclass
class JobRun:
    job: Job
    ctx: ResticContext
    deadline: float  # time.monotonic() by which the whole job must end
    settings: RunnerSettings
    events: JobEvents
    on_pid: Callable[[Job, int | None], None] | None
    restic_version: Callable[[], Awaitable[Version | None]]
    errors: ErrorBudget = field(init=False)  # restic's error lines shown in this job's log

    def __post_init__(self) -> None:
        self.errors = ErrorBudget(self.settings.max_error_lines)

    def line(self, stream: str) -> Callable[[str], None]:
        """Log lines of a restic or hook run; restic's stderr spends the job's error budget."""
        return line_handler(self.events, self.job, stream, self.errors if stream == "stderr" else None)

    def note(self, text: str) -> None:
        agent_line(self.events, self.job, text)

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise JobFailed("wall-clock limit reached before restic could run")
        return left

    def outcome(self, res: RunResult, summary: dict[str, Any] | None = None) -> JobResult:
        out = R.classify_exit(res.exit_code, res.stderr)
        return JobResult(out.state, res.exit_code, summary, out.error)

    async def restic(
        self, args: list[str], *, on_stdout: Callable[[str], None] | None = None, capture: bool = False,
        log_stdout: bool = True, ctx: ResticContext | None = None, log_stderr: bool = True,
    ) -> RunResult:
        """Run restic for this job (with another password or repository: `ctx`); a timeout or
        a cancel ends the job (JobFailed)."""
        job = self.job
        if on_stdout is None and log_stdout:
            on_stdout = self.line("stdout")

        def pid(p: int | None) -> None:
            job.pid = p
            if self.on_pid:
                self.on_pid(job, p)

        res = await run_restic(
            ctx or self.ctx, args, on_stdout=on_stdout, on_stderr=self.line("stderr") if log_stderr else None,
            capture_stdout=capture,
            cancel=job.cancel, timeout=self.remaining(), grace=self.settings.cancel_grace, on_pid=pid,
        )
        self.errors.note_hidden(self.events, job)
        # interrupted, or killed by a signal (the OOM killer, kill -9): restic may have left its lock
        if res.timed_out or res.cancelled or (res.exit_code is not None and res.exit_code < 0):
            await self._remove_own_stale_lock()
        if res.timed_out:
            raise JobFailed(f"wall-clock limit reached: restic interrupted (exit {res.exit_code})", res.exit_code)
        if res.cancelled:
            raise JobFailed("cancelled by request", res.exit_code, JobState.cancelled)
        return res

    async def _remove_own_stale_lock(self) -> None:
        """restic 0.14 interrupted while it takes its lock can leave that lock behind.

        `restic unlock` (without --remove-all) only removes locks of dead processes on this
        host or older than 30 minutes, and we hold the agent's per-repository lock, so this
        never touches a lock another live restic holds."""
        # a copy locks both its repositories
        ctxs = [self.ctx] + ([replace(self.ctx, creds=self.ctx.from_creds, from_creds=None)]
                             if self.ctx.from_creds is not None else [])
        for ctx in ctxs:
            try:
                res = await run_restic(replace(ctx, from_creds=None), ["unlock"], on_stderr=self.line("stderr"),
                                       capture_stdout=True, timeout=60, grace=5)
            except MissingCredentials:
                continue
            if "successfully removed" in res.stdout:
                self.note("removed the stale lock the interrupted restic left behind")
