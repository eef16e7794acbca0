"""Jobs: creation per kind, listing, cancel, the offline queue, lost jobs, idempotent agent events, logs."""

from __future__ import annotations

import pytest

from rm_core import protocol as p
from rm_core.ids import new_id
from tests.conftest import TestAgent, wait_for
from tests.server.server_helpers import finished, job, log, make_group, make_schedule, now, online_host, started


async def post_job(server, host_id, body, role="operator"):
    return await server.call("POST", f"/hosts/{host_id}/jobs", role=role, json=body)


@pytest.mark.parametrize("body, params", [
    ({"kind": "init"}, {}),
    ({"kind": "forget"}, {}),
    ({"kind": "prune"}, {}),
    ({"kind": "check", "read_data_subset": "10%"}, {"read_data_subset": "10%"}),
    ({"kind": "unlock", "remove_all": True}, {"remove_all": True}),
    ({"kind": "restore", "snapshot_id": "abcdef12", "paths": ["/etc/hosts"], "target": "/tmp/restore"},
     {"snapshot_id": "abcdef12", "paths": ["/etc/hosts"], "target": "/tmp/restore"}),
])
async def test_create_each_kind_dispatches_command_run(server, body, params):
    host_id, agent = await online_host(server)
    status, created = await post_job(server, host_id, body)
    assert status == 202, created
    assert created["kind"] == body["kind"] and created["state"] == "dispatched" and created["host_id"] == host_id
    assert created["actor_kind"] == "user" and created["actor_id"]
    run = await agent.expect("command.run")
    assert run.payload.job_id == created["id"] and run.payload.kind == body["kind"]
    for key, value in params.items():
        assert run.payload.params[key] == value


async def test_backup_job_carries_its_source_group(server):
    host_id, agent = await online_host(server)
    group = await make_group(server, host_id, excludes=["*.bak"])
    await agent.expect("schedule.set")
    status, created = await post_job(server, host_id, {"kind": "backup", "source_group_id": group["id"]})
    assert status == 202 and created["source_group_id"] == group["id"]
    run = await agent.expect("command.run")
    assert run.payload.params["source_group"]["excludes"] == ["*.bak"]
    assert run.payload.params["source_group"]["tag"] == group["tag"]


@pytest.mark.parametrize("body, field", [
    ({"kind": "backup"}, "source_group_id"),
    ({"kind": "restore", "target": "/tmp/x"}, "snapshot_id"),
    ({"kind": "restore", "snapshot_id": "abcdef12", "target": "relative/dir"}, "target"),
    ({"kind": "restore", "snapshot_id": "abcdef12"}, "target"),
    ({"kind": "restore", "snapshot_id": "nothex!!", "target": "/tmp"}, "snapshot_id"),
    ({"kind": "check", "read_data_subset": "lots"}, "read_data_subset"),
    ({"kind": "explode"}, "kind"),
    ({"kind": "init", "surprise": 1}, "surprise"),
])
async def test_job_validation_names_the_field(server, body, field):
    host_id, _ = await server.enroll()
    status, err = await post_job(server, host_id, body)
    assert status == 400, err
    assert err["error"]["details"]["field"] == field, err


async def test_job_for_foreign_group_or_unknown_host(server):
    host_a, _ = await server.enroll("a")
    host_b, _ = await server.enroll("b")
    foreign = await make_group(server, host_b)
    status, _ = await post_job(server, host_a, {"kind": "backup", "source_group_id": foreign["id"]})
    assert status in (400, 404)
    status, _ = await post_job(server, "nope", {"kind": "init"})
    assert status == 404
    status, _ = await post_job(server, host_a, {"kind": "init"}, role="viewer")
    assert status == 403
    status, body = await server.call("GET", "/jobs", params={"host_id": host_a})
    assert body["jobs"] == []


