"""BackupLog's throttling rules, fed restic 0.14/0.18-shaped `backup --json` lines on a test clock."""

from __future__ import annotations

import json
from pathlib import Path

from rm_agent.backup_log import BackupLog
from rm_agent.job_run import JobRun
from rm_agent.jobs import Job, RunnerSettings
from rm_agent.restic_exec import ResticContext
from rm_core.enums import JobKind

from .conftest import Recorder, creds_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _none() -> None:
    return None


def live_log(rec: Recorder, clock: Clock, **settings) -> tuple[Job, BackupLog]:
    job = Job("job-1", JobKind.backup)
    run = JobRun(job, ResticContext("restic", creds_for("/nonexistent"), Path("/tmp")), 0.0,
                 RunnerSettings(**settings), rec, None, _none)
    return job, BackupLog(run, clock)


def status(i: int, n: int) -> str:
    return json.dumps({"message_type": "status", "seconds_elapsed": i, "seconds_remaining": n - i,
                       "percent_done": i / n, "total_files": 20000, "files_done": 20000 * i // n,
                       "total_bytes": 10 << 30, "bytes_done": (10 << 30) * i // n,
                       "current_files": [f"/data/f{i}"]})


async def test_progress_lines_every_interval_and_at_milestones() -> None:
    rec, clock = Recorder(), Clock()
    job, live = live_log(rec, clock)  # default: a line every 10 s
    n = 60
    for i in range(1, n + 1):
        clock.now += 0.5
        live.on_stdout(json.dumps({"message_type": "verbose_status", "action": "new", "item": f"/data/f{i}"}))
        clock.now += 0.5
        live.on_stdout(status(i, n))
    # every 10 s since the last line, and when 25/50/75 % are passed (at 15, 30, 45 s)
    logged = [t for _, t in rec.lines[job.job_id]]
    assert [int(t.split("%")[0]) for t in logged] == [16, 25, 41, 50, 66, 75, 91], logged
    assert logged[0] == "16% · 3,333 / 20,000 files · 1.7 GiB / 10 GiB · 171 MiB/s · ETA 50s"
    assert len(rec.progress_[job.job_id]) == n  # job.progress: one a second
    live.on_stdout(json.dumps({"message_type": "summary", "files_new": 20000, "data_added": 377507347,
                               "total_duration": 61.2, "snapshot_id": "ab" * 32, "unknown_key": 1}))
    live.finish()
    assert rec.lines[job.job_id][-1][1] == ("snapshot abababab saved · 20,000 files: 20,000 new, 0 changed, "
                                            "0 unmodified · took 1m01s · 360 MiB added to the repository")
    assert live.summary["data_added"] == 377507347 and "unknown_key" not in live.summary


async def test_fast_status_lines_give_one_progress_event_a_second() -> None:
    rec, clock = Recorder(), Clock()
    job, live = live_log(rec, clock, progress_log_seconds=5)
    for i in range(1, 41):  # RESTIC_PROGRESS_FPS unset: restic can print many a second
        clock.now += 0.1
        live.on_stdout(status(i, 1000))
    assert len(rec.progress_[job.job_id]) == 4
    assert rec.lines.get(job.job_id) is None  # 4 s: no line yet, no milestone passed


async def test_error_json_on_stdout_is_worded_and_budgeted() -> None:
    rec, clock = Recorder(), Clock()
    job, live = live_log(rec, clock, max_error_lines=1)
    err014 = {"message_type": "error", "error": {"Op": "open", "Path": "/d/x", "Err": 13}, "during": "archival",
              "item": "/d/x"}
    err018 = {"message_type": "error", "error": {"message": "/d/y: open /d/y: permission denied"},
              "during": "archival", "item": "/d/y"}
    live.on_stdout(json.dumps(err014))
    live.on_stdout(json.dumps(err018))
    assert rec.lines[job.job_id] == [("stderr", "open /d/x: permission denied")]
    assert live.run.errors.hidden == 1
