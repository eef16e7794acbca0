"""Browse, diff and retention preview through the REST API: real server, real agent, real
restic (0.14 and 0.18). The restic-version x REST-backend matrix of the agent's side is in
test_queries.py; here the whole path server -> agent -> restic -> server -> operator."""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest

from rm_agent.agent import Agent
from rm_agent.config import AgentConfig, load_config, save_config
from rm_core import restic as R
from tests.conftest import Server, wait_for
from tests.restic_keys import cheapen

from .conftest import PASSWORD, restic_env
from .test_agent_server import AgentClock, Running, host_state
from .test_restic_versions import Restic, restic  # noqa: F401 (fixture)

__all__ = ["restic"]


async def start_agent(server: Server, tmp_path: Path, repo: Path, restic: Restic) -> tuple[str, Running]:
    host_id, token = await server.enroll("browse-host")
    status, body = await server.call("PUT", f"/hosts/{host_id}/repo", json={"url": str(repo), "password": PASSWORD})
    assert status == 200, body
    cfg_path = tmp_path / "agent" / "agent.json"
    save_config(cfg_path, AgentConfig(server_url=server.url, host_id=host_id, agent_token=token,
                                      restic_binary=restic.binary))
    agent = Agent(load_config(cfg_path), cfg_path, clock=AgentClock(), hostname="browse-host")
    agent.first_connect_grace = 0.5
    run = Running(agent)
    await wait_for(lambda: run.task.done() or host_state(server, host_id, "online"), 15, "host online")
    assert not run.task.done()
    return host_id, run


def cli(restic: Restic, repo: Path, tmp: Path, *args: str) -> str:
    return subprocess.run([restic.binary, *args], env=restic_env(str(repo), PASSWORD, tmp), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, check=True, timeout=120).stdout


@pytest.fixture
def two_snapshots(tmp_path: Path, restic: Restic) -> tuple[Path, Path, str, str]:
    repo, src = tmp_path / "repo", tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    for i in range(12):
        (src / "etc" / f"conf{i:02d}").write_text(f"value {i}\n")
    (src / "top.txt").write_text("top\n")
    cli(restic, repo, tmp_path, "init")
    cheapen(repo, PASSWORD)  # opened a dozen times below; init is not what this tests
    cli(restic, repo, tmp_path, "backup", "--tag", "docs", str(src))
    (src / "top.txt").write_text("changed\n")
    (src / "etc" / "conf00").unlink()
    cli(restic, repo, tmp_path, "backup", "--tag", "docs", str(src))
    first, second = (s["id"] for s in R.parse_snapshots(cli(restic, repo, tmp_path, "snapshots", "--json")))
    return repo, src, first, second


async def test_browse_diff_and_preview_through_the_server(server: Server, tmp_path: Path, restic: Restic,
                                                          two_snapshots) -> None:
    repo, src, first, second = two_snapshots
    host_id, run = await start_agent(server, tmp_path, repo, restic)
    try:
        etc = quote(str(src / "etc"))
        # a viewer may browse; pages of 5 by name, then the rest
        status, page = await server.call("GET", f"/hosts/{host_id}/snapshots/{first}/ls?path={etc}&limit=5",
                                         role="viewer")
        assert status == 200, page
        assert page["path"] == str(src / "etc") and page["truncated"] is True
        assert [e["name"] for e in page["entries"]] == [f"conf{i:02d}" for i in range(5)]
        entry = page["entries"][0]
        assert set(entry) >= {"name", "type", "size", "mtime", "mode"}
        assert entry["type"] == "file" and entry["size"] == len("value 0\n") and entry["mode"] == 0o100644
        names = [e["name"] for e in page["entries"]]
        while page["truncated"]:
            status, page = await server.call(
                "GET", f"/hosts/{host_id}/snapshots/{first}/ls?path={etc}&limit=5&after={quote(names[-1])}",
                role="viewer")
            assert status == 200, page
            names += [e["name"] for e in page["entries"]]
        assert names == [f"conf{i:02d}" for i in range(12)]
        status, page = await server.call("GET", f"/hosts/{host_id}/snapshots/{second[:8]}/ls?path={quote(str(src))}")
        assert status == 200 and {e["name"]: e["type"] for e in page["entries"]} == {"etc": "dir", "top.txt": "file"}

        # errors an operator can act on
        status, body = await server.call("GET", f"/hosts/{host_id}/snapshots/abcdef0123/ls?path=/")
        assert status == 404 and body["error"]["code"] == "snapshot_not_found", body
        status, body = await server.call("GET", f"/hosts/{host_id}/snapshots/{first}/ls?path={etc}/nope")
        assert status == 404 and body["error"]["code"] == "path_not_found", body
        status, body = await server.call("GET", f"/hosts/{host_id}/snapshots/{first}/ls?path={quote(str(src / 'top.txt'))}")
        assert status == 400 and body["error"]["code"] == "not_a_directory", body

        # diff between the two snapshots, as a viewer
        status, diff = await server.call("GET", f"/hosts/{host_id}/snapshots/diff?from={first}&to={second}",
                                         role="viewer")
        assert status == 200, diff
        changes = {c["path"]: c["change"] for c in diff["changes"]}
        assert changes == {str(src / "top.txt"): "modified", str(src / "etc" / "conf00"): "removed"}, changes
        assert diff["truncated"] is False and diff["total_changes"] == 2
        assert diff["summary"]["changed_files"] == 1 and diff["counts"] == {"modified": 1, "removed": 1}
        status, diff = await server.call("GET", f"/hosts/{host_id}/snapshots/diff?from={first}&to={second}&limit=1")
        assert status == 200 and len(diff["changes"]) == 1 and diff["truncated"] is True, diff

        # retention preview of the group's policy and of a stricter one; nothing is removed
        status, group = await server.call("POST", f"/hosts/{host_id}/source-groups", json={
            "name": "docs", "includes": [str(src)], "tag": "docs", "retention": {"keep_last": 5}})
        assert status == 201, group
        path = f"/hosts/{host_id}/source-groups/{group['id']}/retention-preview"
        status, prev = await server.call("POST", path, role="viewer")
        assert status == 200 and prev["keep_count"] == 2 and prev["remove_count"] == 0, prev
        status, prev = await server.call("POST", path, json={"retention": {"keep_last": 1}})
        assert status == 200, prev
        assert [s["id"] for s in prev["remove"]] == [first] and [s["id"] for s in prev["keep"]] == [second]
        assert prev["retention"]["keep_last"] == 1 and prev["tag"] == "docs"
        status, body = await server.call("POST", path, json={"retention": {}})
        assert status == 400 and body["error"]["code"] == "empty_retention", body
        assert len(R.parse_snapshots(cli(restic, repo, tmp_path, "snapshots", "--json"))) == 2

        # the agent gone: the same request answers 409 host_offline at once
        await run.close()
        await wait_for(lambda: host_state(server, host_id, "offline"), 10, "host offline")
        status, body = await server.call("GET", f"/hosts/{host_id}/snapshots/{first}/ls?path=/")
        assert status == 409 and body["error"]["code"] == "host_offline", body
    finally:
        if not run.task.done():
            await run.close()