async def test_list_filters_and_paging(server):
    host_a, _ = await server.enroll("a")
    host_b, _ = await server.enroll("b")
    made = []
    for i in range(5):
        made.append((await post_job(server, host_a, {"kind": "check"}))[1]["id"])
    made.append((await post_job(server, host_a, {"kind": "unlock"}))[1]["id"])
    other = (await post_job(server, host_b, {"kind": "check"}))[1]["id"]

    status, body = await server.call("GET", "/jobs", role="viewer", params={"host_id": host_a})
    assert status == 200 and [j["id"] for j in body["jobs"]] == list(reversed(made))
    status, body = await server.call("GET", "/jobs", role="viewer", params={"kind": "unlock"})
    assert [j["id"] for j in body["jobs"]] == [made[-1]]
    status, body = await server.call("GET", "/jobs", role="viewer", params={"host_id": host_b, "state": "queued"})
    assert [j["id"] for j in body["jobs"]] == [other]
    status, body = await server.call("GET", "/jobs", role="viewer", params={"state": "running"})
    assert body["jobs"] == []

    seen, before = [], None
    while True:
        params = {"host_id": host_a, "limit": "2"} | ({"before": before} if before else {})
        status, body = await server.call("GET", "/jobs", role="viewer", params=params)
        assert status == 200 and len(body["jobs"]) <= 2
        if not body["jobs"]:
            break
        seen += [j["id"] for j in body["jobs"]]
        before = body["jobs"][-1]["id"]
    assert seen == list(reversed(made))
    status, body = await server.call("GET", f"/jobs/{made[0]}", role="viewer")
    assert status == 200 and body["id"] == made[0] and body["kind"] == "check"
    status, _ = await server.call("GET", "/jobs/nope", role="viewer")
    assert status == 404


async def test_cancel_queued_is_immediate(server):
    host_id, _ = await server.enroll()
    _, created = await post_job(server, host_id, {"kind": "check"})
    assert created["state"] == "queued"
    status, body = await server.call("POST", f"/jobs/{created['id']}/cancel", role="operator")
    assert status == 202 and body["state"] == "cancelled" and body["finished_at"]
    assert (await job(server, created["id"]))["state"] == "cancelled"
    status, body = await server.call("POST", f"/jobs/{created['id']}/cancel", role="operator")
    assert status == 409
    status, _ = await server.call("POST", f"/jobs/{created['id']}/cancel", role="viewer")
    assert status == 403


async def test_cancel_dispatched_and_running_sends_command_cancel(server):
    host_id, agent = await online_host(server)
    _, first = await post_job(server, host_id, {"kind": "check"})
    _, second = await post_job(server, host_id, {"kind": "unlock"})
    await agent.expect("command.run")
    await agent.expect("command.run")
    status, body = await server.call("POST", f"/jobs/{first['id']}/cancel", role="operator")
    assert status == 202 and body["state"] == "dispatched"
    assert (await agent.expect("command.cancel")).payload.job_id == first["id"]

    await agent.send(started(second["id"], kind="unlock"))
    await agent.expect("ack")
    status, body = await server.call("POST", f"/jobs/{second['id']}/cancel", role="operator")
    assert status == 202 and body["state"] == "running"
    assert (await agent.expect("command.cancel")).payload.job_id == second["id"]
    await agent.send(finished(second["id"], 2, state="cancelled", exit_code=130))
    await agent.expect("ack")
    assert (await job(server, second["id"]))["state"] == "cancelled"


async def test_offline_backup_stays_queued_then_dispatched_on_connect(server):
    host_id, token = await server.enroll()
    group = await make_group(server, host_id)
    status, created = await post_job(server, host_id, {"kind": "backup", "source_group_id": group["id"]})
    assert status == 202 and created["state"] == "queued"
    assert (await job(server, created["id"]))["state"] == "queued"
    agent = TestAgent(server, token)
    await agent.connect()
    run = await agent.expect("command.run")
    assert run.payload.job_id == created["id"] and run.payload.kind == "backup"
    types = [e.type for e in agent.received]
    assert types.index("schedule.set") < types.index("config.update") < types.index("command.run")
    assert (await job(server, created["id"]))["state"] == "dispatched"


async def test_running_job_missing_from_hello_is_lost(server):
    host_id, agent = await online_host(server)
    _, alive = await post_job(server, host_id, {"kind": "check"})
    _, dead = await post_job(server, host_id, {"kind": "unlock"})
    _, unstarted = await post_job(server, host_id, {"kind": "forget"})
    for _ in range(3):
        await agent.expect("command.run")
    for j in (alive, dead):
        await agent.send(started(j["id"], kind=j["kind"]))
        await agent.expect("ack")
    await agent.close()
    await wait_for(lambda: host_id not in server.hub.connections, what="agent gone")

    again = TestAgent(server, agent.token)
    await again.connect(running_jobs=[alive["id"]])
    # The dispatched job the agent never started goes back to the queue and out again.
    assert (await again.expect("command.run")).payload.job_id == unstarted["id"]
    lost = await job(server, dead["id"])
    assert lost["state"] == "lost" and "unlock" in lost["error"] and lost["finished_at"]
    assert (await job(server, alive["id"]))["state"] == "running"


