"""The second copy on a real server with protocol-level agents: the copy repository's
credentials (sealed, redacted, only for agents that know copies), a copy job after each good
backup of a copy-enabled group or by its cron, copy jobs on demand, and the copy lag."""

from __future__ import annotations

from datetime import timedelta

from rm_core import protocol as p
from rm_server.keys import COPIES
from tests.conftest import wait_for
from tests.server.server_helpers import finished, job, make_group, online_host, started

COPY = ["query", "copy"]
SECRET = "copy-repo-secret-8c1f"
REST_SECRET = "rest-secret-55ab"


async def _put_copy(server, host_id: str, **body) -> dict:
    body = {"url": "rest:https://offsite.example:8000/web-1/", "password": SECRET, "rest_user": "web-1",
            "rest_password": REST_SECRET, **body}
    status, reply = await server.call("PUT", f"/hosts/{host_id}/repo/copy", role="operator", json=body)
    assert status == 200, reply
    return reply


async def _backup(agent, server, host_id: str, group_id: str, job_id: str, state: str = "succeeded") -> None:
    await agent.send(started(job_id, source_group_id=group_id))
    await agent.send(finished(job_id, 2, state=state, finished_at=server.clock.now,
                              summary={"files_new": 1, "files_changed": 2, "data_added": 10}))
    await agent.expect("ack")
    await agent.expect("ack")


async def test_copy_credentials_are_sealed_redacted_and_reach_only_agents_that_know_copies(server):
    host_id, agent = await online_host(server, features=COPY)
    old_id, old = await online_host(server, "old-1")  # no features: an agent one release older
    reply = await _put_copy(server, host_id)
    assert SECRET not in str(reply) and REST_SECRET not in str(reply) and reply["password"] is None
    assert reply["url"] == "rest:https://offsite.example:8000/web-1/", reply
    update = await agent.expect("config.update")
    slots = {c.slot: c for c in update.payload.credentials}
    assert slots["copy"].password == SECRET and slots["copy"].rest_password == REST_SECRET
    init = await agent.expect("command.run")
    assert init.payload.kind == "init" and init.payload.params == {"repo": "copy"}, "a new copy repository is initialised"

    status, body = await server.call("GET", f"/hosts/{host_id}/repo/copy", role="viewer")
    assert status == 200 and SECRET not in str(body) and REST_SECRET not in str(body), body
    status, audit = await server.call("GET", "/audit?limit=50")
    assert SECRET not in str(audit) and REST_SECRET not in str(audit)
    for path in server.data_dir.iterdir():  # the database and its WAL: sealed, never the plain secret
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path

    # an older agent never gets the slot it cannot parse (it would drop the whole update)
    await _put_copy(server, old_id)
    update = await old.expect("config.update")
    assert [c.slot for c in update.payload.credentials] == []
    status, body = await server.call("POST", f"/hosts/{old_id}/jobs", role="operator",
                                     json={"kind": "forget", "repo": "copy"})
    assert status == 409 and body["error"]["code"] == "agent_too_old", body

    status, _ = await server.call("DELETE", f"/hosts/{host_id}/repo/copy", role="viewer")
    assert status == 403
    status, _ = await server.call("DELETE", f"/hosts/{host_id}/repo/copy", role="operator")
    assert status == 204
    update = await agent.expect("config.update")
    assert "copy" not in {c.slot for c in update.payload.credentials}
    status, body = await server.call("GET", f"/hosts/{host_id}/repo/copy", role="viewer")
    assert status == 404, body
    status, body = await server.call("DELETE", f"/hosts/{host_id}/repo/copy", role="operator")
    assert status == 404, body


async def test_a_good_backup_of_a_copy_enabled_group_is_followed_by_one_copy(server):
    host_id, agent = await online_host(server, features=COPY)
    await _put_copy(server, host_id)
    await agent.expect("command.run")  # init of the copy
    group = await make_group(server, host_id, tag="etc", retention={"keep_last": 3}, copy={"enabled": True})
    assert group["copy"] == {"enabled": True, "timezone": "UTC", "cron": None, "max_lag_hours": 24}, group
    plain = await make_group(server, host_id, name="home", includes=["/home"])
    assert plain["copy"]["enabled"] is False

    await _backup(agent, server, host_id, plain["id"], "01JBACKUPPLAIN0000000000000")
    await _backup(agent, server, host_id, group["id"], "01JBACKUPFAILED000000000000", state="failed")
    await _backup(agent, server, host_id, group["id"], "01JBACKUPGOOD00000000000000", state="warning")
    run = await agent.expect("command.run")
    assert run.payload.kind == "copy" and run.payload.params["source_group"]["tag"] == "etc", run.payload
    copy_job = await job(server, run.payload.job_id)
    assert copy_job["actor_kind"] == "system" and copy_job["source_group_id"] == group["id"]
    _, copies = await server.call("GET", f"/jobs?host_id={host_id}&kind=copy")
    assert [j["id"] for j in copies["jobs"]] == [run.payload.job_id], "no copy for the plain group or the failed backup"

    # while that copy has not started, another backup adds nothing: the waiting copy takes it too
    await _backup(agent, server, host_id, group["id"], "01JBACKUPGOOD20000000000000")
    _, copies = await server.call("GET", f"/jobs?host_id={host_id}&kind=copy")
    assert len(copies["jobs"]) == 1

    # on demand, as an operator asks for it
    status, body = await server.call("POST", f"/hosts/{host_id}/jobs", role="operator",
                                     json={"kind": "copy", "source_group_id": group["id"]})
    assert status == 202 and body["kind"] == "copy", body
    status, body = await server.call("POST", f"/hosts/{host_id}/jobs", role="operator", json={"kind": "copy"})
    assert status == 400 and body["error"]["details"]["field"] == "source_group_id", body
    status, body = await server.call("POST", f"/hosts/{host_id}/jobs", role="operator",
                                     json={"kind": "backup", "source_group_id": group["id"], "repo": "copy"})
    assert status == 400 and body["error"]["details"]["field"] == "repo", body
    status, body = await server.call("POST", f"/hosts/{host_id}/jobs", role="operator",
                                     json={"kind": "check", "repo": "copy"})
    assert status == 202, body
    run = await agent.expect("command.run")
    while run.payload.kind != "check":
        run = await agent.expect("command.run")
    assert run.payload.params == {"repo": "copy"}


