"""Restore of marked paths with --verify, cross-host restore, and restore drills: real server,
real agents, real restic (0.14 and 0.18)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import quote

from rm_agent.agent import Agent
from rm_agent.config import AgentConfig, load_config, save_config
from rm_agent.secrets import SecretStore
from tests.conftest import Server, set_webhook, wait_for

from .test_agent_server import AgentClock, Running, all_logs, host_state, job_done
from .test_restic_versions import Restic, restic  # noqa: F401 (fixture)

__all__ = ["restic"]

PW_A = "alpha-host-repo-secret-7781"
PW_B = "bravo-host-repo-secret-4410"


async def start_agent(server: Server, tmp_path: Path, name: str, repo: Path, password: str,
                      restic: Restic) -> tuple[str, Running, Path]:
    host_id, token = await server.enroll(name)
    status, body = await server.call("PUT", f"/hosts/{host_id}/repo", json={"url": str(repo), "password": password})
    assert status == 200, body
    cfg_path = tmp_path / name / "agent.json"
    save_config(cfg_path, AgentConfig(server_url=server.url, host_id=host_id, agent_token=token,
                                      restic_binary=restic.binary))
    agent = Agent(load_config(cfg_path), cfg_path, clock=AgentClock(), hostname=name)
    agent.first_connect_grace = 0.5
    run = Running(agent)
    await wait_for(lambda: run.task.done() or host_state(server, host_id, "online"), 15, f"{name} online")
    assert not run.task.done()
    # the server initialises a fresh repository on first connect
    await wait_for(lambda: init_done(server, host_id), 60, f"{name} repository initialised")
    return host_id, run, cfg_path.parent


async def init_done(server: Server, host_id: str) -> bool:
    _, body = await server.call("GET", f"/jobs?host_id={host_id}&kind=init")
    return any(j["state"] == "succeeded" for j in body["jobs"])


async def backup(server: Server, host_id: str, src: Path, name: str = "docs") -> tuple[dict, str]:
    status, group = await server.call("POST", f"/hosts/{host_id}/source-groups",
                                      json={"name": name, "includes": [str(src)], "tag": name,
                                            "retention": {"keep_last": 3}})
    assert status == 201, group
    status, body = await server.call("POST", f"/hosts/{host_id}/source-groups/{group['id']}/run")
    assert status == 202, body
    job = await wait_for(lambda: job_done(server, body["id"]), 60, "backup finished")
    assert job["state"] == "succeeded", job
    return group, job["summary"]["snapshot_id"]


def make_source(root: Path) -> Path:
    (root / "etc" / "we[ir]d*dir").mkdir(parents=True)
    (root / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    (root / "etc" / "we[ir]d*dir" / "f?.txt").write_text("odd name\n")
    (root / "var").mkdir()
    for i in range(30):
        (root / "var" / f"log{i:02d}").write_bytes(os.urandom(1000 + i))
    return root


async def test_restore_marked_paths_with_verify(server: Server, tmp_path: Path, restic: Restic) -> None:
    host_id, run, _ = await start_agent(server, tmp_path, "web-1", tmp_path / "repo", PW_B, restic)
    try:
        src = make_source(tmp_path / "src")
        _, snap = await backup(server, host_id, src)
        target = tmp_path / "restore-target"
        marked = [str(src / "etc" / "we[ir]d*dir"), str(src / "var" / "log07")]
        status, body = await server.call("POST", f"/hosts/{host_id}/jobs", json={
            "kind": "restore", "snapshot_id": snap, "paths": marked, "target": str(target), "verify": True})
        assert status == 202, body
        job = await wait_for(lambda: job_done(server, body["id"]), 60, "restore finished")
        assert job["state"] == "succeeded", job
        assert job["summary"]["verify"] is True and job["summary"]["verified_files"] == 2, job["summary"]
        back = target / str(src).lstrip("/")
        assert (back / "etc" / "we[ir]d*dir" / "f?.txt").read_text() == "odd name\n"
        assert (back / "var" / "log07").read_bytes() == (src / "var" / "log07").read_bytes()
        assert not (back / "etc" / "hosts").exists() and not (back / "var" / "log08").exists(), "only marked paths"
        assert any("verifying" in ln["text"] for ln in await all_logs(server, job["id"]))
        # bad restore bodies are refused before anything runs
        for bad, field in [({"paths": ["relative"]}, "paths"), ({"target": "tmp"}, "target"),
                           ({"snapshot_id": "nothex"}, "snapshot_id")]:
            req = {"kind": "restore", "snapshot_id": snap, "paths": marked, "target": str(target), **bad}
            status, body = await server.call("POST", f"/hosts/{host_id}/jobs", json=req)
            assert status == 400 and field in body["error"]["details"]["field"], body
    finally:
        await run.close()


async def test_cross_host_restore_leaves_no_credentials_on_the_target(server: Server, tmp_path: Path,
                                                                      restic: Restic, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    repo_a = tmp_path / "repo-a"
    host_a, run_a, _ = await start_agent(server, tmp_path, "dead-host", repo_a, PW_A, restic)
    src = make_source(tmp_path / "src-a")
    _, snap = await backup(server, host_a, src)
    await run_a.close()  # the machine died
    await wait_for(lambda: host_state(server, host_a, "offline"), 10, "host A offline")

    host_b, run_b, state_b = await start_agent(server, tmp_path, "new-host", tmp_path / "repo-b", PW_B, restic)
    try:
        # pick the paths: A's snapshot browsed through B's agent (admin only)
        ls = f"/hosts/{host_b}/snapshots/{snap}/ls?path={quote(str(src))}&from_host_id={host_a}"
        status, body = await server.call("GET", ls, role="operator")
        assert status == 403, body
        status, page = await server.call("GET", ls)
        assert status == 200 and [e["name"] for e in page["entries"]] == ["etc", "var"], page
        status, body = await server.call("GET", f"/hosts/{host_b}/snapshots/{snap}/ls?path=/")
        assert status == 404 and body["error"]["code"] == "snapshot_not_found", "B's own repository has no such snapshot"

        target = tmp_path / "recovered"
        req = {"kind": "restore", "snapshot_id": snap, "paths": [str(src / "etc")], "target": str(target),
               "verify": True, "from_host_id": host_a}
        status, body = await server.call("POST", f"/hosts/{host_b}/jobs", role="operator", json=req)
        assert status == 403, body
        status, body = await server.call("POST", f"/hosts/{host_b}/jobs", json={**req, "from_host_id": "nope"})
        assert status == 404, body
        status, body = await server.call("POST", f"/hosts/{host_b}/jobs", json=req)
        assert status == 202, body
        job = await wait_for(lambda: job_done(server, body["id"]), 60, "cross-host restore finished")
        assert job["state"] == "succeeded", job
        assert (target / str(src).lstrip("/") / "etc" / "hosts").read_text() == "127.0.0.1 localhost\n"
        assert job["summary"]["from_host_id"] == host_a

        # audited, naming both hosts
        _, audit = await server.call("GET", "/audit?limit=50")
        entry = next(e for e in audit["entries"] if e["action"] == "restore.cross_host")
        assert entry["target"] == job["id"] and entry["details"]["from_host_id"] == host_a
        assert entry["details"]["host_id"] == host_b

        # A's password: not in B's state dir, B's secrets, B's logs, the job or its log lines
        for path in state_b.rglob("*"):
            if path.is_file():
                assert PW_A.encode() not in path.read_bytes(), path
        stored = SecretStore(state_b / "secrets.enc", load_config(state_b / "agent.json").key_bytes()).load()
        assert {c.url for c in stored.values()} == {str(tmp_path / "repo-b")}
        assert PW_A not in caplog.text
        lines = await all_logs(server, job["id"])
        assert lines and all(PW_A not in ln["text"] for ln in lines)
        _, raw = await server.call("GET", f"/jobs/{job['id']}")
        assert PW_A not in str(raw)
        assert not list((state_b / "tmp").glob("restic-pw-*")), "the password file is removed after the run"
    finally:
        await run_b.close()


async def test_drills_pass_then_find_damage(server: Server, tmp_path: Path, restic: Restic, webhook) -> None:
    url, received = webhook
    await set_webhook(server, url)
    repo = tmp_path / "repo"
    host_id, run, state = await start_agent(server, tmp_path, "web-1", repo, PW_B, restic)
    try:
        src = make_source(tmp_path / "src")
        # a group never backed up: nothing to drill, said plainly (0.14 exits 0 there, 0.18 exits 1)
        status, empty = await server.call("POST", f"/hosts/{host_id}/source-groups",
                                          json={"name": "empty", "includes": [str(src)], "tag": "empty"})
        assert status == 201, empty
        status, body = await server.call("POST", f"/hosts/{host_id}/source-groups/{empty['id']}/drill/run")
        job = await wait_for(lambda: job_done(server, body["id"]), 60, "drill finished")
        assert job["state"] == "failed" and "no snapshot with tag 'empty'" in job["error"], job
        assert "damage" not in job["error"]
        nothing_to_drill = job["id"]

        group, _ = await backup(server, host_id, src)
        drill = f"/hosts/{host_id}/source-groups/{group['id']}/drill"
        status, body = await server.call("GET", drill, role="viewer")
        assert status == 200 and body["enabled"] is False and body["last"] is None, body
        status, body = await server.call("PUT", drill, role="operator",
                                         json={"cron": "0 4 * * *", "sample_files": 8, "sample_mb": 1,
                                               "max_age_hours": 48})
        assert status == 200 and body["sample_files"] == 8, body
        status, body = await server.call("PUT", drill, json={"cron": "61 * * * *"})
        assert status == 400 and body["error"]["details"]["field"] == "cron", body

        # a passing drill: 8 files restored, verified and compared with the unchanged live files
        status, body = await server.call("POST", drill + "/run", role="operator")
        assert status == 202, body
        job = await wait_for(lambda: job_done(server, body["id"]), 60, "drill finished")
        assert job["state"] == "succeeded", job
        summary = job["summary"]
        assert summary["files"] == 8 and summary["compared"] == 8 and summary["mismatches"] == 0, summary
        assert summary["bytes"] > 0 and summary["duration"] > 0
        # the phases the bench reports, measured by the agent as the drill ran
        phases = summary["phases"]
        assert list(phases) == ["sample", "prepare", "restore", "compare", "cleanup"], phases
        assert phases["sample"] > 0 and phases["restore"] > 0 and sum(phases.values()) <= summary["duration"] + 0.01, phases
        assert any(ln["text"].startswith("drill phases: sample ") for ln in await all_logs(server, job["id"]))
        assert not list((state / "tmp").glob("drill-*")), "the drill's temp dir is removed"
        _, host = await server.call("GET", f"/hosts/{host_id}")
        assert host["last_verified"]["job_id"] == job["id"] and host["last_verified"]["state"] == "succeeded"
        _, hosts = await server.call("GET", "/hosts")
        assert hosts["hosts"][0]["last_verified"]["mismatches"] == 0
        assert not [r for r in received if r.get("event") == "job.failed" and r["job"]["id"] != nothing_to_drill]

        # a live file whose bytes changed while its size and mtime did not: the drill reports it
        victim = src / "var" / "log03"
        st = victim.stat()
        victim.write_bytes(os.urandom(st.st_size))
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
        status, body = await server.call("PUT", drill, json={"sample_files": 40, "sample_mb": 1})
        assert status == 200, body
        status, body = await server.call("POST", drill + "/run")
        job = await wait_for(lambda: job_done(server, body["id"]), 60, "drill finished")
        assert job["state"] == "failed" and job["summary"]["mismatches"] == 1, job
        assert job["summary"]["mismatched_paths"] == [str(victim)] and str(victim) in job["error"]

        # damage: flip bytes in the biggest pack file (file data) -> the drill fails and says so
        packs = sorted((p for p in (repo / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
        biggest = packs[-1]
        biggest.chmod(0o600)
        data = bytearray(biggest.read_bytes())
        for i in range(len(data) // 4, len(data) // 4 * 3, 97):
            data[i] ^= 0xFF
        biggest.write_bytes(bytes(data))
        status, body = await server.call("PUT", drill, json={"cron": "0 4 * * *", "sample_files": 40,
                                                              "sample_mb": 1})
        assert status == 200, body
        status, body = await server.call("POST", drill + "/run")
        job = await wait_for(lambda: job_done(server, body["id"]), 60, "drill finished")
        assert job["state"] == "failed", job
        assert "damage" in job["error"] and job["summary"]["damage"], job
        await wait_for(lambda: any(r.get("event") == "job.failed" and r["job"]["id"] == job["id"] for r in received),
                       10, "failure webhook")
        assert "ciphertext verification failed" in job["error"] or "pack" in job["error"], job["error"]
        _, host = await server.call("GET", f"/hosts/{host_id}")
        assert host["last_verified"]["state"] == "failed"
        assert not list((state / "tmp").glob("drill-*"))
    finally:
        await run.close()