async def test_job_events_dedup_and_ack(server):
    host_id, agent = await online_host(server)
    _, created = await post_job(server, host_id, {"kind": "check"})
    job_id = created["id"]
    await agent.expect("command.run")

    await agent.send(started(job_id, kind="check"))
    ack = await agent.expect("ack")
    assert ack.payload.job_id == job_id and ack.payload.upto_seq == 1
    assert (await job(server, job_id))["state"] == "running"

    await agent.send(log(job_id, [2, 3, 4]))
    assert (await agent.expect("ack")).payload.upto_seq == 4
    await agent.send(log(job_id, [3, 4, 5], text="resent {seq}"))  # overlap: only 5 is new
    assert (await agent.expect("ack")).payload.upto_seq == 5
    await agent.send(log(job_id, [7, 8]))  # a gap: nothing stored, the ack stays
    assert (await agent.expect("ack")).payload.upto_seq == 5
    await agent.send(started(job_id, kind="check"))  # resent started
    assert (await agent.expect("ack")).payload.upto_seq == 5
    await agent.send(finished(job_id, 9))  # finished before its lines: not yet
    assert (await agent.expect("ack")).payload.upto_seq == 5
    await agent.send(log(job_id, [6, 7, 8]))
    assert (await agent.expect("ack")).payload.upto_seq == 8
    await agent.send(finished(job_id, 9, state="warning", exit_code=3, summary={"files_new": 1}))
    assert (await agent.expect("ack")).payload.upto_seq == 9
    await agent.send(finished(job_id, 9, state="failed", exit_code=1))  # resent finished is ignored
    assert (await agent.expect("ack")).payload.upto_seq == 9

    done = await job(server, job_id)
    assert done["state"] == "warning" and done["exit_code"] == 3 and done["summary"] == {"files_new": 1}
    status, page = await server.call("GET", f"/jobs/{job_id}/logs", role="viewer")
    assert status == 200 and [ln["seq"] for ln in page["lines"]] == [2, 3, 4, 5, 6, 7, 8]
    assert page["lines"][2]["text"] == "line 4" and page["lines"][3]["text"] == "resent 5"
    assert page["done"] is True and page["next_seq"] == 8


async def test_job_log_as_an_agent_sends_it_keeps_the_agents_timestamp_text(server):
    # What rm_agent sends (rm_core.times.iso stamps) takes the model-free path: the text is
    # stored as written ("+00:00"; the models' path would store "Z") and reads back the same.
    host_id, agent = await online_host(server)
    _, created = await post_job(server, host_id, {"kind": "check"})
    job_id = created["id"]
    await agent.expect("command.run")
    await agent.send(started(job_id, kind="check"))
    await agent.expect("ack")
    stamp = "2026-03-01T10:00:00.250000+00:00"
    await agent.ws.send_str(p.encode(p.Envelope(type="job.log", payload={"job_id": job_id, "lines": [
        {"seq": 2, "ts": stamp, "stream": "stderr", "text": "a"}, {"seq": 3, "ts": stamp, "text": "b"}]})))
    assert (await agent.expect("ack")).payload.upto_seq == 3
    rows = await server.store.db.fetchall("SELECT seq, ts, stream, text FROM job_logs WHERE job_id = ? ORDER BY seq",
                                          (job_id,))
    assert [tuple(r) for r in rows] == [(2, stamp, "stderr", "a"), (3, stamp, "stdout", "b")]
    status, page = await server.call("GET", f"/jobs/{job_id}/logs", role="viewer")
    assert status == 200 and [ln["ts"] for ln in page["lines"]] == ["2026-03-01T10:00:00.250000Z"] * 2


