"""The rotate_key phases against real restic 0.14 and 0.18, local and restic-rest-server
--append-only (the old key removed with the admin credentials): each phase proves what it
does, runs again harmlessly after a kill, and never removes the key the agent's own password
opens."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rm_core.enums import CredentialSlot, JobKind, JobState
from rm_core.protocol import RepoCredentials
from rm_core.restic_keys import current_key, parse_keys, same_key

from tests.restic_keys import cheapen

from .conftest import PASSWORD, Recorder
from .test_restic_versions import (  # noqa: F401  (the restic fixture)
    Restic, _stop, htpasswd, make_runner, restic, restic_env, run_job, start_rest_server,
)

NEW = "the new password, made by the server"


def keys(restic: Restic, creds: RepoCredentials, tmp: Path) -> list[dict] | None:
    res = subprocess.run([restic.binary, "key", "list", "--json"], env=restic_env(creds, tmp), capture_output=True,
                         text=True, timeout=120, stdin=subprocess.DEVNULL)
    return parse_keys(res.stdout) if res.returncode == 0 else None


def init(restic: Restic, creds: RepoCredentials, tmp: Path, repo_dir: Path | None = None) -> None:
    """restic's own init, then its first key made cheap to open (tests/restic_keys.py): the
    keys the rotation adds are restic's own, calibrated as for any user."""
    subprocess.run([restic.binary, "init"], env=restic_env(creds, tmp), capture_output=True, check=True, timeout=120,
                   stdin=subprocess.DEVNULL)
    cheapen(repo_dir or Path(creds.url), creds.password)


async def test_add_remove_and_their_reruns(tmp_path: Path, restic: Restic) -> None:
    old = RepoCredentials(url=str(tmp_path / "repo"), password=PASSWORD)
    new = old.model_copy(update={"password": NEW})
    init(restic, old, tmp_path)
    (before,) = keys(restic, old, tmp_path)
    rec = Recorder()
    runner = make_runner(tmp_path, rec, restic, {CredentialSlot.repo: old})

    jid, res = await run_job(runner, rec, JobKind.rotate_key, {"phase": "add", "rotation_id": "r1",
                                                                "new_password": NEW})
    assert res.state == JobState.succeeded and res.summary["verified"] is True, (res, rec.text(jid))
    assert same_key(res.summary["old_key_id"], before["id"])
    listed = keys(restic, new, tmp_path)
    assert listed is not None and len(listed) == 2 and same_key(current_key(listed)["id"], res.summary["new_key_id"])
    assert NEW not in rec.text(jid) and NEW not in str(res) and PASSWORD not in rec.text(jid)
    first = res.summary

    # killed after the add, run again: the new password opens already, no third key
    jid, res = await run_job(runner, rec, JobKind.rotate_key, {"phase": "add", "new_password": NEW})
    assert res.state == JobState.succeeded and res.summary == first, (res, rec.text(jid))
    assert "opens the repository already" in rec.text(jid)
    assert len(keys(restic, new, tmp_path)) == 2
    assert "wrong password" not in rec.text(jid).lower()

    remove = {"phase": "remove", "old_key_id": first["old_key_id"], "new_key_id": first["new_key_id"]}
    # an agent still on the old password removes nothing
    jid, res = await run_job(runner, rec, JobKind.rotate_key, remove)
    assert res.state == JobState.failed and "left in place" in res.error, (res, rec.text(jid))
    assert len(keys(restic, new, tmp_path)) == 2

    # the agent got the new password (config.update): the old key goes
    runner = make_runner(tmp_path, rec, restic, {CredentialSlot.repo: new})
    jid, res = await run_job(runner, rec, JobKind.rotate_key, remove)
    assert res.state == JobState.succeeded and res.summary["keys"] == 1, (res, rec.text(jid))
    assert keys(restic, old, tmp_path) is None, "the old password opens nothing any more"
    assert len(keys(restic, new, tmp_path)) == 1
    jid, res = await run_job(runner, rec, JobKind.rotate_key, remove)  # killed after it, run again
    assert res.state == JobState.succeeded and res.summary["already_removed"] is True, (res, rec.text(jid))
    jid, res = await run_job(runner, rec, JobKind.snapshots)
    assert res.state == JobState.succeeded, "the agent opens its repository with the new key"


