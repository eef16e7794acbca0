"""The job kinds: what each one runs, in one table (`KINDS`) the runner looks a kind up in."""

from __future__ import annotations

import os
import time
from typing import Any, Awaitable, Callable

from rm_agent import key_rotation, restore_kinds
from rm_agent.backup_log import BackupLog
from rm_agent.job_run import JobRun
from rm_agent.jobs import JobFailed, JobResult
from rm_agent.reports import report_snapshots, report_stats
from rm_agent.restic_exec import RunResult, run_hook
from rm_core import restic as R
from rm_core.enums import JobKind, JobState
from rm_core.protocol import SourceGroupSpec
from rm_core.restic_copy import CopyOutput

KindHandler = Callable[[JobRun], Awaitable[JobResult]]


async def init(run: JobRun) -> JobResult:
    res = await run.restic(["init"])
    if res.exit_code != 0 and R.classify_error_text(res.stderr) == R.ERR_ALREADY_INITIALISED:
        # restic init says "already exists" whatever the password: reading the config needs
        # a key, so a mistyped password fails here rather than at the first backup.
        opened = await run.restic(["cat", "config"], capture=True, log_stdout=False)
        if opened.exit_code != 0:
            return run.outcome(opened)
        run.note("repository already initialised and the password opens it; nothing to do")
        return JobResult(JobState.succeeded, res.exit_code, {"already_initialised": True})
    return run.outcome(res, {"already_initialised": False} if res.exit_code == 0 else None)


async def backup(run: JobRun) -> JobResult:
    job, settings = run.job, run.settings
    group = SourceGroupSpec.model_validate(job.params.get("source_group") or {})
    if not group.includes:
        raise JobFailed(f"source group {group.name!r} has no include paths")
    hooks = [h for h in (group.pre_hook, group.post_hook) if h]
    if hooks and not settings.allow_hooks:
        raise JobFailed(
            f"source group {group.name!r} has hooks but this agent does not run hooks; "
            "set \"allow_hooks\": true in the agent config to allow them"
        )
    hook_env = {"RM_JOB_ID": job.job_id, "RM_SOURCE_GROUP": group.name}
    if group.pre_hook:
        run.note("running pre_hook")
        hr = await run_hook(
            group.pre_hook, on_line=run.line("stdout"), env=hook_env, cancel=job.cancel,
            timeout=min(settings.hook_timeout, run.remaining()), grace=settings.cancel_grace,
        )
        if hr.cancelled:
            raise JobFailed("cancelled by request", hr.exit_code, JobState.cancelled)
        if hr.exit_code != 0:
            raise JobFailed(f"pre_hook failed with exit code {hr.exit_code}; backup not started", hr.exit_code)
    # restic skips a missing include with one log line and still exits 0: the fleet then
    # showed green for a backup that did not read what it was told to read.
    missing = [path for path in group.includes if not os.path.lexists(path)]
    args = ["backup", "--json", "--tag", group.tag]
    for ex in group.excludes:
        args += ["--exclude", ex]
    args += ["--", *group.includes]
    live = BackupLog(run)
    res = await run.restic(args, on_stdout=live.on_stdout)
    live.finish()
    result = run.outcome(res, live.summary or None)
    if missing and result.state == JobState.succeeded:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        result = JobResult(JobState.warning, result.exit_code, result.summary,
                           f"source path{'s' if len(missing) > 1 else ''} not found, not backed up: {shown}")
        if result.summary is not None:
            result.summary["missing_paths"] = missing
    if group.post_hook:
        run.note("running post_hook")
        hr = await run_hook(
            group.post_hook, on_line=run.line("stdout"),
            env={**hook_env, "RM_BACKUP_STATE": result.state.value}, cancel=job.cancel,
            timeout=min(settings.hook_timeout, max(1.0, run.deadline - time.monotonic())),
            grace=settings.cancel_grace,
        )
        if hr.exit_code != 0 and result.state == JobState.succeeded:
            result = JobResult(JobState.warning, result.exit_code, result.summary,
                               f"post_hook failed with exit code {hr.exit_code}")
    return result