async def test_events_for_unknown_or_foreign_jobs_get_error(server):
    host_a, agent_a = await online_host(server, "a")
    host_b, agent_b = await online_host(server, "b")
    _, created = await post_job(server, host_b, {"kind": "check"})
    await agent_b.expect("command.run")
    await agent_a.send(log(created["id"], [2]))
    assert (await agent_a.expect("error")).payload.code == "unknown_job"
    await agent_a.send(started(created["id"], kind="check"))
    assert (await agent_a.expect("error")).payload.code == "unknown_job"
    await agent_a.send(finished(created["id"], 2))
    assert (await agent_a.expect("error")).payload.code == "unknown_job"
    assert (await job(server, created["id"]))["state"] == "dispatched"


async def test_agent_minted_job_from_job_started(server):
    host_a, agent_a = await online_host(server, "a")
    host_b, agent_b = await online_host(server, "b")
    group_a = await make_group(server, host_a)
    schedule_a = await make_schedule(server, host_a, [group_a["id"]])
    group_b = await make_group(server, host_b)

    minted = new_id()
    await agent_a.send(started(minted, schedule_id=schedule_a["id"], source_group_id=group_a["id"]))
    assert (await agent_a.expect("ack")).payload.upto_seq == 1
    body = await job(server, minted)
    assert body["host_id"] == host_a and body["state"] == "running" and body["actor_kind"] == "schedule"
    assert body["schedule_id"] == schedule_a["id"] and body["source_group_id"] == group_a["id"]
    await agent_a.send(started(minted, schedule_id=schedule_a["id"], source_group_id=group_a["id"]))
    assert (await agent_a.expect("ack")).payload.upto_seq == 1
    status, listing = await server.call("GET", "/jobs", params={"host_id": host_a})
    assert [j["id"] for j in listing["jobs"]] == [minted]

    # Naming another host's group (or schedule) creates nothing.
    for kw in ({"source_group_id": group_a["id"]}, {"schedule_id": schedule_a["id"]},
               {"schedule_id": schedule_a["id"], "source_group_id": group_b["id"]}):
        foreign = new_id()
        await agent_b.send(started(foreign, **kw))
        assert (await agent_b.expect("error")).payload.code == "unknown_job"
        status, _ = await server.call("GET", f"/jobs/{foreign}")
        assert status == 404
    # A job id that exists for another host is not taken over.
    await agent_b.send(started(minted, source_group_id=group_b["id"]))
    assert (await agent_b.expect("error")).payload.code == "unknown_job"
    assert (await job(server, minted))["host_id"] == host_a


async def test_log_paging(server):
    host_id, agent = await online_host(server)
    _, created = await post_job(server, host_id, {"kind": "check"})
    job_id = created["id"]
    await agent.send(started(job_id, kind="check"))
    await agent.send(log(job_id, range(2, 27)))
    await agent.expect("ack")
    await agent.expect("ack")
    status, page = await server.call("GET", f"/jobs/{job_id}/logs", role="viewer", params={"limit": "10"})
    assert status == 200 and [ln["seq"] for ln in page["lines"]] == list(range(2, 12))
    assert page["next_seq"] == 11 and page["done"] is False
    got = [ln["seq"] for ln in page["lines"]]
    while True:
        status, page = await server.call("GET", f"/jobs/{job_id}/logs", role="viewer",
                                         params={"after_seq": str(page["next_seq"]), "limit": "10"})
        got += [ln["seq"] for ln in page["lines"]]
        if not page["lines"]:
            break
    assert got == list(range(2, 27)) and page["next_seq"] == 26 and page["done"] is False  # still running
    await agent.send(finished(job_id, 27))
    await agent.expect("ack")
    status, page = await server.call("GET", f"/jobs/{job_id}/logs", role="viewer", params={"after_seq": "20"})
    assert [ln["seq"] for ln in page["lines"]] == list(range(21, 27)) and page["done"] is True
    status, page = await server.call("GET", f"/jobs/{job_id}/logs", role="viewer", params={"after_seq": "20", "limit": "3"})
    assert page["done"] is False and page["next_seq"] == 23
    status, _ = await server.call("GET", "/jobs/nope/logs", role="viewer")
    assert status == 404
    status, _ = await server.call("GET", f"/jobs/{job_id}/logs", role="viewer", params={"after_seq": "x"})
    assert status == 400


