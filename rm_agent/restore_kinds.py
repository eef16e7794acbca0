"""The restore and drill job kinds: bring paths of a snapshot back (optionally verified, and
for a cross-host restore with another host's repository credentials for this job only), and
prove a source group can be restored by restoring a random sample and checking it."""

from __future__ import annotations

import asyncio
import hashlib
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from rm_agent.job_run import JobRun
from rm_agent.jobs import JobFailed, JobResult
from rm_core import restic as R
from rm_core.enums import JobState
from rm_core.restore import (
    DrillParams, DrillReport, RestoreParams, SampleFile, SampleReservoir, include_pattern, mtime_ns, restore_args,
)


def _verified_count(lines: List[str]) -> Optional[int]:
    """'finished verifying 12 files in /t (took 1ms)' -> 12 (0.14 and 0.18 print it alike)."""
    for line in reversed(lines):
        words = line.split()
        if len(words) > 3 and words[:2] == ["finished", "verifying"] and words[2].isdigit():
            return int(words[2])
    return None


def _logged(run: JobRun, keep: List[str]) -> Callable[[str], None]:
    log_line = run.line("stdout")

    def on_stdout(line: str) -> None:
        keep.append(R.strip_ansi(line))
        log_line(line)

    return on_stdout


async def restore(run: JobRun) -> JobResult:
    params = RestoreParams.model_validate(run.job.params)
    if params.repo is not None:
        run.note(f"restoring a snapshot of host {params.from_host_id}: its repository credentials are used for "
                 "this job only and not kept")
    out: List[str] = []
    res = await run.restic(restore_args(params), on_stdout=_logged(run, out))
    summary: Dict[str, Any] = {"snapshot_id": params.snapshot_id, "target": params.target, "paths": params.paths,
                               "verify": params.verify}
    if params.from_host_id:
        summary["from_host_id"] = params.from_host_id
    if params.verify:
        summary["verified_files"] = _verified_count(out)
    result = run.outcome(res, summary)
    if result.error:
        result.error = R.redact(result.error, run.job.secrets)
    return result


# ------------------------------------------------------------------ drills


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _unchanged(live: Path, f: SampleFile) -> bool:
    """The live file has the snapshot's size and mtime: it should have the same bytes."""
    try:
        st = live.stat()
    except OSError:
        return False
    return st.st_size == f.size and st.st_mtime_ns == mtime_ns(f.mtime)


async def _draw_sample(run: JobRun, params: DrillParams) -> SampleReservoir:
    """One `restic ls --json latest --tag TAG`: restic picks the group's latest snapshot (newest
    by time, as `snapshots` would) and prints it first, then every node, which the reservoir
    samples as it streams by. Measured at 100,000 files: a separate `snapshots` call cost a
    restic start-up (key derivation, ~0.5 s) and keeping and parsing every node cost more than
    restic's own walk (docs/benchmarks.md, "Restore drills")."""
    rng = random.Random(params.seed) if params.seed is not None else None
    reservoir = SampleReservoir(params.sample_files, params.sample_mb * 1024 * 1024, rng)
    tag = params.source_group.tag
    res = await run.restic(["--no-lock", "ls", "--json", "latest", "--tag", tag], on_stdout=reservoir.feed)
    if reservoir.snapshot is None:
        # 0.14 says "no snapshot matched" and exits 0, 0.18 exits 1 with "no snapshot found"
        if res.exit_code == 0 or "no snapshot" in res.stderr.lower():
            raise JobFailed(f"no snapshot with tag {tag!r} to drill; run a backup of the group first")
        out = R.classify_exit(res.exit_code, res.stderr)
        raise JobFailed(R.redact(f"could not list the latest snapshot: {out.error}", run.job.secrets), res.exit_code)
    if res.exit_code != 0:
        raise _damage(run, res, f"could not list snapshot {reservoir.snapshot.get('short_id')}")
    return reservoir


