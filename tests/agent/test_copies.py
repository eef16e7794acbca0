"""The copy job against real restic 0.14 and 0.18: into a local directory, `rclone serve restic`,
and restic-rest-server (append-only too); only the group's snapshots, each once; bandwidth caps;
a copy killed with SIGKILL part-way is finished by the next one."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rm_agent.jobs import Job
from rm_core import restic as R
from rm_core.enums import ActorKind, CredentialSlot, JobKind, JobState
from rm_core.ids import new_id
from rm_core.protocol import RepoCredentials

from tests.restic_keys import cheapen

from .conftest import PASSWORD, Recorder, big_source
from .test_restic_versions import (  # noqa: F401  (the restic fixture)
    Restic, _stop, group, htpasswd, make_runner, make_source, poll, restic, restic_env, run_job, start_rclone,
    start_rest_server,
)

COPY_PASSWORD = "copy password, not the primary's"


@pytest.fixture(params=["local", "rclone", "rest-server-append-only"])
def copy_target(request, tmp_path: Path) -> Iterator[tuple[str, RepoCredentials, Path]]:
    """(name, credentials of the copy repository, its directory on disk)."""
    if request.param == "local":
        yield request.param, RepoCredentials(url=str(tmp_path / "copy"), password=COPY_PASSWORD), tmp_path / "copy"
        return
    ht = htpasswd(tmp_path / "htpasswd", {"offsite": "rest-secret-9"})
    data = tmp_path / "rest-data"
    data.mkdir()
    if request.param == "rclone":
        proc, base = start_rclone(data, ht)
    else:
        proc, base = start_rest_server(data, ht, "--append-only")
    try:
        yield request.param, RepoCredentials(url=f"rest:{base}/copy/", password=COPY_PASSWORD, rest_user="offsite",
                                             rest_password="rest-secret-9"), data / "copy"
    finally:
        _stop(proc)


def snapshots(restic: Restic, creds: RepoCredentials, tmp: Path) -> list[dict]:
    out = subprocess.run([restic.binary, "snapshots", "--json"], env=restic_env(creds, tmp), capture_output=True,
                         text=True, check=True, timeout=120, stdin=subprocess.DEVNULL).stdout
    return R.parse_snapshots(out)


async def test_copy_takes_only_the_groups_snapshots_once(tmp_path: Path, restic: Restic, copy_target) -> None:
    name, copy_creds, copy_dir = copy_target
    primary = RepoCredentials(url=str(tmp_path / "primary"), password=PASSWORD)
    rec = Recorder()
    runner = make_runner(tmp_path, rec, restic, {CredentialSlot.repo: primary, CredentialSlot.copy: copy_creds})
    for params in ({}, {"repo": "copy"}):
        jid, res = await run_job(runner, rec, JobKind.init, params)
        assert res.state == JobState.succeeded, (res, rec.text(jid))
    assert (copy_dir / "config").is_file() and (tmp_path / "primary" / "config").is_file()
    cheapen(tmp_path / "primary", PASSWORD)  # see tests/restic_keys.py
    cheapen(copy_dir, COPY_PASSWORD)
    docs, other = make_source(tmp_path / "docs"), make_source(tmp_path / "other")
    for src, tag in ((docs, "docs"), (other, "other"), (docs, "docs")):
        _, res = await run_job(runner, rec, JobKind.backup, {"source_group": group(src, tag)})
        assert res.state == JobState.succeeded, res

    jid, res = await run_job(runner, rec, JobKind.copy, {"source_group": group(docs, "docs")})
    assert res.state == JobState.succeeded, (res, rec.text(jid))
    assert res.summary["copied"] == 2 and res.summary["tag"] == "docs", res.summary
    prim = {s["id"]: s for s in snapshots(restic, primary, tmp_path)}
    copied = snapshots(restic, copy_creds, tmp_path)
    assert sorted(s["original"] for s in copied) == sorted(i for i, s in prim.items() if s["tags"] == ["docs"])
    assert all(s["tags"] == ["docs"] for s in copied)
    report = [pl for t, pl in rec.reports if t == "copy.report"][-1]
    assert sorted(s["id"] for s in report["snapshots"]) == sorted(s["id"] for s in copied)
    assert report["stats"]["total_size"] > 0
    assert not [t for t, _ in rec.reports[-1:] if t == "snapshots.report"], "the copy job reports the copy only"
    text = rec.text(jid)
    for secret in (PASSWORD, COPY_PASSWORD, "rest-secret-9"):
        assert secret not in text and secret not in str(res), secret

    # again: nothing new to copy, nothing copied twice
    jid, res = await run_job(runner, rec, JobKind.copy, {"source_group": group(docs, "docs")})
    assert res.state == JobState.succeeded and res.summary["copied"] == 0, (res, rec.text(jid))
    assert len(snapshots(restic, copy_creds, tmp_path)) == 2

    # check and a restore drill of the copy; forget on the copy (refused by an append-only server)
    jid, res = await run_job(runner, rec, JobKind.check, {"repo": "copy"})
    assert res.state == JobState.succeeded and res.summary["no_errors"], (res, rec.text(jid))
    jid, res = await run_job(runner, rec, JobKind.drill, {"repo": "copy", "source_group": group(docs, "docs"),
                                                          "sample_files": 2, "sample_mb": 1})
    assert res.state == JobState.succeeded and res.summary["mismatches"] == 0, (res, rec.text(jid))
    if name == "rest-server-append-only":
        if restic.new:  # 0.14 retries the refused delete for ~45 s before it fails
            jid, res = await run_job(runner, rec, JobKind.forget, {"repo": "copy", "source_groups": [group(docs, "docs")]})
            assert res.state == JobState.failed and "append-only" in res.error, (res, rec.text(jid))
    else:
        jid, res = await run_job(runner, rec, JobKind.forget, {"repo": "copy", "source_groups": [group(docs, "docs")]})
        assert res.state == JobState.succeeded and res.summary["groups"]["docs"]["remove"] == 1, (res, rec.text(jid))
        assert len(snapshots(restic, copy_creds, tmp_path)) == 1
        assert len(snapshots(restic, primary, tmp_path)) == 3, "forget on the copy leaves the primary alone"


async def test_copy_without_the_copy_repository_says_what_to_set(tmp_path: Path, restic: Restic) -> None:
    rec = Recorder()
    primary = RepoCredentials(url=str(tmp_path / "primary"), password=PASSWORD)
    runner = make_runner(tmp_path, rec, restic, {CredentialSlot.repo: primary})
    _, res = await run_job(runner, rec, JobKind.copy, {"source_group": group(tmp_path, "docs")})
    assert res.state == JobState.failed and "PUT /hosts/{id}/repo/copy" in res.error, res
    _, res = await run_job(runner, rec, JobKind.check, {"repo": "copy"})
    assert res.state == JobState.failed and "PUT /hosts/{id}/repo/copy" in res.error, res


async def test_bandwidth_cap_slows_the_copy(tmp_path: Path, restic: Restic) -> None:
    """3 MiB of random data at 512 KiB/s takes about 6 s; uncapped it takes well under one."""
    rec = Recorder()
    primary = RepoCredentials(url=str(tmp_path / "primary"), password=PASSWORD)
    copy = RepoCredentials(url=str(tmp_path / "copy"), password=COPY_PASSWORD)
    runner = make_runner(tmp_path, rec, restic, {CredentialSlot.repo: primary, CredentialSlot.copy: copy})
    await run_job(runner, rec, JobKind.init)
    await run_job(runner, rec, JobKind.init, {"repo": "copy"})
    cheapen(tmp_path / "primary", PASSWORD)  # see tests/restic_keys.py
    cheapen(tmp_path / "copy", COPY_PASSWORD)
    src = tmp_path / "data"
    src.mkdir()
    (src / "blob").write_bytes(os.urandom(3 << 20))
    _, res = await run_job(runner, rec, JobKind.backup, {"source_group": group(src, "data")})
    assert res.state == JobState.succeeded, res
    t0 = time.monotonic()
    jid, res = await run_job(runner, rec, JobKind.copy, {"source_group": group(src, "data"), "limit_upload_kbps": 512})
    took = time.monotonic() - t0
    assert res.state == JobState.succeeded and res.summary["copied"] == 1, (res, rec.text(jid))
    assert took > 4, f"a 3 MiB copy capped at 512 KiB/s took {took:.1f} s"


async def test_a_copy_killed_part_way_is_finished_by_the_next(tmp_path: Path, restic: Restic) -> None:
    """SIGKILL to restic copy in the middle (no clean-up at all), then copy again: the snapshot
    arrives once, the copy repository checks clean, and no stale lock blocks a forget on it."""
    rec = Recorder()
    primary = RepoCredentials(url=str(tmp_path / "primary"), password=PASSWORD)
    copy = RepoCredentials(url=str(tmp_path / "copy"), password=COPY_PASSWORD)
    runner = make_runner(tmp_path, rec, restic, {CredentialSlot.repo: primary, CredentialSlot.copy: copy})
    await run_job(runner, rec, JobKind.init)
    await run_job(runner, rec, JobKind.init, {"repo": "copy"})
    cheapen(tmp_path / "primary", PASSWORD)  # see tests/restic_keys.py
    cheapen(tmp_path / "copy", COPY_PASSWORD)
    src = big_source(tmp_path / "big", 100)
    _, res = await run_job(runner, rec, JobKind.backup, {"source_group": group(src, "big")})
    assert res.state == JobState.succeeded, res

    job = Job(new_id(), JobKind.copy, {"source_group": group(src, "big"), "limit_upload_kbps": 8192},
              actor_kind=ActorKind.user)
    runner.submit(job)
    packs = tmp_path / "copy" / "data"
    await poll(lambda: job.pid is not None and packs.is_dir() and sum(1 for _ in packs.rglob("*") if _.is_file()) > 2,
               timeout=60, what="the copy wrote some packs")
    os.kill(job.pid, signal.SIGKILL)
    await runner.wait_idle()
    res = rec.results[job.job_id]
    assert res.state == JobState.failed, res
    assert snapshots(restic, copy, tmp_path) == [], "a killed copy leaves no snapshot"

    jid, res = await run_job(runner, rec, JobKind.copy, {"source_group": group(src, "big")})
    assert res.state == JobState.succeeded and res.summary["copied"] == 1, (res, rec.text(jid))
    (snap,) = snapshots(restic, copy, tmp_path)
    (orig,) = snapshots(restic, primary, tmp_path)
    assert snap["original"] == orig["id"]
    jid, res = await run_job(runner, rec, JobKind.check, {"repo": "copy"})
    assert res.state == JobState.succeeded and res.summary["no_errors"], (res, rec.text(jid))
    jid, res = await run_job(runner, rec, JobKind.forget, {"repo": "copy", "source_groups": [group(src, "big")]})
    assert res.state == JobState.succeeded, (res, rec.text(jid))
    # and the copy restores the source's bytes
    jid, res = await run_job(runner, rec, JobKind.drill, {"repo": "copy", "source_group": group(src, "big"),
                                                          "sample_files": 2, "sample_mb": 200})
    assert res.state == JobState.succeeded and res.summary["mismatches"] == 0, (res, rec.text(jid))