async def test_rollback_removes_only_the_abandoned_key(tmp_path: Path, restic: Restic) -> None:
    old = RepoCredentials(url=str(tmp_path / "repo"), password=PASSWORD)
    init(restic, old, tmp_path)
    rec = Recorder()
    runner = make_runner(tmp_path, rec, restic, {CredentialSlot.repo: old})
    jid, res = await run_job(runner, rec, JobKind.rotate_key, {"phase": "rollback", "new_password": NEW})
    assert res.state == JobState.succeeded and res.summary["removed_key_id"] is None, (res, rec.text(jid))
    await run_job(runner, rec, JobKind.rotate_key, {"phase": "add", "new_password": NEW})
    assert len(keys(restic, old, tmp_path)) == 2
    jid, res = await run_job(runner, rec, JobKind.rotate_key, {"phase": "rollback", "new_password": NEW})
    assert res.state == JobState.succeeded and res.summary["removed_key_id"], (res, rec.text(jid))
    assert len(keys(restic, old, tmp_path)) == 1
    assert keys(restic, old.model_copy(update={"password": NEW}), tmp_path) is None
    # a rollback never removes the key the agent uses (the "abandoned" password is its own)
    jid, res = await run_job(runner, rec, JobKind.rotate_key, {"phase": "rollback", "new_password": PASSWORD})
    assert res.state == JobState.failed and "left in place" in res.error, (res, rec.text(jid))
    assert len(keys(restic, old, tmp_path)) == 1


async def test_append_only_repository_removes_the_old_key_with_admin_credentials(tmp_path: Path,
                                                                                 restic: Restic) -> None:
    ht = htpasswd(tmp_path / "htpasswd", {"backup": "rest-secret-1", "admin": "admin-secret-2"})
    data = tmp_path / "rest-data"
    data.mkdir()
    ao_proc, ao_base = start_rest_server(data, ht, "--append-only")
    full_proc, full_base = start_rest_server(data, ht)
    try:
        repo = RepoCredentials(url=f"rest:{ao_base}/repo/", password=PASSWORD, rest_user="backup",
                               rest_password="rest-secret-1")
        admin = RepoCredentials(slot=CredentialSlot.admin, url=f"rest:{full_base}/repo/", password=PASSWORD,
                                rest_user="admin", rest_password="admin-secret-2")
        init(restic, repo, tmp_path, data / "repo")
        rec = Recorder()
        runner = make_runner(tmp_path, rec, restic, {CredentialSlot.repo: repo, CredentialSlot.admin: admin})
        jid, res = await run_job(runner, rec, JobKind.rotate_key, {"phase": "add", "new_password": NEW})
        assert res.state == JobState.succeeded, (res, rec.text(jid))
        ids = res.summary
        new_repo = repo.model_copy(update={"password": NEW})
        new_admin = admin.model_copy(update={"password": NEW})
        remove = {"phase": "remove", "old_key_id": ids["old_key_id"], "new_key_id": ids["new_key_id"]}
        if restic.new:  # without the admin credentials the append-only server refuses the delete
            plain = make_runner(tmp_path, rec, restic, {CredentialSlot.repo: new_repo})
            jid, res = await run_job(plain, rec, JobKind.rotate_key, remove)
            assert res.state == JobState.failed, (res, rec.text(jid))
            assert len(keys(restic, new_repo, tmp_path)) == 2
        both = make_runner(tmp_path, rec, restic, {CredentialSlot.repo: new_repo, CredentialSlot.admin: new_admin})
        jid, res = await run_job(both, rec, JobKind.rotate_key, {**remove, "admin": True})
        assert res.state == JobState.succeeded and res.summary["keys"] == 1, (res, rec.text(jid))
        assert keys(restic, repo, tmp_path) is None and len(keys(restic, new_repo, tmp_path)) == 1
        for secret in ("rest-secret-1", "admin-secret-2", NEW, PASSWORD):
            assert secret not in rec.text(jid)
    finally:
        _stop(full_proc)
        _stop(ao_proc)


@pytest.mark.parametrize("params,field", [({"phase": "spin"}, "phase"), ({"phase": "add"}, "new password"),
                                          ({"phase": "remove", "old_key_id": "zz"}, "old_key_id")])
async def test_bad_phase_parameters_fail_the_job_with_a_message(tmp_path: Path, restic: Restic, params, field):
    old = RepoCredentials(url=str(tmp_path / "repo"), password=PASSWORD)
    init(restic, old, tmp_path)
    rec = Recorder()
    runner = make_runner(tmp_path, rec, restic, {CredentialSlot.repo: old})
    _, res = await run_job(runner, rec, JobKind.rotate_key, params)
    assert res.state == JobState.failed and field in res.error, res
    assert len(keys(restic, old, tmp_path)) == 1
