"""What a job reports when restic cannot do what it was asked: real restic runs (items 15, 17)."""

from __future__ import annotations

import socket
from pathlib import Path

from rm_core.enums import CredentialSlot, JobKind, JobState
from tests.agent.conftest import Recorder, creds_for
from tests.agent.test_runner import group, make_runner, run_job


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the with ends: nothing listens there


async def test_unreachable_rest_server_is_not_reported_as_missing_repository(tmp_path: Path, recorder: Recorder) -> None:
    url = f"rest:http://backup:s3cret-rest@127.0.0.1:{closed_port()}/repo/"
    runner = make_runner(tmp_path, recorder, {CredentialSlot.repo: creds_for(url)})
    _, res = await run_job(runner, recorder, JobKind.check)
    assert res.state == JobState.failed
    assert "unreachable" in res.error and "connection refused" in res.error, res.error
    assert "init" not in res.error and "s3cret-rest" not in res.error


async def test_backup_with_a_missing_source_path_is_a_warning_naming_it(
        tmp_path: Path, recorder: Recorder, repo: Path, source: Path) -> None:
    missing = tmp_path / "gone" / "data"
    runner = make_runner(tmp_path, recorder, {CredentialSlot.repo: creds_for(repo)})
    spec = group(source)
    spec["includes"] = [str(source), str(missing)]
    jid, res = await run_job(runner, recorder, JobKind.backup, {"source_group": spec})
    assert res.state == JobState.warning, (res, recorder.text(jid))
    assert str(missing) in res.error and "not found" in res.error
    assert res.summary and res.summary["snapshot_id"]  # what exists was still backed up


async def test_backup_whose_paths_are_all_missing_fails_and_so_never_counts_as_fresh(
        tmp_path: Path, recorder: Recorder, repo: Path) -> None:
    """Stale detection counts succeeded and warning backups only: a group whose paths are
    all gone must fail, so it turns the host stale instead of looking backed up."""
    runner = make_runner(tmp_path, recorder, {CredentialSlot.repo: creds_for(repo)})
    spec = group(tmp_path / "nothing")
    spec["includes"] = [str(tmp_path / "nothing"), str(tmp_path / "neither")]
    jid, res = await run_job(runner, recorder, JobKind.backup, {"source_group": spec})
    assert res.state == JobState.failed, (res, recorder.text(jid))
    assert "not exist" in res.error or "not found" in res.error, res.error
