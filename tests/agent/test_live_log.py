"""The live backup log against real restic 0.14 and 0.18: warnings as they happen (bounded),
throttled progress lines, a readable summary last, never a line per file.

Tests run as root, and root reads a chmod-000 file. To get restic's real "permission denied"
warning, restic runs through a wrapper that drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH
from its bounding set (`setpriv`): still uid 0 (so it reads its own 0600 password file and
writes the root-owned repository), but file modes now bind it, as for an agent without them.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from rm_agent.jobs import Job, RunnerSettings
from rm_agent.lines import MAX_ERROR_LINES
from rm_agent.runner import Runner
from rm_core.enums import ActorKind, CredentialSlot, JobKind, JobState
from rm_core.ids import new_id
from rm_core.protocol import Bandwidth

from .conftest import Recorder, creds_for
from .test_restic_versions import Restic, group, restic  # noqa: F401  (restic: the 0.14/0.18 fixture)

SUMMARY = re.compile(r"^snapshot [0-9a-f]{8} saved · ")
HIDDEN = re.compile(r"^… (\d+) more errors? not shown")


def without_dac(tmp_path: Path, binary: str) -> str:
    """restic, unable to read files its mode bits forbid even as root."""
    if os.geteuid() != 0:
        return binary  # an ordinary user cannot read a chmod-000 file anyway
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) missing: cannot make a file unreadable to restic running as root")
    wrapper = tmp_path / "restic-no-dac"
    caps = "-dac_override,-dac_read_search"
    wrapper.write_text(f'#!/bin/sh\nexec {setpriv} --bounding-set={caps} --inh-caps={caps} {binary} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def runner_for(tmp_path: Path, rec: Recorder, repo: Path, binary: str, **settings) -> Runner:
    rs = RunnerSettings(restic_binary=binary, tmp_dir=tmp_path / "agent-tmp", cache_dir=str(tmp_path / "cache"),
                        **settings)
    return Runner(rs, rec, lambda slot: creds_for(repo) if slot == CredentialSlot.repo else None, Bandwidth)


async def backup(runner: Runner, rec: Recorder, src_group: dict, **params) -> tuple[list[tuple[str, str]], object]:
    job = Job(new_id(), JobKind.backup, {"source_group": src_group, **params}, actor_kind=ActorKind.user)
    runner.submit(job)
    await runner.wait_idle()
    return rec.lines[job.job_id], rec.results[job.job_id]


def unreadable_tree(root: Path, n_locked: int = 1) -> Path:
    (root / "ok").mkdir(parents=True)
    (root / "ok" / "a.txt").write_text("alpha\n")
    (root / "locked").mkdir()
    for i in range(n_locked):
        f = root / "locked" / f"secret-{i}.txt"
        f.write_text("nobody may read this\n")
        f.chmod(0)
    return root


def index(lines: list[tuple[str, str]], pattern: re.Pattern | str) -> int:
    for i, (_, text) in enumerate(lines):
        if (pattern.search(text) if isinstance(pattern, re.Pattern) else pattern in text):
            return i
    raise AssertionError(f"no log line matches {pattern!r}:\n" + "\n".join(t for _, t in lines))


async def test_unreadable_file_warned_before_the_summary(tmp_path: Path, recorder: Recorder, repo: Path,
                                                       restic: Restic) -> None:
    src = unreadable_tree(tmp_path / "src")
    missing = tmp_path / "not-there"
    runner = runner_for(tmp_path, recorder, repo, without_dac(tmp_path, restic.binary))
    g = group(src)
    g["includes"].append(str(missing))
    lines, res = await backup(runner, recorder, g)
    text = "\n".join(t for _, t in lines)
    assert res.state == JobState.warning and res.exit_code == 3, (res, text)

    warned = index(lines, re.compile(r"secret-0\.txt.*permission denied"))
    skipped = index(lines, f"{missing} does not exist, skipping")
    summary = index(lines, SUMMARY)
    assert lines[warned][0] == lines[skipped][0] == "stderr", lines
    assert max(warned, skipped) < summary == len(lines) - 1, text
    # human units in the line, restic's raw numbers in job.finished's summary
    assert "data_added" not in text and "total_duration" not in text
    assert re.search(r" · 1 file: 1 new, 0 changed, 0 unmodified · .+ processed in [\d.]+m?s · ", lines[summary][1])
    assert isinstance(res.summary["data_added"], int) and isinstance(res.summary["total_duration"], float)
    assert res.summary["files_new"] == 1
    assert "{" not in text, text  # restic's JSON errors are worded, not forwarded raw


async def test_error_flood_is_bounded_and_counted(tmp_path: Path, recorder: Recorder, repo: Path,
                                                  restic: Restic) -> None:
    assert MAX_ERROR_LINES == 200  # the agent's default; a smaller budget keeps this test cheap
    n_locked = 60
    src = unreadable_tree(tmp_path / "src", n_locked)
    runner = runner_for(tmp_path, recorder, repo, without_dac(tmp_path, restic.binary), max_error_lines=20)
    lines, res = await backup(runner, recorder, group(src))
    assert res.state == JobState.warning, res
    errors = [t for s, t in lines if s == "stderr"]
    assert len(errors) == 20, errors
    hidden = index(lines, HIDDEN)
    # every unreadable file is one error, plus restic's closing "at least one source file" line
    assert int(HIDDEN.search(lines[hidden][1]).group(1)) == n_locked + 1 - 20, lines[hidden]
    assert hidden == len(lines) - 2 and SUMMARY.search(lines[-1][1]), lines


async def test_many_files_give_progress_lines_not_a_line_per_file(tmp_path: Path, recorder: Recorder,
                                                                  repo: Path, restic: Restic) -> None:
    src = tmp_path / "many"
    for d in range(20):
        (src / f"d{d}").mkdir(parents=True)
        for i in range(1000):
            (src / f"d{d}" / f"f{i}").write_text(f"{d}-{i}\n")
    # ~7 MB to upload at 1 MiB/s: restic runs for several seconds and prints status lines
    runner = runner_for(tmp_path, recorder, repo, restic.binary, progress_log_seconds=1.0)
    lines, res = await backup(runner, recorder, group(src), limit_upload_kbps=1024)
    assert res.state == JobState.succeeded, (res, lines)
    job_id = next(iter(recorder.lines))
    seconds = res.summary["total_duration"]
    progress = [t for s, t in lines if s == "stdout" and " files · " in t]
    assert progress, (seconds, lines)
    # at most one a second, plus one per 25/50/75 % milestone
    assert len(progress) <= seconds + 1 + 3, (seconds, progress)
    # the rate needs elapsed time: restic's first status line (0 s in) has none, so it is optional
    assert all(re.match(r"^\d+% · [\d,]+ / [\d,]+ files · [^·]+ / [^·]+( · [^·]+/s)?( · ETA |$)", t)
               for t in progress), progress
    assert any(t.endswith("/s") or "/s · ETA" in t for t in progress), progress
    assert len(lines) <= seconds + 10, lines  # not one line per file of 20,000
    assert SUMMARY.search(lines[-1][1]) and "20,000 files: 20,000 new" in lines[-1][1], lines[-1]
    # job.progress stays at most one a second
    times = [t for t, _ in recorder.progress_[job_id]]
    assert all(b - a >= 0.9 for a, b in zip(times, times[1:])), times
