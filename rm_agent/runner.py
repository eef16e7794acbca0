"""Jobs: turn a `command.run` (or a schedule fire) into restic runs and job events."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Protocol

from pydantic import ValidationError

from rm_agent.restic_exec import MissingCredentials, ResticContext, RunResult, detect_version, run_hook, run_restic
from rm_core import restic as R
from rm_core.enums import ActorKind, CredentialSlot, JobKind, JobState
from rm_core.protocol import Bandwidth, RepoCredentials, SourceGroupSpec
from rm_core.times import utcnow

log = logging.getLogger("rm_agent.runner")


class JobEvents(Protocol):
    """Where a job's events go (the agent: outbox + socket)."""

    def started(self, job: "Job") -> None: ...
    def log(self, job: "Job", stream: str, text: str) -> None: ...
    def progress(self, job: "Job", progress: R.Progress) -> None: ...
    def finished(self, job: "Job", result: "JobResult") -> None: ...
    def report(self, type_: str, payload: dict[str, Any]) -> None: ...


@dataclass
class Job:
    job_id: str
    kind: JobKind
    params: dict[str, Any] = field(default_factory=dict)
    actor_kind: ActorKind | None = None
    schedule_id: str | None = None
    source_group_id: str | None = None
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    started_at: datetime | None = None
    pid: int | None = None
    secrets: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # agent lines from before the start


@dataclass
class JobResult:
    state: JobState
    exit_code: int | None = None
    summary: dict[str, Any] | None = None
    error: str | None = None


class JobFailed(Exception):
    def __init__(self, message: str, exit_code: int | None = None, state: JobState = JobState.failed) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.state = state


@dataclass
class RunnerSettings:
    restic_binary: str = "restic"
    tmp_dir: Path = Path("/tmp")
    allow_hooks: bool = False
    default_timeout: float = 24 * 3600
    cancel_grace: float = 30.0
    hook_timeout: float = 3600
    cache_dir: str | None = None