async def test_copy_cron_and_the_lag_the_fleet_shows(server):
    host_id, agent = await online_host(server, features=COPY)
    group = await make_group(server, host_id, tag="etc", copy={"enabled": True, "cron": "0 */6 * * *",
                                                               "max_lag_hours": 12})
    status, body = await server.call("POST", f"/hosts/{host_id}/jobs", role="operator",
                                     json={"kind": "copy", "source_group_id": group["id"]})
    assert status == 409 and "PUT /hosts/{id}/repo/copy" in body["error"]["message"], body
    await _put_copy(server, host_id)
    await agent.expect("command.run")  # init
    _, host = await server.call("GET", f"/hosts/{host_id}", role="viewer")
    assert host["copy_enabled"] is True and host["copy_behind_since"] is None

    # a group copied by its cron is not copied after each backup
    await _backup(agent, server, host_id, group["id"], "01JBACKUPCRON00000000000000")
    ticker = server.app[COPIES]
    assert await ticker.tick() == [], "a new cron waits for its next fire"
    server.clock.advance(6 * 3600 + 60)
    (job_id,) = await ticker.tick()
    assert await ticker.tick() == [], "one copy per fire"
    run = await agent.expect("command.run")
    assert run.payload.job_id == job_id and run.payload.kind == "copy"

    # the primary holds two snapshots of the group and one of another tag; the copy has the older
    t0 = server.clock.now - timedelta(hours=30)
    prim = [p.SnapshotInfo(id="a1" * 32, time=t0, tags=["etc"]),
            p.SnapshotInfo(id="a2" * 32, time=t0 + timedelta(hours=20), tags=["etc"]),
            p.SnapshotInfo(id="b1" * 32, time=t0 + timedelta(hours=29), tags=["other"])]
    await agent.send(p.SnapshotsReport(snapshots=prim))
    await wait_for(lambda: _host_field(server, host_id, "copy_behind_since"), what="lag from the primary's list")
    await agent.send(p.CopyReport(snapshots=[p.SnapshotInfo(id="c1" * 32, time=t0, tags=["etc"], original="a1" * 32)],
                                  stats=p.RepoStats(total_size=1234, snapshots_count=1)))
    behind = t0 + timedelta(hours=20)
    await wait_for(lambda: _host_is(server, host_id, "copy_behind_since", behind), what="lag after the copy report")
    _, host = await server.call("GET", f"/hosts/{host_id}", role="viewer")
    assert host["copy_overdue_at"].startswith((behind + timedelta(hours=12)).isoformat()[:19]), host
    _, listed = await server.call("GET", "/hosts", role="viewer")
    (row,) = [h for h in listed["hosts"] if h["id"] == host_id]
    assert row["copy_enabled"] is True and row["copy_behind_since"].startswith(behind.isoformat()[:19]), row
    status, snaps = await server.call("GET", f"/hosts/{host_id}/snapshots?repo=copy", role="viewer")
    assert status == 200 and snaps["snapshots"][0]["original"] == "a1" * 32, snaps
    status, info = await server.call("GET", f"/hosts/{host_id}/repo/copy", role="viewer")
    assert info["stats"]["total_size"] == 1234, info
    status, body = await server.call("GET", f"/hosts/{host_id}/snapshots?repo=third", role="viewer")
    assert status == 400 and body["error"]["details"]["field"] == "repo", body

    # the copy catches up: nothing missing
    await agent.send(p.CopyReport(snapshots=[
        p.SnapshotInfo(id="c1" * 32, time=t0, tags=["etc"], original="a1" * 32),
        p.SnapshotInfo(id="c2" * 32, time=behind, tags=["etc"], original="a2" * 32)]))
    await wait_for(lambda: _host_is(server, host_id, "copy_behind_since", None), what="copy caught up")

    # turning the group's copy off turns the host's copy off
    body = {k: group[k] for k in ("name", "includes", "excludes", "tag", "retention")}
    status, _ = await server.call("PUT", f"/hosts/{host_id}/source-groups/{group['id']}", role="operator",
                                  json={**body, "copy": {"enabled": False}})
    assert status == 200
    assert await _host_field(server, host_id, "copy_enabled") is False


async def _host_field(server, host_id: str, field: str):
    _, host = await server.call("GET", f"/hosts/{host_id}", role="viewer")
    return host[field]


async def _host_is(server, host_id: str, field: str, value) -> bool:
    got = await _host_field(server, host_id, field)
    if value is None or got is None:
        return got is value
    return got.startswith(value.isoformat()[:19])