def _damage(run: JobRun, res: Any, what: str) -> JobFailed:
    """restic's summary ("Fatal: There were 2 errors") says little: name the first error too,
    e.g. "decrypting blob ... failed: ciphertext verification failed"."""
    out = R.classify_exit(res.exit_code, res.stderr)
    first = next((ln.strip() for ln in res.stderr.splitlines()
                  if ("error" in ln.lower() or "failed" in ln.lower()) and not ln.startswith("Fatal")), None)
    detail = f"{first}; {out.error}" if first else out.error
    return JobFailed(R.redact(f"restore drill found damage: {what}: {detail}", run.job.secrets), res.exit_code)


async def drill(run: JobRun) -> JobResult:
    """Restore a random sample of the group's latest snapshot with --verify into a private temp
    dir, compare SHA-256 with live files unchanged since the snapshot, remove the temp dir."""
    params = DrillParams.model_validate(run.job.params)
    started = time.monotonic()
    phases: Dict[str, float] = {}
    mark = started

    def phase(name: str) -> None:
        # measured here, as the job runs, so the bench reports what the job really spent
        nonlocal mark
        now = time.monotonic()
        phases[name] = round(now - mark, 3)
        mark = now

    reservoir = await _draw_sample(run, params)
    phase("sample")
    snap = reservoir.snapshot
    assert snap is not None
    report = DrillReport(snapshot_id=snap["id"])
    sample = reservoir.sample()
    run.note(f"drill of snapshot {snap['short_id']}: {len(sample)} of {reservoir.files} files, "
             f"{sum(f.size for f in sample)} bytes")
    for f in sample:  # which files were proven restorable, for the operator (and the bench's bare baseline)
        run.note(f"drill sample: {f.path}")
    if not sample:
        report.duration = round(time.monotonic() - started, 3)
        return JobResult(JobState.warning, 0, report.model_dump(),
                         "nothing to drill: the snapshot has no file within the sample's byte budget")
    run.settings.tmp_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = Path(tempfile.mkdtemp(prefix="drill-", dir=run.settings.tmp_dir))  # 0700 by mkdtemp
    loop = asyncio.get_running_loop()
    try:
        args = ["restore", snap["id"], "--target", str(tmp), "--verify"]
        for f in sample:
            args += ["--include", include_pattern(f.path)]
        out: List[str] = []
        phase("prepare")  # the sample's log lines and the temp dir
        res = await run.restic(args, on_stdout=_logged(run, out))
        phase("restore")
        if res.exit_code != 0:
            err = _damage(run, res, f"restic restore --verify of {len(sample)} files failed")
            report.damage = str(err)
            report.phases = dict(phases)
            report.duration = round(time.monotonic() - started, 3)
            return JobResult(JobState.failed, res.exit_code, report.model_dump(), str(err))
        await loop.run_in_executor(None, _check_sample, tmp, sample, report)
        phase("compare")
    finally:
        await loop.run_in_executor(None, lambda: shutil.rmtree(tmp, ignore_errors=True))
        phase("cleanup")
    report.phases = dict(phases)
    report.duration = round(time.monotonic() - started, 3)
    run.note(f"drill checked {report.files} files ({report.bytes} bytes): {report.compared} compared with the live "
             f"files, {report.skipped_changed} changed since, {report.mismatches} mismatches")
    run.note("drill phases: " + ", ".join(f"{k} {v:.3f} s" for k, v in phases.items())
             + f"; {report.duration:.3f} s in all")
    if report.mismatches:
        return JobResult(JobState.failed, 0, report.model_dump(),
                         f"restore drill: {report.mismatches} restored files differ from their unchanged live files: "
                         + ", ".join(report.mismatched_paths[:5]))
    return JobResult(JobState.succeeded, 0, report.model_dump())


def _check_sample(tmp: Path, sample: List[SampleFile], report: DrillReport) -> None:
    for f in sample:
        restored = tmp / f.path.lstrip("/")
        if not restored.is_file() or restored.stat().st_size != f.size:
            report.mismatches += 1
            report.mismatched_paths.append(f.path)
            continue
        report.files += 1
        report.bytes += f.size
        live = Path(f.path)
        if not _unchanged(live, f):
            report.skipped_changed += 1
            continue
        report.compared += 1
        if _sha256(restored) != _sha256(live):
            report.mismatches += 1
            report.mismatched_paths.append(f.path)


__all__ = ["drill", "restore"]
