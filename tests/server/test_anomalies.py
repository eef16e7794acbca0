"""The anomaly tell on a real server with a protocol-level agent: steady backups, then one far
outside its group's history -> the job ends `warning` with the reason, backup.anomaly reaches a
channel, the host shows it; with pause_forget the group's retention waits until an operator
acknowledges; the history for the plots and the fleet's growth."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from rm_core import protocol as p
from rm_core.ids import new_id
from tests.alert_receivers import json_receiver
from tests.conftest import FakeClock, Server, TestAgent, sign_in_roles, start_server, wait_for
from tests.server.server_helpers import finished, job, make_group, online_host, started

MiB = 1 << 20


@pytest.fixture
async def server(tmp_path) -> AsyncIterator[Server]:
    clock = FakeClock()
    runner, url, app = await start_server(tmp_path, clock, alert_group_wait=0.2)
    async with aiohttp.ClientSession() as http:
        srv = Server(url, app, http, tmp_path / "data", clock)
        await sign_in_roles(srv)
        try:
            yield srv
        finally:
            await runner.cleanup()


def summary(changed: int, added: int, total: int, duration: float = 12.5) -> dict:
    return {"files_new": changed // 4, "files_changed": changed - changed // 4, "data_added": added,
            "total_files_processed": total, "total_duration": duration, "snapshot_id": "ab" * 4}


async def backup(server: Server, agent: TestAgent, host_id: str, group_id: str, summ: dict,
                 repo_size: int | None = None) -> dict:
    """One backup the way the agent reports it: repo.stats (refreshed before the job ends), then
    the job; returns once the server judged it (the repository size it keeps with the job is
    written by the judge, either way)."""
    job_id = new_id()
    size = repo_size if repo_size is not None else (1 << 30) + len(job_id) + server.clock.now.second
    await agent.send(p.RepoStats(total_size=size))
    await agent.send(started(job_id, source_group_id=group_id))
    server.clock.advance(3600)
    await agent.send(finished(job_id, 2, summary=summ, finished_at=server.clock.now))
    await agent.expect("ack")
    await agent.expect("ack")

    async def judged() -> bool:
        _, history = await server.call("GET", f"/hosts/{host_id}/source-groups/{group_id}/history?limit=200",
                                       role="viewer")
        return any(r["job_id"] == job_id and r["repo_size"] == size for r in history["runs"])

    await wait_for(judged, what=f"backup {job_id} judged")
    return await job(server, job_id)


async def test_an_attack_is_flagged_alerted_shown_and_holds_retention(server):
    async with json_receiver() as rec:
        status, _ = await server.call("POST", "/notification-channels", json={
            "name": "ops", "url": rec.channel_url(), "events": ["backup.anomaly"]})
        assert status == 201
        host_id, agent = await online_host(server, "files-1")
        group = await make_group(server, host_id, retention={"keep_last": 5}, anomaly={"pause_forget": True})
        assert group["anomaly"]["pause_forget"] is True and group["anomaly"]["history"] == 20, group
        other = await make_group(server, host_id, name="home", includes=["/home"], retention={"keep_last": 3})

        for i in range(8):
            done = await backup(server, agent, host_id, group["id"], summary(100 + 5 * i, 40 * MiB, 30_000 + i),
                                repo_size=(10 + i) << 30)
            assert done["state"] == "succeeded" and not done["error"], done
        attacked = await backup(server, agent, host_id, group["id"], summary(29_000, 9 << 30, 30_010),
                                repo_size=19 << 30)
        assert attacked["state"] == "warning", attacked
        assert attacked["error"].startswith("29,000 files changed; usual 1"), attacked["error"]
        assert attacked["summary"]["anomaly"]["measure"] == "files_changed"

        await wait_for(lambda: rec.received, what="backup.anomaly at the channel")
        assert "backup outside its usual size" in rec.received[0]["title"]
        assert "29,000 files changed" in rec.received[0]["message"]
        _, host = await server.call("GET", f"/hosts/{host_id}", role="viewer")
        assert host["open_anomalies"] == 1 and host["anomaly"] == attacked["error"], host
        _, listed = await server.call("GET", "/hosts", role="viewer")
        (row,) = [h for h in listed["hosts"] if h["id"] == host_id]
        assert row["open_anomalies"] == 1 and row["anomaly"].startswith("29,000 files changed"), row

        # retention of the attacked group waits; the other group's goes on
        status, fj = await server.call("POST", f"/hosts/{host_id}/jobs", role="operator", json={"kind": "forget"})
        assert status == 202, fj
        run = await agent.expect("command.run")
        assert [g["name"] for g in run.payload.params["source_groups"]] == ["home"], run.payload.params
        assert run.payload.params["paused"] == ["etc"]
        status, fj = await server.call("POST", f"/hosts/{host_id}/jobs", role="operator",
                                       json={"kind": "forget", "source_group_id": group["id"]})
        paused = await job(server, fj["id"])
        assert paused["state"] == "cancelled" and "retention paused for etc" in paused["error"], paused

        # the next normal backup is judged against the usual, not the attack
        calm = await backup(server, agent, host_id, group["id"], summary(120, 41 * MiB, 30_011), repo_size=19 << 30)
        assert calm["state"] == "succeeded", calm
        status, history = await server.call("GET", f"/hosts/{host_id}/source-groups/{group['id']}/history?limit=30",
                                            role="viewer")
        assert status == 200, history
        runs = history["runs"]
        assert len(runs) == 10 and runs[-1]["job_id"] == calm["id"], runs
        assert [r["anomaly"] is not None for r in runs] == [False] * 8 + [True, False]
        assert runs[0]["repo_size"] == 10 << 30 and runs[8]["repo_size"] == 19 << 30 and runs[0]["duration"] == 12.5
        assert runs[8]["files_changed"] == 29_000 and runs[0]["files_changed"] == 100
        assert 500 < history["lines"]["files_changed"] < 29_000, history["lines"]
        status, body = await server.call("GET", f"/hosts/{host_id}/source-groups/{other['id']}/history",
                                         role="viewer")
        assert body["runs"] == [] and body["lines"] == {}, body

        # a viewer may not acknowledge; an operator does, with a note, and retention resumes
        status, body = await server.call("POST", f"/hosts/{host_id}/anomalies/acknowledge", role="viewer", json={})
        assert status == 403
        status, body = await server.call("POST", f"/hosts/{host_id}/anomalies/acknowledge", role="operator",
                                         json={"ids": ["nope"]})
        assert status == 200 and body["anomalies"] == [], body
        status, body = await server.call("POST", f"/hosts/{host_id}/anomalies/acknowledge", role="operator",
                                         json={"note": "restored from last night; host rebuilt"})
        assert status == 200 and len(body["anomalies"]) == 1, body
        assert body["anomalies"][0]["acknowledged_by"] == "operator" and body["anomalies"][0]["note"]
        _, host = await server.call("GET", f"/hosts/{host_id}", role="viewer")
        assert host["open_anomalies"] == 0 and host["anomaly"] is None, host
        status, fj = await server.call("POST", f"/hosts/{host_id}/jobs", role="operator",
                                       json={"kind": "forget", "source_group_id": group["id"]})
        run = await agent.expect("command.run")
        assert run.payload.job_id == fj["id"] and run.payload.params["source_groups"][0]["name"] == "etc"
        status, body = await server.call("GET", f"/hosts/{host_id}/anomalies?open=1", role="viewer")
        assert body["anomalies"] == []
        status, body = await server.call("GET", f"/hosts/{host_id}/anomalies", role="viewer")
        assert len(body["anomalies"]) == 1 and body["anomalies"][0]["job_id"] == attacked["id"]

        status, growth = await server.call("GET", "/fleet/growth?days=30", role="viewer")
        assert status == 200 and growth["hosts"][0]["host_id"] == host_id, growth
        h = growth["hosts"][0]
        assert h["size"] == 19 << 30 and h["size_before"] == 10 << 30 and h["growth"] == 9 << 30
        assert len(h["points"]) == 30 and h["points"][-1] == 19 << 30
        await agent.close()


async def test_no_verdict_while_learning_and_bad_input_is_a_400(server):
    host_id, agent = await online_host(server)
    group = await make_group(server, host_id, anomaly={"history": 5})
    for changed in (100, 120):
        assert (await backup(server, agent, host_id, group["id"], summary(changed, MiB, 1000)))["state"] == "succeeded"
    learning = await backup(server, agent, host_id, group["id"], summary(50_000, 20 << 30, 1000))
    assert learning["state"] == "succeeded", "two backups are no history yet"
    status, body = await server.call("POST", f"/hosts/{host_id}/source-groups", role="operator",
                                     json={"name": "x", "includes": ["/x"], "anomaly": {"history": 2}})
    assert status == 400 and body["error"]["details"]["field"] == "anomaly.history", body
    status, body = await server.call("POST", f"/hosts/{host_id}/anomalies/acknowledge", role="operator",
                                     json={"ids": []})
    assert status == 400 and body["error"]["details"]["field"] == "ids", body
    status, body = await server.call("GET", f"/hosts/{host_id}/source-groups/{group['id']}/history?limit=0",
                                     role="viewer")
    assert status == 400 and body["error"]["details"]["field"] == "limit", body
    status, body = await server.call("GET", f"/hosts/{host_id}/source-groups/nope/history", role="viewer")
    assert status == 404, body
    await agent.close()