class Runner:
    def __init__(
        self,
        settings: RunnerSettings,
        events: JobEvents,
        credentials: Callable[[CredentialSlot], RepoCredentials | None],
        bandwidth: Callable[[], Bandwidth],
    ) -> None:
        self.settings = settings
        self.events = events
        self.credentials = credentials
        self.bandwidth = bandwidth
        self.jobs: dict[str, Job] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._repo_locks: dict[str, asyncio.Lock] = {}
        self._repo_users: dict[str, int] = {}
        self.on_pid: Callable[[Job, int | None], None] | None = None
        self.stopping = False
        self._version: tuple[int, int, int] | None = None

    # ------------------------------------------------------------ public

    def submit(self, job: Job) -> bool:
        """Start the job (queued behind others on the same repository). False if already known."""
        if job.job_id in self.jobs:
            return False
        self.jobs[job.job_id] = job
        self._tasks[job.job_id] = asyncio.create_task(self._run(job), name=f"job-{job.job_id}")
        return True

    def cancel(self, job_id: str) -> bool:
        job = self.jobs.get(job_id)
        if job is None:
            return False
        job.cancel.set()
        return True

    def running(self) -> list[str]:
        return list(self.jobs)

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def shutdown(self) -> None:
        """Interrupt every restic run (SIGINT, grace, SIGKILL) and wait for the tasks."""
        for job in self.jobs.values():
            job.cancel.set()
        await self.wait_idle()

    # ------------------------------------------------------------ one job

    def _slot(self, job: Job) -> CredentialSlot:
        if job.kind == JobKind.prune:
            return CredentialSlot.admin
        # forget deletes snapshot files: an append-only repository credential cannot, so the
        # admin credentials (same repository, full access) are used when they are set
        if job.kind == JobKind.forget and self.credentials(CredentialSlot.admin) is not None:
            return CredentialSlot.admin
        return CredentialSlot.repo

    async def _run(self, job: Job) -> None:
        try:
            result = await self._run_guarded(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must still end the job, never leave it running
            log.exception("job %s crashed", job.job_id)
            result = JobResult(JobState.failed, None, None, f"agent error: {exc}")
        finally:
            self._tasks.pop(job.job_id, None)
        if job.started_at is None:
            self._start(job)
        self.jobs.pop(job.job_id, None)
        self.events.finished(job, result)

    def _start(self, job: Job) -> None:
        job.started_at = utcnow()
        self.events.started(job)
        for note in job.notes:
            self._agent_line(job, note)

    async def _run_guarded(self, job: Job) -> JobResult:
        creds = self.credentials(self._slot(job))
        if creds is None:
            self._start(job)
            if job.kind == JobKind.prune:
                return JobResult(
                    JobState.failed,
                    error="prune needs the admin credentials slot; set them with "
                    "PUT /hosts/{id}/repo/admin-credentials",
                )
            return JobResult(JobState.failed, error="no repository configured for this host; set it with PUT /hosts/{id}/repo")
        job.secrets = [s for s in (creds.password, creds.rest_password) if s]
        # one restic at a time per repository, whichever credentials (endpoint) a job uses
        repo_creds = self.credentials(CredentialSlot.repo) or creds
        key = R.redact(repo_creds.url).rstrip("/")
        lock = self._repo_locks.setdefault(key, asyncio.Lock())
        if self._repo_users.get(key, 0) > 0:
            job.notes.append("waited for another restic job on this repository to finish")
        self._repo_users[key] = self._repo_users.get(key, 0) + 1
        try:
            if not await self._acquire(lock, job.cancel):
                return JobResult(JobState.cancelled, error="cancelled before it started")
            try:
                return await self._execute(job, creds)
            finally:
                lock.release()
        finally:
            self._repo_users[key] -= 1

    @staticmethod
    async def _acquire(lock: asyncio.Lock, cancel: asyncio.Event) -> bool:
        acquiring = asyncio.ensure_future(lock.acquire())
        cancelled = asyncio.ensure_future(cancel.wait())
        try:
            await asyncio.wait({acquiring, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cancelled.cancel()
        if acquiring.done() and not acquiring.cancelled():
            return True
        acquiring.cancel()
        return False

    async def _execute(self, job: Job, creds: RepoCredentials) -> JobResult:
        if job.cancel.is_set():
            return JobResult(JobState.cancelled, error="cancelled before it started")
        self._start(job)
        bw = self.bandwidth()
        up = job.params.get("limit_upload_kbps") or bw.upload_kbps
        down = job.params.get("limit_download_kbps") or bw.download_kbps
        ctx = ResticContext(
            binary=self.settings.restic_binary,
            creds=creds,
            tmp_dir=self.settings.tmp_dir,
            upload_kbps=up,
            download_kbps=down,
            cache_dir=self.settings.cache_dir,
        )
        deadline = time.monotonic() + float(job.params.get("timeout_seconds") or self.settings.default_timeout)
        handler = getattr(self, f"_do_{job.kind.value}")
        try:
            result: JobResult = await handler(job, ctx, deadline)
        except JobFailed as exc:
            result = JobResult(exc.state, exc.exit_code, None, str(exc))
        except (MissingCredentials, R.EmptyRetentionPolicy) as exc:
            result = JobResult(JobState.failed, None, None, str(exc))
        except ValidationError as exc:
            result = JobResult(JobState.failed, None, None, f"invalid job parameters: {exc.errors()[0]['msg']}")
        if job.kind in (JobKind.backup, JobKind.forget, JobKind.prune, JobKind.check) and not job.cancel.is_set():
            await self._report(job, ctx, deadline)
        return result

    # ------------------------------------------------------------ helpers

    def _agent_line(self, job: Job, text: str) -> None:
        self.events.log(job, "agent", text)

    def _line(self, job: Job, stream: str) -> Callable[[str], None]:
        def handle(line: str) -> None:
            line = R.strip_ansi(line)
            if not line.strip():
                return
            if stream == "stderr":
                msg = R.parse_json_line(line)
                if msg is not None:
                    line = R.json_error_message(msg) or line
            self.events.log(job, stream, R.redact(line, job.secrets))

        return handle

    def _remaining(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise JobFailed("wall-clock limit reached before restic could run")
        return left

    async def _restic(
        self, job: Job, ctx: ResticContext, args: list[str], deadline: float, *,
        on_stdout: Callable[[str], None] | None = None, capture: bool = False, log_stdout: bool = True,
    ) -> RunResult:
        if on_stdout is None and log_stdout:
            on_stdout = self._line(job, "stdout")

        def pid(p: int | None) -> None:
            job.pid = p
            if self.on_pid:
                self.on_pid(job, p)

        res = await run_restic(
            ctx, args, on_stdout=on_stdout, on_stderr=self._line(job, "stderr"), capture_stdout=capture,
            cancel=job.cancel, timeout=self._remaining(deadline), grace=self.settings.cancel_grace, on_pid=pid,
        )
        if res.timed_out or res.cancelled:
            await self._remove_own_stale_lock(job, ctx)
        if res.timed_out:
            raise JobFailed(
                f"wall-clock limit reached: restic interrupted (exit {res.exit_code})", res.exit_code
            )
        if res.cancelled:
            raise JobFailed("cancelled by request", res.exit_code, JobState.cancelled)
        return res

    async def _remove_own_stale_lock(self, job: Job, ctx: ResticContext) -> None:
        """restic 0.14 interrupted while it takes its lock can leave that lock behind.

        `restic unlock` (without --remove-all) only removes locks of dead processes on this
        host or older than 30 minutes, and we hold the agent's per-repository lock, so this
        never touches a lock another live restic holds."""
        try:
            res = await run_restic(ctx, ["unlock"], on_stderr=self._line(job, "stderr"), capture_stdout=True,
                                   timeout=60, grace=5)
        except MissingCredentials:
            return
        if "successfully removed" in res.stdout:
            self._agent_line(job, "removed the stale lock the interrupted restic left behind")

    def _outcome(self, res: RunResult, summary: dict[str, Any] | None = None) -> JobResult:
        out = R.classify_exit(res.exit_code, res.stderr)
        return JobResult(out.state, res.exit_code, summary, out.error)

    # ------------------------------------------------------------ kinds

    async def _do_init(self, job: Job, ctx: ResticContext, deadline: float) -> JobResult:
        res = await self._restic(job, ctx, ["init"], deadline)
        if res.exit_code != 0 and R.classify_error_text(res.stderr) == R.ERR_ALREADY_INITIALISED:
            self._agent_line(job, "repository already initialised; nothing to do")
            return JobResult(JobState.succeeded, res.exit_code, {"already_initialised": True})
        return self._outcome(res, {"already_initialised": False} if res.exit_code == 0 else None)

    async def _do_backup(self, job: Job, ctx: ResticContext, deadline: float) -> JobResult:
        group = SourceGroupSpec.model_validate(job.params.get("source_group") or {})
        if not group.includes:
            raise JobFailed(f"source group {group.name!r} has no include paths")
        hooks = [h for h in (group.pre_hook, group.post_hook) if h]
        if hooks and not self.settings.allow_hooks:
            raise JobFailed(
                f"source group {group.name!r} has hooks but this agent does not run hooks; "
                "set \"allow_hooks\": true in the agent config to allow them"
            )
        hook_env = {"RM_JOB_ID": job.job_id, "RM_SOURCE_GROUP": group.name}
        if group.pre_hook:
            self._agent_line(job, "running pre_hook")
            hr = await run_hook(
                group.pre_hook, on_line=self._line(job, "stdout"), env=hook_env, cancel=job.cancel,
                timeout=min(self.settings.hook_timeout, self._remaining(deadline)), grace=self.settings.cancel_grace,
            )
            if hr.cancelled:
                raise JobFailed("cancelled by request", hr.exit_code, JobState.cancelled)
            if hr.exit_code != 0:
                raise JobFailed(f"pre_hook failed with exit code {hr.exit_code}; backup not started", hr.exit_code)
        summary: dict[str, Any] = {}
        last_progress = 0.0

        def on_stdout(line: str) -> None:
            nonlocal last_progress
            msg = R.parse_json_line(line)
            if msg is None:
                line = R.strip_ansi(line)
                if line.strip():
                    self.events.log(job, "stdout", R.redact(line, job.secrets))
                return
            prog = R.progress_from_status(msg)
            if prog is not None:
                now = time.monotonic()
                if now - last_progress >= 1.0:
                    last_progress = now
                    self.events.progress(job, prog)
                return
            summ = R.backup_summary(msg)
            if summ is not None:
                summary.update(summ)
                self.events.log(
                    job, "stdout",
                    f"snapshot {summ.get('snapshot_id')} saved: {summ.get('files_new', 0)} new, "
                    f"{summ.get('files_changed', 0)} changed, {summ.get('files_unmodified', 0)} unmodified "
                    f"files; {summ.get('data_added', 0)} bytes added",
                )
                return
            if msg.get("message_type") == "verbose_status":
                return
            err = R.json_error_message(msg)
            if err:
                self.events.log(job, "stderr", R.redact(err, job.secrets))

        args = ["backup", "--json", "--tag", group.tag]
        for ex in group.excludes:
            args += ["--exclude", ex]
        args += ["--", *group.includes]
        res = await self._restic(job, ctx, args, deadline, on_stdout=on_stdout)
        result = self._outcome(res, summary or None)
        if group.post_hook:
            self._agent_line(job, "running post_hook")
            hr = await run_hook(
                group.post_hook, on_line=self._line(job, "stdout"),
                env={**hook_env, "RM_BACKUP_STATE": result.state.value}, cancel=job.cancel,
                timeout=min(self.settings.hook_timeout, max(1.0, deadline - time.monotonic())),
                grace=self.settings.cancel_grace,
            )
            if hr.exit_code != 0 and result.state == JobState.succeeded:
                result = JobResult(JobState.warning, result.exit_code, result.summary,
                                   f"post_hook failed with exit code {hr.exit_code}")
        return result

    async def _do_forget(self, job: Job, ctx: ResticContext, deadline: float) -> JobResult:
        groups = [SourceGroupSpec.model_validate(g) for g in job.params.get("source_groups") or []]
        if job.params.get("source_group"):
            groups.append(SourceGroupSpec.model_validate(job.params["source_group"]))
        if not groups:
            raise JobFailed("forget needs at least one source group")
        per_group: dict[str, Any] = {}
        skipped: list[str] = []
        last: RunResult | None = None
        for group in groups:
            try:
                args = R.forget_args(group.tag, group.retention)
            except ValueError as exc:
                skipped.append(group.name)
                self._agent_line(job, f"skipped source group {group.name!r}: {exc}")
                continue
            self._agent_line(job, f"forget for source group {group.name!r} (tag {group.tag})")
            res = await self._restic(job, ctx, args, deadline, capture=True, log_stdout=False)
            last = res
            if res.exit_code != 0:
                out = self._outcome(res)
                out.summary = {"groups": per_group, "skipped": skipped}
                return out
            removal_error = R.forget_removal_error(res.stderr)
            if removal_error:  # restic 0.18 exits 0 even so
                raise JobFailed(f"forget could not remove snapshots for source group {group.name!r} "
                                f"(an append-only repository needs the admin credentials): "
                                f"{R.redact(removal_error, job.secrets)}", res.exit_code)
            stats = R.parse_forget(res.stdout)
            per_group[group.name] = stats
            self._agent_line(job, f"{group.name}: kept {stats['keep']}, removed {stats['remove']} snapshots")
        summary = {"groups": per_group, "skipped": skipped}
        if skipped:
            return JobResult(
                JobState.failed if last is None else JobState.warning,
                last.exit_code if last else None, summary,
                "refused to forget with an empty retention policy for: " + ", ".join(skipped),
            )
        return JobResult(JobState.succeeded, 0, summary)

    async def _do_prune(self, job: Job, ctx: ResticContext, deadline: float) -> JobResult:
        res = await self._restic(job, ctx, ["prune"], deadline)
        return self._outcome(res)

    async def _restic_version(self) -> tuple[int, int, int] | None:
        if self._version is None:
            v = await detect_version(self.settings.restic_binary)
            self._version = R.parse_version(f"restic {v}") if v else None
        return self._version

    async def _do_check(self, job: Job, ctx: ResticContext, deadline: float) -> JobResult:
        version = await self._restic_version()
        as_json = version is not None and version >= R.CHECK_JSON_SINCE
        args = ["check", "--json"] if as_json else ["check"]
        subset = job.params.get("read_data_subset")
        if subset:
            args += [f"--read-data-subset={subset}"]
        text: list[str] = []
        log_line = self._line(job, "stdout")

        def on_stdout(line: str) -> None:
            text.append(line)
            msg = R.parse_json_line(line) if as_json else None
            if msg is not None and msg.get("message_type") == "summary":
                line = f"check finished: {msg.get('num_errors')} errors"
            elif msg is not None:
                line = R.json_error_message(msg) or line
            log_line(line)

        res = await self._restic(job, ctx, args, deadline, on_stdout=on_stdout)
        if as_json:
            summ = R.check_summary("\n".join(text))
            ok = summ is not None and res.exit_code == 0 and summ.get("num_errors") == 0
        else:
            ok = R.check_passed("\n".join(text) + "\n" + res.stderr)
        return self._outcome(res, {"no_errors": ok, "read_data_subset": subset})

    async def _do_unlock(self, job: Job, ctx: ResticContext, deadline: float) -> JobResult:
        args = ["unlock"] + (["--remove-all"] if job.params.get("remove_all") else [])
        return self._outcome(await self._restic(job, ctx, args, deadline))

    async def _do_restore(self, job: Job, ctx: ResticContext, deadline: float) -> JobResult:
        snap = str(job.params.get("snapshot_id") or "")
        target = str(job.params.get("target") or "")
        paths = [str(p) for p in job.params.get("paths") or []]
        if not snap or not all(c.isalnum() for c in snap) and snap != "latest":
            raise JobFailed(f"restore needs a snapshot id, got {snap!r}")
        if not os.path.isabs(target):
            raise JobFailed(f"restore target must be an absolute directory, got {target!r}")
        args = ["restore", snap, "--target", target]
        for p in paths:
            args += ["--include", p]
        res = await self._restic(job, ctx, args, deadline)
        return self._outcome(res, {"snapshot_id": snap, "target": target, "paths": paths})

    async def _do_snapshots(self, job: Job, ctx: ResticContext, deadline: float) -> JobResult:
        snaps = await self._snapshots(job, ctx, deadline)
        return JobResult(JobState.succeeded, 0, {"snapshots_count": len(snaps)})

    async def _do_stats(self, job: Job, ctx: ResticContext, deadline: float) -> JobResult:
        stats = await self._stats(job, ctx, deadline)
        return JobResult(JobState.succeeded, 0, stats)

    # ------------------------------------------------------------ reports

    async def _snapshots(self, job: Job, ctx: ResticContext, deadline: float) -> list[dict[str, Any]]:
        res = await self._restic(job, ctx, ["--no-lock", "snapshots", "--json"], deadline, capture=True, log_stdout=False)
        if res.exit_code != 0:
            raise JobFailed(R.classify_exit(res.exit_code, res.stderr).error or "snapshots failed", res.exit_code)
        snaps = R.parse_snapshots(res.stdout)
        self.events.report("snapshots.report", {"snapshots": snaps})
        return snaps

    async def _stats(self, job: Job, ctx: ResticContext, deadline: float) -> dict[str, Any]:
        res = await self._restic(
            job, ctx, ["--no-lock", "stats", "--json", "--mode", "raw-data"], deadline, capture=True, log_stdout=False
        )
        if res.exit_code != 0:
            raise JobFailed(R.classify_exit(res.exit_code, res.stderr).error or "stats failed", res.exit_code)
        raw = R.parse_stats(res.stdout)
        payload = {
            "total_size": raw.get("total_size"),
            "total_file_count": raw.get("total_file_count"),
            "snapshots_count": raw.get("snapshots_count"),
            "raw": raw,
        }
        self.events.report("repo.stats", payload)
        return payload

    async def _report(self, job: Job, ctx: ResticContext, deadline: float) -> None:
        """After a repository-changing job: fresh snapshot list and repo size (best effort)."""
        try:
            await self._snapshots(job, ctx, deadline)
            await self._stats(job, ctx, deadline)
        except JobFailed as exc:
            self._agent_line(job, f"could not refresh snapshots/stats: {exc}")