async def test_log_retention_cap_keeps_head_and_tail(server):
    server.store.jobs.log_head = 5
    server.store.jobs.log_tail = 10
    host_id, agent = await online_host(server)
    _, created = await post_job(server, host_id, {"kind": "check"})
    job_id = created["id"]
    await agent.send(started(job_id, kind="check"))
    await agent.expect("ack")
    seq = 2
    for _ in range(10):  # 100 lines in batches of 10
        await agent.send(log(job_id, range(seq, seq + 10)))
        seq += 10
        assert (await agent.expect("ack")).payload.upto_seq == seq - 1
    await agent.send(finished(job_id, seq))
    await agent.expect("ack")
    status, page = await server.call("GET", f"/jobs/{job_id}/logs", role="viewer", params={"limit": "1000"})
    seqs = [ln["seq"] for ln in page["lines"]]
    assert seqs == list(range(2, 7)) + list(range(seq - 10, seq)), seqs
    assert (await job(server, job_id))["log_dropped"] == 100 - 15
    assert page["done"] is True


async def test_schedule_fire_creates_one_job_per_group(server):
    host_id, agent = await online_host(server)
    g1 = await make_group(server, host_id, "etc")
    g2 = await make_group(server, host_id, "home", includes=["/home"])
    schedule = await make_schedule(server, host_id, [g1["id"], g2["id"]])
    fire = p.ScheduleFire(schedule_id=schedule["id"], scheduled_at=now(), fire_id="fire-1")
    await agent.send(fire)
    runs = [await agent.expect("command.run"), await agent.expect("command.run")]
    assert {r.payload.params["source_group"]["id"] for r in runs} == {g1["id"], g2["id"]}
    for r in runs:
        body = await job(server, r.payload.job_id)
        assert body["actor_kind"] == "schedule" and body["schedule_id"] == schedule["id"]
        assert body["kind"] == "backup" and body["state"] == "dispatched"

    await agent.send(fire)  # resent: nothing new
    await agent.send(p.ScheduleFire(schedule_id="nope", scheduled_at=now(), fire_id="fire-2"))
    assert (await agent.expect("error")).payload.code == "unknown_schedule"
    assert [e.type for e in agent.received].count("command.run") == 2
    status, listing = await server.call("GET", "/jobs", params={"host_id": host_id})
    assert len(listing["jobs"]) == 2


async def test_snapshots_and_repo_stats_reports_replace(server):
    host_id, agent = await online_host(server)
    snap = {"id": "a" * 64, "time": now().isoformat(), "paths": ["/etc"], "tags": ["etc"]}
    await agent.send(p.SnapshotsReport(snapshots=[p.SnapshotInfo(**snap), p.SnapshotInfo(**(snap | {"id": "b" * 64}))]))
    await agent.send(p.SnapshotsReport(snapshots=[p.SnapshotInfo(**(snap | {"id": "c" * 64}))]))
    await agent.send(p.RepoStats(total_size=1234, snapshots_count=1))

    async def reported():
        status, body = await server.call("GET", f"/hosts/{host_id}/snapshots", role="viewer")
        return [s["id"] for s in body["snapshots"]] == ["c" * 64] and body

    body = await wait_for(reported, what="second report replaces the first")
    assert body["snapshots"][0]["short_id"] == "c" * 8 and body["snapshots"][0]["tags"] == ["etc"]

    async def sized():
        return (await server.call("GET", f"/hosts/{host_id}", role="viewer"))[1]["repo_size"] == 1234

    await wait_for(sized, what="repo stats on the host")
    status, _ = await server.call("GET", "/hosts/nope/snapshots", role="viewer")
    assert status == 404


async def test_audit_paging(server):
    host_id, _ = await server.enroll()
    for name in ("a", "b", "c", "d"):
        await make_group(server, host_id, name)
    status, body = await server.call("GET", "/audit", role="viewer", params={"limit": "2"})
    assert status == 200 and len(body["entries"]) == 2
    newest = body["entries"]
    assert [e["action"] for e in newest] == ["source_group.create"] * 2
    assert newest[0]["id"] > newest[1]["id"] and newest[0]["actor_name"] == "operator"
    status, older = await server.call("GET", "/audit", role="viewer", params={"limit": "2", "before": str(newest[1]["id"])})
    assert [e["id"] for e in older["entries"]] == [newest[1]["id"] - 1, newest[1]["id"] - 2]
    assert {e["details"]["name"] for e in newest + older["entries"]} == {"a", "b", "c", "d"}
    status, _ = await server.call("GET", "/audit", role="viewer", params={"before": "x"})
    assert status == 400
