"""The job queue: one restic at a time per repository, cancel, shutdown, every job ends reported.

What a job kind runs is in job_kinds.py; one running job's restic calls in job_run.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from pydantic import ValidationError

from rm_agent import reports, sandbox
from rm_agent.job_kinds import KINDS
from rm_agent.job_run import JobRun, Version
from rm_agent.jobs import Job, JobEvents, JobFailed, JobResult, RunnerSettings
from rm_agent.lines import agent_line
from rm_agent.restic_exec import MissingCredentials, ResticContext, UnusableParameters, detect_version, run_restic
from rm_core import restic as R
from rm_core.enums import CredentialSlot, JobKind, JobState
from rm_core.protocol import Bandwidth, RepoCredentials
from rm_core.times import utcnow

log = logging.getLogger("rm_agent.runner")


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
        self._version: Version | None = None

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
        if not job.cancel.is_set():
            # said at once: restic ends the uploads in flight before it exits, which under an
            # upload limit can take the whole grace (the log said nothing and looked stuck)
            note = (f"cancel requested: restic is interrupted; it ends the uploads in flight first and is "
                    f"killed if still running after {self.settings.cancel_grace:.0f} s")
            if job.started_at is None:
                job.notes.append(note)
            else:
                agent_line(self.events, job, note)
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

    async def remove_stale_locks(self) -> None:
        """After jobs were lost (the agent was killed mid-run), remove the locks their restic
        left: a restic killed with the agent (SIGKILL to the service's cgroup, or restic
        0.14 interrupted by PDEATHSIG) leaves its lock, and check, forget and prune then
        fail until someone unlocks. Plain `restic unlock` removes only locks of processes
        that no longer exist on this host (or are older than 30 min), and the repository's
        runner lock is held, so no lock of a live restic is touched."""
        done: set[str] = set()
        for slot in (CredentialSlot.repo, CredentialSlot.admin, CredentialSlot.copy):
            creds = self.credentials(slot)
            if creds is None:
                continue
            same = CredentialSlot.copy if slot == CredentialSlot.copy else CredentialSlot.repo
            key = _lock_key(self.credentials(same) or creds)
            if key in done:
                continue
            done.add(key)
            lock = self._repo_locks.setdefault(key, asyncio.Lock())
            async with lock:
                ctx = ResticContext(binary=self.settings.restic_binary, creds=creds, tmp_dir=self.settings.tmp_dir,
                                    cache_dir=self.settings.cache_dir)
                try:
                    res = await run_restic(ctx, ["unlock"], capture_stdout=True, timeout=120, grace=5)
                except (MissingCredentials, UnusableParameters, OSError) as exc:
                    log.warning("could not remove stale locks in %s: %s", key, exc)
                    continue
                if res.exit_code == 0:
                    log.info("stale locks in %s after lost jobs: %s", key,
                             "removed" if "successfully removed" in res.stdout else "none found")
                else:
                    log.warning("restic unlock in %s failed (exit %s): %s", key, res.exit_code,
                                R.redact(res.stderr.strip()[-300:]))

    # ------------------------------------------------------------ one job

    def _slot(self, job: Job) -> CredentialSlot:
        # the copy repository (a copy job writes it; `repo: "copy"` works on it) has one slot
        if job.kind == JobKind.copy or job.params.get("repo") == "copy":
            return CredentialSlot.copy
        if job.kind == JobKind.prune:
            return CredentialSlot.admin
        # a key rotation removes a key file: with an append-only repository only the admin
        # credentials can (the server says so when their password was rotated too)
        if job.kind == JobKind.rotate_key and job.params.get("admin") and self.credentials(CredentialSlot.admin):
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
            agent_line(self.events, job, note)

    def _credentials_for(self, job: Job) -> RepoCredentials | None:
        # A cross-host restore carries the source host's repository credentials in its params:
        # used for this job only, held in memory, never saved with this host's secrets.
        if job.kind == JobKind.restore and isinstance(job.params.get("repo"), dict):
            return RepoCredentials.model_validate(job.params["repo"])
        return self.credentials(self._slot(job))

    async def _run_guarded(self, job: Job) -> JobResult:
        creds = self._credentials_for(job)
        source = self.credentials(CredentialSlot.repo) if job.kind == JobKind.copy else None
        missing = _missing_credentials(job, creds, source)
        if missing:
            self._start(job)
            return JobResult(JobState.failed, error=missing)
        assert creds is not None
        job.secrets = [s for c in (creds, source) if c for s in (c.password, c.rest_password) if s]
        # one restic at a time per repository, whichever credentials (endpoint) a job uses; a
        # copy holds both its repositories, always taken in the same order (no deadlock)
        if isinstance(job.params.get("repo"), dict):  # a cross-host restore's own repository
            keys = [_lock_key(creds)]
        elif job.kind == JobKind.copy:
            keys = sorted({_lock_key(creds), _lock_key(source or creds)})
        else:
            same = CredentialSlot.copy if self._slot(job) == CredentialSlot.copy else CredentialSlot.repo
            keys = [_lock_key(self.credentials(same) or creds)]
        locks = [self._repo_locks.setdefault(key, asyncio.Lock()) for key in keys]
        if any(self._repo_users.get(key, 0) > 0 for key in keys):
            job.notes.append("waited for another restic job on this repository to finish")
        for key in keys:
            self._repo_users[key] = self._repo_users.get(key, 0) + 1
        held: list[asyncio.Lock] = []
        try:
            for lock in locks:
                if not await self._acquire(lock, job.cancel):
                    return JobResult(JobState.cancelled, error="cancelled before it started")
                held.append(lock)
            return await self._execute(job, creds, source)
        finally:
            for lock in held:
                lock.release()
            for key in keys:
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

    async def _execute(self, job: Job, creds: RepoCredentials, source: RepoCredentials | None = None) -> JobResult:
        if job.cancel.is_set():
            return JobResult(JobState.cancelled, error="cancelled before it started")
        self._start(job)
        bw = self.bandwidth()
        ctx = ResticContext(
            binary=self.settings.restic_binary,
            creds=creds,
            tmp_dir=self.settings.tmp_dir,
            upload_kbps=job.params.get("limit_upload_kbps") or bw.upload_kbps,
            download_kbps=job.params.get("limit_download_kbps") or bw.download_kbps,
            cache_dir=self.settings.cache_dir,
            from_creds=source,
        )
        deadline = time.monotonic() + float(job.params.get("timeout_seconds") or self.settings.default_timeout)
        run = JobRun(job, ctx, deadline, self.settings, self.events, self.on_pid, self._restic_version)
        blocked = sandbox.job_problem(job.kind, job.params, creds.url)
        if blocked:  # said in the unit's terms before restic fails obscurely (or "succeeds" unseen)
            return JobResult(JobState.failed, None, None, blocked)
        try:
            result = await KINDS[job.kind](run)
        except JobFailed as exc:
            result = JobResult(exc.state, exc.exit_code, None, str(exc))
        except (MissingCredentials, UnusableParameters, R.EmptyRetentionPolicy) as exc:
            result = JobResult(JobState.failed, None, None, str(exc))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            result = JobResult(JobState.failed, None, None,
                               f"invalid job parameters: {where + ': ' if where else ''}{first['msg']}")
        if job.kind in reports.REFRESHED_AFTER and not job.cancel.is_set():
            await reports.refresh(run)
        return result

    async def _restic_version(self) -> Version | None:
        """restic's version, asked once per agent run (the check kind's output format depends on it)."""
        if self._version is None:
            v = await detect_version(self.settings.restic_binary)
            self._version = R.parse_version(f"restic {v}") if v else None
        return self._version


def _lock_key(creds: RepoCredentials) -> str:
    return R.redact(creds.url).rstrip("/")


def _missing_credentials(job: Job, creds: RepoCredentials | None, source: RepoCredentials | None) -> str | None:
    """Why the job cannot run for want of credentials (None: it can)."""
    if job.kind == JobKind.copy and source is None:
        return R.NO_REPOSITORY
    if creds is not None:
        return None
    if job.kind == JobKind.copy or job.params.get("repo") == "copy":
        return "no copy repository configured for this host; set it with PUT /hosts/{id}/repo/copy"
    if job.kind == JobKind.prune:
        return R.NO_ADMIN_CREDENTIALS
    return R.NO_REPOSITORY