async def forget(run: JobRun) -> JobResult:
    job = run.job
    groups = [SourceGroupSpec.model_validate(g) for g in job.params.get("source_groups") or []]
    if job.params.get("source_group"):
        groups.append(SourceGroupSpec.model_validate(job.params["source_group"]))
    for name in job.params.get("paused") or []:
        run.note(f"retention of source group {name!r} paused: a backup anomaly waits for an operator")
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
            run.note(f"skipped source group {group.name!r}: {exc}")
            continue
        run.note(f"forget for source group {group.name!r} (tag {group.tag})")
        res = await run.restic(args, capture=True, log_stdout=False)
        last = res
        if res.exit_code != 0:
            out = run.outcome(res)
            out.summary = {"groups": per_group, "skipped": skipped}
            return out
        removal_error = R.forget_removal_error(res.stderr)
        if removal_error:  # restic 0.18 exits 0 even so
            raise JobFailed(f"forget could not remove snapshots for source group {group.name!r} "
                            f"(an append-only repository needs the admin credentials): "
                            f"{R.redact(removal_error, job.secrets)}", res.exit_code)
        stats = R.parse_forget(res.stdout)
        per_group[group.name] = stats
        run.note(f"{group.name}: kept {stats['keep']}, removed {stats['remove']} snapshots")
    summary: dict[str, Any] = {"groups": per_group, "skipped": skipped}
    if job.params.get("paused"):
        summary["paused"] = list(job.params["paused"])
    if skipped:
        return JobResult(
            JobState.failed if last is None else JobState.warning,
            last.exit_code if last else None, summary,
            "refused to forget with an empty retention policy for: " + ", ".join(skipped),
        )
    return JobResult(JobState.succeeded, 0, summary)


async def copy(run: JobRun) -> JobResult:
    """`restic copy --tag T` from the primary into the copy repository.

    Resumable by restic's own order: a snapshot is written after all its data, so a copy
    killed part-way leaves no snapshot that looks complete; the next copy copies it again
    and skips the snapshots that made it (restic compares their `original` ids)."""
    group = SourceGroupSpec.model_validate(run.job.params.get("source_group") or {})
    if not group.tag:
        raise JobFailed("copy needs the source group's tag")
    run.note(f"copying the snapshots of source group {group.name!r} (tag {group.tag}) into the copy repository")
    out = CopyOutput()
    log_line = run.line("stdout")

    def on_stdout(line: str) -> None:
        out.feed(line)
        log_line(line)

    res = await run.restic(["copy", "--tag", group.tag], on_stdout=on_stdout)
    summary: dict[str, Any] = {"tag": group.tag, **out.summary()}
    result = run.outcome(res, summary)
    if result.state == JobState.succeeded:
        run.note(f"copied {summary['copied']} snapshot(s); {summary['already_copied']} were in the copy already")
    if result.error:
        result.error = R.redact(result.error, run.job.secrets)
    return result


async def prune(run: JobRun) -> JobResult:
    return run.outcome(await run.restic(["prune"]))


async def check(run: JobRun) -> JobResult:
    version = await run.restic_version()
    as_json = version is not None and version >= R.CHECK_JSON_SINCE
    args = ["check", "--json"] if as_json else ["check"]
    subset = run.job.params.get("read_data_subset")
    if subset:
        args += [f"--read-data-subset={subset}"]
    text: list[str] = []
    log_line = run.line("stdout")

    def on_stdout(line: str) -> None:
        text.append(line)
        msg = R.parse_json_line(line) if as_json else None
        if msg is not None and msg.get("message_type") == "summary":
            line = f"check finished: {msg.get('num_errors')} errors"
        elif msg is not None:
            line = R.error_message(msg) or line
        log_line(line)

    res = await run.restic(args, on_stdout=on_stdout)
    if as_json:
        summ = R.check_summary("\n".join(text))
        ok = summ is not None and res.exit_code == 0 and summ.get("num_errors") == 0
    else:
        ok = R.check_passed("\n".join(text) + "\n" + res.stderr)
    return run.outcome(res, {"no_errors": ok, "read_data_subset": subset})


async def unlock(run: JobRun) -> JobResult:
    args = ["unlock"] + (["--remove-all"] if run.job.params.get("remove_all") else [])
    return run.outcome(await run.restic(args))


async def snapshots(run: JobRun) -> JobResult:
    snaps = await report_snapshots(run)
    return JobResult(JobState.succeeded, 0, {"snapshots_count": len(snaps)})


async def stats(run: JobRun) -> JobResult:
    return JobResult(JobState.succeeded, 0, await report_stats(run))


KINDS: dict[JobKind, KindHandler] = {
    JobKind.init: init,
    JobKind.backup: backup,
    JobKind.forget: forget,
    JobKind.prune: prune,
    JobKind.check: check,
    JobKind.unlock: unlock,
    JobKind.restore: restore_kinds.restore,
    JobKind.drill: restore_kinds.drill,
    JobKind.snapshots: snapshots,
    JobKind.stats: stats,
    JobKind.copy: copy,
    JobKind.rotate_key: key_rotation.rotate_key,
}
