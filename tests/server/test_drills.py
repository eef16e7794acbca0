"""The drill ticker against a real server with a protocol-level agent and a fake clock:
due drills start as system jobs with their sample, never for offline hosts; a group without a
good drill for too long notifies once, and once again when it recovers."""

from __future__ import annotations

from rm_server.keys import DRILLS
from tests.conftest import set_webhook, wait_for
from tests.server.server_helpers import finished, make_group, online_host, started


async def test_ticker_starts_due_drills_and_flags_overdue_groups(server, webhook):
    url, received = webhook
    await set_webhook(server, url)
    host_id, agent = await online_host(server)
    group = await make_group(server, host_id, retention={"keep_last": 3})
    drill = f"/hosts/{host_id}/source-groups/{group['id']}/drill"
    status, body = await server.call("PUT", drill, role="operator",
                                     json={"cron": "*/10 * * * *", "sample_files": 3, "sample_mb": 2,
                                           "max_age_hours": 1})
    assert status == 200 and body["enabled"] is True, body
    ticker = server.app[DRILLS]
    assert await ticker.tick() == [], "a new policy waits for its next fire"

    server.clock.advance(11 * 60)
    (job_id,) = await ticker.tick()
    run = await agent.expect("command.run")
    assert run.payload.job_id == job_id and run.payload.kind == "drill"
    assert run.payload.params["sample_files"] == 3 and run.payload.params["sample_mb"] == 2
    assert run.payload.params["source_group"]["tag"] == group["tag"]
    _, job = await server.call("GET", f"/jobs/{job_id}")
    assert job["actor_kind"] == "system" and job["source_group_id"] == group["id"]
    assert await ticker.tick() == [], "one drill per fire"

    # no good drill for more than an hour: one webhook, however often the ticker looks
    server.clock.advance(2 * 3600)
    (second,) = await ticker.tick()  # the cron fired again meanwhile: one more drill, not twelve
    assert await ticker.tick() == []
    await agent.expect("command.run")
    await wait_for(lambda: any(r["event"] == "drill.overdue" for r in received), what="overdue webhook")
    assert [r["event"] for r in received].count("drill.overdue") == 1
    assert received[0]["source_group_id"] == group["id"] and received[0]["host_id"] == host_id
    _, host = await server.call("GET", f"/hosts/{host_id}", role="viewer")
    assert host["drill_overdue"] is True, "the host resource shows the overdue group"
    _, listed = await server.call("GET", "/hosts", role="viewer")
    assert [h["drill_overdue"] for h in listed["hosts"] if h["id"] == host_id] == [True], "the full list too"

    # the drill's success (reported by the agent) clears it, with one more webhook
    await agent.send(started(job_id, kind="drill", source_group_id=group["id"]))
    await agent.send(finished(job_id, 2, summary={"files": 3, "bytes": 30, "mismatches": 0},
                              finished_at=server.clock.now))
    await agent.expect("ack")
    await agent.expect("ack")
    await ticker.tick()
    await wait_for(lambda: any(r["event"] == "drill.recovered" for r in received), what="recovered webhook")
    status, body = await server.call("GET", drill, role="viewer")
    assert body["last"]["job_id"] == second and body["last"]["state"] == "dispatched", body
    _, host = await server.call("GET", f"/hosts/{host_id}", role="viewer")
    assert host["last_verified"]["job_id"] == job_id and host["last_verified"]["files"] == 3
    assert host["drill_overdue"] is False

    # an offline host gets no drill, not even a queued one
    await agent.close()

    async def offline():
        return (await server.call("GET", f"/hosts/{host_id}"))[1]["status"] == "offline"

    await wait_for(offline, what="host offline")
    server.clock.advance(3600)
    assert await ticker.tick() == []


async def test_drill_validation_and_run_now(server):
    host_id, agent = await online_host(server)
    group = await make_group(server, host_id)
    drill = f"/hosts/{host_id}/source-groups/{group['id']}/drill"
    for body, field in [({"cron": "61 * * * *"}, "cron"), ({"timezone": "Mars/Olympus"}, "timezone"),
                        ({"sample_files": 0}, "sample_files"), ({"sample_mb": -1}, "sample_mb"),
                        ({"max_age_hours": 0}, "max_age_hours"), ({"nope": 1}, "nope")]:
        status, err = await server.call("PUT", drill, json=body)
        assert status == 400 and err["error"]["details"]["field"] == field, (body, err)
    status, err = await server.call("PUT", drill, role="viewer", json={})
    assert status == 403, err
    status, err = await server.call("GET", f"/hosts/{host_id}/source-groups/nope/drill")
    assert status == 404, err
    status, body = await server.call("POST", drill + "/run", role="operator")
    assert status == 202 and body["kind"] == "drill", body
    run = await agent.expect("command.run")
    assert run.payload.params["sample_files"] == 20, "a group without a policy drills with the defaults"
    status, body = await server.call("POST", f"/hosts/{host_id}/jobs", json={"kind": "drill"})
    assert status == 400 and body["error"]["details"]["field"] == "source_group_id", body
    await agent.close()
