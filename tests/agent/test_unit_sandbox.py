"""The packaged unit's sandbox, rebuilt with a real mount namespace (`unshare -m`): a
read-only bind mount where ProtectSystem=strict leaves the disk read-only, and a private
/tmp mounted from a `systemd-private-…-rm-agent.service-…/tmp` directory as PrivateTmp=yes
does. A real agent process runs inside, against the real server and real restic; each job
the sandbox would break fails before restic runs, naming the unit setting to change."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from rm_agent.config import AgentConfig, save_config
from tests.conftest import Server, wait_for
from tests.processes import Proc

from .conftest import PASSWORD
from .test_agent_server import host_state, job_done, make_group

BIN = Path(sys.executable).parent


def can_unshare() -> bool:
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(not can_unshare(), reason="needs `unshare -m` (root with CAP_SYS_ADMIN)")


@pytest.fixture
def work() -> Path:
    """Outside /tmp: the sandbox mounts its own /tmp over the real one."""
    path = Path("/var/tmp") / f"rm-sandbox-{uuid.uuid4().hex[:12]}"
    (path / "ro").mkdir(parents=True)
    (path / "rw").mkdir()
    (path / f"systemd-private-{uuid.uuid4().hex}-rm-agent.service-AbCdEf" / "tmp").mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def real_tmp_data() -> Path:
    """Data in the host's real /tmp, which the sandboxed agent cannot see."""
    path = Path("/tmp") / f"rm-sandbox-data-{uuid.uuid4().hex[:12]}"
    path.mkdir()
    (path / "report.txt").write_text("in the real /tmp\n")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def sandboxed_agent(work: Path, config: Path) -> Proc:
    private = next(work.glob("systemd-private-*/tmp"))
    q = shlex.quote
    script = f"mount --bind -o ro {q(str(work / 'ro'))} {q(str(work / 'ro'))} && "
    # A checkout (or its venv) under /tmp would vanish behind the private /tmp: keep the old
    # /tmp reachable and put the checkout back where it was, as a unit's ExecStart sees it.
    repo = Path(BIN).resolve().parents[1] if Path(BIN).is_relative_to("/tmp") else None
    if repo is not None:
        old = work / "old-tmp"
        old.mkdir(exist_ok=True)
        script += (f"mount --bind /tmp {q(str(old))} && mount --bind {q(str(private))} /tmp && "
                   f"mkdir -p {q(str(repo))} && mount --bind {q(str(old / repo.relative_to('/tmp')))} {q(str(repo))} && ")
    else:
        script += f"mount --bind {q(str(private))} /tmp && "
    script += f"exec {q(str(BIN / 'rm-agent'))} run --config {q(str(config))}"
    return Proc(["unshare", "-m", "--propagation", "private", "sh", "-c", script])


async def run_job(server: Server, host_id: str, body: dict) -> dict:
    status, job = await server.call("POST", f"/hosts/{host_id}/jobs", json=body)
    assert status == 202, job
    return await wait_for(lambda: job_done(server, job["id"]), 60, f"{body['kind']} to end")


async def set_repo(server: Server, host_id: str, url: str) -> dict:
    status, body = await server.call("PUT", f"/hosts/{host_id}/repo", json={"url": url, "password": PASSWORD})
    assert status == 200, body
    status, jobs = await server.call("GET", "/jobs", params={"host_id": host_id, "kind": "init", "limit": 1})
    return await wait_for(lambda: job_done(server, jobs["jobs"][0]["id"]), 60, "init to end")


async def test_sandboxed_paths_fail_naming_the_unit_setting(server: Server, work: Path, real_tmp_data: Path):
    host_id, token = await server.enroll("sandboxed")
    config = work / "rw" / "agent" / "agent.json"
    save_config(config, AgentConfig(server_url=server.url, host_id=host_id, agent_token=token))
    agent = sandboxed_agent(work, config)
    try:
        await wait_for(lambda: host_state(server, host_id, "online"), 30, "the sandboxed agent online")

        # A local repository where the unit lets the agent only read.
        blocked = work / "ro" / "repo"
        init = await set_repo(server, host_id, str(blocked))
        assert init["state"] == "failed", init
        assert init["error"] == (
            f"the repository {blocked} is on a file system that is read-only for rm-agent: its systemd unit lets it "
            f"write only to its ReadWritePaths (ProtectSystem=strict, ProtectHome=read-only). Allow it: mkdir -p "
            f"{blocked}, then `systemctl edit rm-agent`, adding under [Service]: ReadWritePaths={blocked} — then: "
            "systemctl restart rm-agent"), init
        assert not blocked.exists()

        # A repository under /tmp would live in the private /tmp, gone at the next restart.
        init = await set_repo(server, host_id, "/tmp/restic-repo")
        assert init["state"] == "failed" and "PrivateTmp=yes" in init["error"], init
        assert init["error"].startswith("the repository /tmp/restic-repo is under /tmp, which rm-agent's systemd "
                                        "unit replaces with a private, empty /tmp (PrivateTmp=yes): choose a "
                                        "directory outside /tmp and /var/tmp, or turn that off with"), init

        # Where it may write, everything works; a source under /tmp is refused, not "not found".
        init = await set_repo(server, host_id, str(work / "rw" / "repo"))
        assert init["state"] == "succeeded", init
        group = await make_group(server, host_id, real_tmp_data)
        backup = await run_job(server, host_id, {"kind": "backup", "source_group_id": group["id"]})
        assert backup["state"] == "failed", backup
        assert backup["error"].startswith(f"the source path {real_tmp_data} is under /tmp, which rm-agent's "
                                          "systemd unit replaces with a private, empty /tmp (PrivateTmp=yes): "
                                          "move the data elsewhere, or turn that off"), backup

        data = work / "rw" / "data"
        data.mkdir()
        (data / "a.txt").write_text("backed up\n")
        group = await make_group(server, host_id, data, name="data")
        backup = await run_job(server, host_id, {"kind": "backup", "source_group_id": group["id"]})
        assert backup["state"] == "succeeded", backup
        snap = backup["summary"]["snapshot_id"]

        # A restore into the private /tmp would land where nobody sees it; into a read-only place it fails late.
        for target, setting in (("/tmp/restored", "PrivateTmp=yes"), (str(work / "ro" / "restored"),
                                                                        f"ReadWritePaths={work / 'ro' / 'restored'}")):
            restore = await run_job(server, host_id, {"kind": "restore", "snapshot_id": snap,
                                                      "paths": [str(data)], "target": target})
            assert restore["state"] == "failed" and setting in restore["error"], restore
            assert restore["error"].startswith(f"the restore target {target} is "), restore
        restore = await run_job(server, host_id, {"kind": "restore", "snapshot_id": snap, "paths": [str(data)],
                                                  "target": str(work / "rw" / "restored")})
        assert restore["state"] == "succeeded", restore
        assert (work / "rw" / "restored" / str(data).lstrip("/") / "a.txt").read_text() == "backed up\n"
    finally:
        agent.stop()
