"""Key rotation end to end in one process: the real agent, the real server, real restic;
the primary and the copy repository rotated, each left with one key the agent holds."""

from __future__ import annotations

import json
from pathlib import Path

from rm_core.enums import CredentialSlot
from tests.conftest import Server, wait_for

from .conftest import PASSWORD, restic_cli
from .test_agent_server import enrolled_agent

COPY_PASSWORD = "copy repository password"


async def _done(server: Server, host_id: str, repo: str) -> dict | None:
    status, rot = await server.call("GET", f"/hosts/{host_id}/repo/rotate-key?repo={repo}", role="viewer")
    return rot if status == 200 and rot["state"] in ("done", "rolled_back") else None


def _opens(repo: Path, tmp: Path, password: str) -> int | None:
    res = restic_cli(str(repo), tmp, "key", "list", "--json", password=password, check=False)
    return len(json.loads(res.stdout)) if res.returncode == 0 else None


async def test_primary_and_copy_keys_rotate(server: Server, tmp_path: Path, repo: Path) -> None:
    host_id, run = await enrolled_agent(server, tmp_path, repo)
    copy_repo = tmp_path / "copy"
    try:
        status, _ = await server.call("PUT", f"/hosts/{host_id}/repo/copy",
                                      json={"url": str(copy_repo), "password": COPY_PASSWORD})
        assert status == 200
        await wait_for(lambda: (copy_repo / "config").is_file(), 60, "copy initialised")
        for repo_name, path, old in (("primary", repo, PASSWORD), ("copy", copy_repo, COPY_PASSWORD)):
            status, body = await server.call("POST", f"/hosts/{host_id}/repo/rotate-key", json={"repo": repo_name})
            assert status == 202, body
            rot = await wait_for(lambda n=repo_name: _done(server, host_id, n), 90, f"{repo_name} rotation")
            assert rot["state"] == "done" and rot["id"] == body["id"], rot
            slot = CredentialSlot.copy if repo_name == "copy" else CredentialSlot.repo
            new = run.agent.creds[slot.value].password
            assert new and new != old
            assert _opens(path, tmp_path, new) == 1, f"{repo_name}: one key, the agent's"
            assert _opens(path, tmp_path, old) is None, f"{repo_name}: the old password opens nothing"
        # the other repository's password is untouched by a rotation of this one
        assert run.agent.creds["copy"].password != run.agent.creds["repo"].password
        status, body = await server.call("POST", f"/hosts/{host_id}/jobs", json={"kind": "check", "repo": "copy"})
        status, job = await wait_for(lambda: _job_end(server, body["id"]), 60, "check of the copy")
        assert job["state"] == "succeeded", job
    finally:
        await run.close()


async def _job_end(server: Server, job_id: str):
    status, job = await server.call("GET", f"/jobs/{job_id}")
    return (status, job) if job["state"] in ("succeeded", "warning", "failed", "cancelled", "lost") else None
