"""The runner against restic 0.14 (system) and 0.18 (Debian trixie), over both REST servers.

REST backends: `rclone serve restic --htpasswd` and restic's own `restic-rest-server
--htpasswd-file` (with `--private-repos`, and `--append-only` for the forget/prune rules).
restic 0.18 and restic-rest-server come from `scripts/test` (ensure_trixie_tools, which
exports RM_RESTIC_018 / RM_REST_SERVER); without them those cases skip, naming the binary.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest

from rm_agent.jobs import Job, JobResult, RunnerSettings
from rm_agent.runner import Runner
from rm_core import restic as R
from rm_core.enums import ActorKind, CredentialSlot, JobKind, JobState
from rm_core.ids import new_id
from rm_core.protocol import Bandwidth, RepoCredentials
from rm_core.urls import repository_url
from tests.processes import free_port
from tests.restic_keys import cheapen

from .conftest import PASSWORD, RESTIC, Recorder

_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "trixie" / "root" / "usr" / "bin"


def _tool(env: str, name: str) -> str | None:
    path = os.environ.get(env) or str(_CACHE / name)
    return path if os.access(path, os.X_OK) else None


RESTIC_018 = _tool("RM_RESTIC_018", "restic")
REST_SERVER = _tool("RM_REST_SERVER", "restic-rest-server")
RCLONE = shutil.which("rclone")
MISSING_018 = "restic 0.18 binary missing: RM_RESTIC_018 unset (scripts/test unpacks it from Debian trixie)"
MISSING_REST_SERVER = ("restic-rest-server binary missing: RM_REST_SERVER unset "
                       "(scripts/test unpacks it from Debian trixie)")


@dataclass
class Restic:
    binary: str
    version: tuple[int, int, int]

    @property
    def new(self) -> bool:  # exit codes 10/11/12 (0.17), check --json (0.18)
        return self.version >= (0, 18, 0)


@pytest.fixture(params=["0.14", "0.18"])
def restic(request) -> Restic:
    binary = RESTIC if request.param == "0.14" else RESTIC_018
    if binary is None:
        pytest.skip(MISSING_018)
    out = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=30).stdout
    version = R.parse_version(out)
    assert version is not None and version[:2] == tuple(int(p) for p in request.param.split(".")), out
    return Restic(binary, version)


# ------------------------------------------------------------------ REST servers

def _wait_accepting(proc: subprocess.Popen, port: int, timeout: float = 15) -> bool:
    """True once the port accepts connections; False if the server exited (port taken)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.02)  # polling a child process with a deadline
    raise AssertionError(f"REST server on port {port} did not accept connections within {timeout}s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stderr:
        proc.stderr.close()


def htpasswd(path: Path, users: dict[str, str]) -> Path:
    path.write_text("".join(f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
                            for u, p in users.items()))
    return path


def start_rest_server(data: Path, ht: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    if REST_SERVER is None:
        pytest.skip(MISSING_REST_SERVER)
    for _ in range(5):  # another worker may take the free port between probe and listen
        port = free_port()
        proc = subprocess.Popen([REST_SERVER, "--path", str(data), "--listen", f"127.0.0.1:{port}",
                                 "--htpasswd-file", str(ht), *flags],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if _wait_accepting(proc, port):
            return proc, f"http://127.0.0.1:{port}"
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        _stop(proc)
        if "address already in use" not in err:
            raise AssertionError(f"restic-rest-server failed to start: {err}")
    raise AssertionError("restic-rest-server: no free port after 5 attempts")


def start_rclone(data: Path, ht: Path) -> tuple[subprocess.Popen, str]:
    if RCLONE is None:
        pytest.skip("rclone binary missing (scripts/test installs it from Debian)")
    proc = subprocess.Popen([RCLONE, "serve", "restic", str(data), "--addr", "127.0.0.1:0", "--htpasswd", str(ht)],
                            env=dict(os.environ, RCLONE_CONFIG="/dev/null"), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr
    for line in proc.stderr:  # rclone prints its address once it listens
        if "Serving restic REST API on " in line:
            return proc, line.split("Serving restic REST API on ", 1)[1].strip().rstrip("/")
    _stop(proc)
    raise AssertionError("rclone serve restic exited before serving")


@dataclass
class Backend:
    name: str
    base: str  # http://127.0.0.1:PORT
    data: Path  # the server's data directory
    user: str
    password: str
    repo_path: str  # "backup/" (private repos: the user's own path)

    def creds(self, repo_path: str | None = None, *, password: str = PASSWORD,
              user: str | None = None, rest_password: str | None = None) -> RepoCredentials:
        return RepoCredentials(url=f"rest:{self.base}/{repo_path or self.repo_path}", password=password,
                               rest_user=user or self.user, rest_password=rest_password or self.password)

    def repo_dir(self) -> Path:
        return self.data / self.repo_path.strip("/")


@pytest.fixture(params=["rclone", "rest-server"])
def backend(request, tmp_path: Path) -> Iterator[Backend]:
    ht = htpasswd(tmp_path / "htpasswd", {"backup": "rest-secret-1"})
    data = tmp_path / "rest-data"
    data.mkdir()
    if request.param == "rclone":
        proc, base = start_rclone(data, ht)
    else:  # private repos: the user "backup" may only use /backup/
        proc, base = start_rest_server(data, ht, "--private-repos")
    try:
        yield Backend(request.param, base, data, "backup", "rest-secret-1", "backup/")
    finally:
        _stop(proc)


# ------------------------------------------------------------------ runner helpers

def make_runner(tmp_path: Path, rec: Recorder, restic: Restic, creds: dict[CredentialSlot, RepoCredentials],
                grace: float = 30.0) -> Runner:
    settings = RunnerSettings(restic_binary=restic.binary, tmp_dir=tmp_path / "agent-tmp",
                              cancel_grace=grace, cache_dir=str(tmp_path / "cache"))
    return Runner(settings, rec, lambda slot: creds.get(slot), lambda: Bandwidth())


async def run_job(runner: Runner, rec: Recorder, kind: JobKind, params: dict | None = None) -> tuple[str, JobResult]:
    job = Job(new_id(), kind, params or {}, actor_kind=ActorKind.user)
    runner.submit(job)
    await runner.wait_idle()
    return job.job_id, rec.results[job.job_id]


def group(src: Path, tag: str = "docs") -> dict:
    return {"id": "g-" + tag, "name": tag, "includes": [str(src)], "excludes": [], "tag": tag,
            "retention": {"keep_last": 1}}


def make_source(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "sub" / "b.bin").write_bytes(os.urandom(64 << 10))
    return root


def restic_env(creds: RepoCredentials, tmp: Path) -> dict[str, str]:
    pw = tmp / f"pw-{time.monotonic_ns()}"
    pw.write_text(creds.password)
    pw.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
    env.update(RESTIC_REPOSITORY=repository_url(creds.url, creds.rest_user, creds.rest_password),
               RESTIC_PASSWORD_FILE=str(pw), RESTIC_CACHE_DIR=str(tmp / "test-cache"))
    return env


def snapshot_files(repo_dir: Path) -> list[str]:
    return sorted(os.listdir(repo_dir / "snapshots")) if (repo_dir / "snapshots").is_dir() else []


def lock_files(repo_dir: Path) -> list[str]:
    return sorted(os.listdir(repo_dir / "locks")) if (repo_dir / "locks").is_dir() else []


async def poll(cond, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what}: not met before the deadline"
        await asyncio.sleep(0.05)  # polling a real external process / file with a deadline


# ------------------------------------------------------------------ tests

async def test_lifecycle_errors_and_restore(tmp_path: Path, restic: Restic, backend: Backend) -> None:
    rec = Recorder()
    creds = backend.creds()
    runner = make_runner(tmp_path, rec, restic, {CredentialSlot.repo: creds})

    # init, and init again = already initialised (text on both versions)
    _, res = await run_job(runner, rec, JobKind.init)
    assert res.state == JobState.succeeded and res.summary == {"already_initialised": False}, res
    assert (backend.repo_dir() / "config").is_file()
    _, res = await run_job(runner, rec, JobKind.init)
    assert res.state == JobState.succeeded and res.summary == {"already_initialised": True}, res

    # backup -> snapshot id: 8 hex chars on 0.14, the full id on 0.18
    src = make_source(tmp_path / "src")
    jid, res = await run_job(runner, rec, JobKind.backup, {"source_group": group(src)})
    assert res.state == JobState.succeeded and res.exit_code == 0, (res, rec.text(jid))
    snap = res.summary["snapshot_id"]
    assert len(snap) == (64 if restic.new else 8) and all(c in "0123456789abcdef" for c in snap), snap
    assert snapshot_files(backend.repo_dir())[0].startswith(snap)
    assert f"snapshot {snap[:8]} saved" in rec.text(jid)
    snaps = [p for t, p in rec.reports if t == "snapshots.report"][-1]["snapshots"]
    assert len(snaps) == 1 and snaps[0]["id"].startswith(snap) and snaps[0]["tags"] == ["docs"]
    assert "rest-secret-1" not in rec.text(jid) and PASSWORD not in rec.text(jid)

    # check: JSON summary on 0.18, text on 0.14
    jid, res = await run_job(runner, rec, JobKind.check)
    assert res.state == JobState.succeeded and res.summary["no_errors"] is True, (res, rec.text(jid))
    if restic.new:
        assert "check finished: 0 errors" in rec.text(jid)
    else:
        assert "no errors were found" in rec.text(jid)

    # restore -> identical bytes
    target = tmp_path / "restored"
    _, res = await run_job(runner, rec, JobKind.restore, {"snapshot_id": snap, "paths": [], "target": str(target)})
    assert res.state == JobState.succeeded, res
    back = target / str(src).lstrip("/")
    assert (back / "sub" / "b.bin").read_bytes() == (src / "sub" / "b.bin").read_bytes()
    assert (back / "a.txt").read_text() == "alpha\n"

    # wrong password / missing repository: exit 12 / 10 on 0.18, exit 1 + stderr text on 0.14
    bad = make_runner(tmp_path, rec, restic, {CredentialSlot.repo: backend.creds(password="not it")})
    _, res = await run_job(bad, rec, JobKind.snapshots)
    assert res.state == JobState.failed and "wrong repository password" in res.error, res
    assert res.exit_code == (12 if restic.new else 1)
    missing = make_runner(tmp_path, rec, restic, {CredentialSlot.repo: backend.creds("backup/nothing/")})
    _, res = await run_job(missing, rec, JobKind.check)
    assert res.state == JobState.failed and R.ADVICE_INIT in res.error, res
    assert res.exit_code == (10 if restic.new else 1)

    # locked: a live restic (backup --stdin waiting on a pipe) holds the lock
    holder = subprocess.Popen([restic.binary, "backup", "--stdin"], env=restic_env(creds, tmp_path),
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await poll(lambda: lock_files(backend.repo_dir()), what="the holder took its lock")
        _, res = await run_job(runner, rec, JobKind.check)
        assert res.state == JobState.failed and "locked" in res.error, res
        assert res.exit_code == (11 if restic.new else 1)
    finally:  # SIGINT, then EOF: restic 0.18 notices the interrupt only once its read returns
        holder.send_signal(signal.SIGINT)
        assert holder.stdin
        holder.stdin.close()
        holder.wait(30)
    assert lock_files(backend.repo_dir()) == []


async def test_cancel_leaves_no_lock(tmp_path: Path, restic: Restic, backend: Backend) -> None:
    """SIGINT is enough (no SIGKILL after the grace, no stale lock for `unlock` to remove).

    restic >= 0.17 finishes an upload in flight before it exits on SIGINT (and rate-limited
    uploads are slow), so the backup is limited to 2 MiB/s and at most a few MiB are in flight."""
    rec = Recorder()
    creds = backend.creds()
    env = restic_env(creds, tmp_path)
    subprocess.run([restic.binary, "init"], env=env, stdin=subprocess.DEVNULL, capture_output=True, check=True,
                   timeout=60)
    src = tmp_path / "slow"
    src.mkdir()
    for i in range(4):
        (src / f"d{i}").write_bytes(os.urandom(2 << 20))
    runner = make_runner(tmp_path, rec, restic, {CredentialSlot.repo: creds}, grace=20)
    job = Job(new_id(), JobKind.backup, {"source_group": group(src), "limit_upload_kbps": 2048})
    runner.submit(job)
    await rec.wait_for(lambda: job.pid is not None and job.job_id in rec.progress_, timeout=30)
    await poll(lambda: lock_files(backend.repo_dir()), what="restic took its lock")
    t0 = time.monotonic()
    assert runner.cancel(job.job_id)
    await runner.wait_idle()
    res = rec.results[job.job_id]
    assert res.state == JobState.cancelled, (res, rec.text(job.job_id))
    assert time.monotonic() - t0 < 15, "restic did not stop on SIGINT"
    if restic.new:  # 0.18 removes its own lock; 0.14 may leave it and the agent's unlock removes it
        assert "stale lock" not in rec.text(job.job_id)
    assert lock_files(backend.repo_dir()) == []
    assert snapshot_files(backend.repo_dir()) == []


async def test_append_only_forget_and_prune_need_admin_credentials(tmp_path: Path, restic: Restic) -> None:
    """restic-rest-server --append-only for the backup credentials, and a second server on the
    same data (no --append-only) for the admin credentials.

    Without admin credentials forget must fail: restic 0.18 exits 0 although it could not
    delete (the agent reads the "unable to remove" line). That case runs on 0.18 only: 0.14
    retries the refused delete for ~45 s before it fails (its message is covered in
    tests/unit/test_restic_helpers.py)."""
    ht = htpasswd(tmp_path / "htpasswd", {"backup": "rest-secret-1", "admin": "admin-secret-2"})
    data = tmp_path / "rest-data"
    data.mkdir()
    ao_proc, ao_base = start_rest_server(data, ht, "--append-only")
    try:
        full_proc, full_base = start_rest_server(data, ht)
        try:
            repo = Backend("append-only", ao_base, data, "backup", "rest-secret-1", "repo/")
            admin = Backend("full", full_base, data, "admin", "admin-secret-2", "repo/").creds()
            rec = Recorder()
            only_repo = make_runner(tmp_path, rec, restic, {CredentialSlot.repo: repo.creds()})
            _, res = await run_job(only_repo, rec, JobKind.init)
            assert res.state == JobState.succeeded, res
            cheapen(repo.repo_dir(), PASSWORD)  # the init above is restic's own; a dozen opens follow
            src = make_source(tmp_path / "src")
            for _ in range(2):
                _, res = await run_job(only_repo, rec, JobKind.backup, {"source_group": group(src)})
                assert res.state == JobState.succeeded, res
            assert len(snapshot_files(repo.repo_dir())) == 2

            _, res = await run_job(only_repo, rec, JobKind.prune)
            assert res.state == JobState.failed and "admin credentials" in res.error, res
            if restic.new:
                jid, res = await run_job(only_repo, rec, JobKind.forget, {"source_groups": [group(src)]})
                assert res.state == JobState.failed, (res, rec.text(jid))
                assert "append-only" in res.error and "admin credentials" in res.error, res
                assert "rest-secret-1" not in res.error and len(snapshot_files(repo.repo_dir())) == 2

            both = make_runner(tmp_path, rec, restic, {CredentialSlot.repo: repo.creds(), CredentialSlot.admin: admin})
            jid, res = await run_job(both, rec, JobKind.forget, {"source_groups": [group(src)]})
            assert res.state == JobState.succeeded, (res, rec.text(jid))
            assert res.summary["groups"]["docs"]["remove"] == 1
            assert len(snapshot_files(repo.repo_dir())) == 1
            jid, res = await run_job(both, rec, JobKind.prune)
            assert res.state == JobState.succeeded, (res, rec.text(jid))
            assert "admin-secret-2" not in rec.text(jid)
        finally:
            _stop(full_proc)
    finally:
        _stop(ao_proc)
