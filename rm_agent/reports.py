"""Reports the server keeps per host: the snapshot list and the repository size."""

from __future__ import annotations

from typing import Any

from rm_agent.job_run import JobRun
from rm_agent.jobs import JobFailed
from rm_agent.restic_exec import MissingCredentials, UnusableParameters
from rm_core import restic as R
from rm_core.enums import JobKind

# jobs that change what is in the repository: the reports are refreshed after each
REFRESHED_AFTER = frozenset({JobKind.backup, JobKind.forget, JobKind.prune, JobKind.check, JobKind.copy})


def on_copy(run: JobRun) -> bool:
    """The job works on the copy repository (a copy job writes it): its reports are copy.report."""
    return run.job.kind == JobKind.copy or run.job.params.get("repo") == "copy"


async def _snapshots(run: JobRun) -> list[dict[str, Any]]:
    res = await run.restic(["--no-lock", "snapshots", "--json"], capture=True, log_stdout=False)
    if res.exit_code != 0:
        raise JobFailed(R.classify_exit(res.exit_code, res.stderr).error or "snapshots failed", res.exit_code)
    return R.parse_snapshots(res.stdout)


async def report_snapshots(run: JobRun) -> list[dict[str, Any]]:
    if on_copy(run):
        snapshots: list[dict[str, Any]] = (await report_copy(run))["snapshots"]
        return snapshots
    snaps = await _snapshots(run)
    run.events.report("snapshots.report", {"snapshots": snaps})
    return snaps


async def report_copy(run: JobRun) -> dict[str, Any]:
    """The copy repository's snapshots and size in one copy.report (its own message type: a
    server that knows no copies must not take them for the primary's)."""
    payload = {"snapshots": await _snapshots(run), "stats": await _stats(run)}
    run.events.report("copy.report", payload)
    return payload


async def report_stats(run: JobRun) -> dict[str, Any]:
    if on_copy(run):
        stats: dict[str, Any] = (await report_copy(run))["stats"]
        return stats
    payload = await _stats(run)
    run.events.report("repo.stats", payload)
    return payload


async def _stats(run: JobRun) -> dict[str, Any]:
    res = await run.restic(["--no-lock", "stats", "--json", "--mode", "raw-data"], capture=True, log_stdout=False)
    if res.exit_code != 0:
        raise JobFailed(R.classify_exit(res.exit_code, res.stderr).error or "stats failed", res.exit_code)
    raw = R.parse_stats(res.stdout)
    payload = {
        "total_size": raw.get("total_size"),
        # raw-data mode counts blobs, not files: restic 0.14 prints total_file_count 0 anyway
        # (newer versions leave it out). Not sent as a count it is not.
        "total_file_count": None,
        "snapshots_count": raw.get("snapshots_count"),
        "raw": raw,
    }
    return payload


async def refresh(run: JobRun) -> None:
    """After a repository-changing job: fresh snapshot list and repo size (best effort)."""
    try:
        if on_copy(run):
            await report_copy(run)
        else:
            await report_snapshots(run)
            await report_stats(run)
    except (JobFailed, MissingCredentials, UnusableParameters) as exc:
        run.note(f"could not refresh snapshots/stats: {exc}")
