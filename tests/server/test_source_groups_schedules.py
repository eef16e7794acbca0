"""Source groups and schedules: CRUD, validation, versioning, the push to the agent and its ack."""

from __future__ import annotations

import pytest

from rm_core import protocol as p
from tests.conftest import TestAgent
from tests.server.server_helpers import make_group, make_schedule, online_host


async def versions(server, host_id):
    status, body = await server.call("GET", f"/hosts/{host_id}/schedules", role="viewer")
    assert status == 200, body
    return body["version"], body["applied_version"]


async def test_source_group_crud(server):
    host_id, _ = await server.enroll()
    group = await make_group(server, host_id, "home", includes=["/home"], excludes=["*.tmp"], tag="home",
                             retention={"keep_daily": 7}, pre_hook="sync", post_hook="true")
    assert group["name"] == "home" and group["includes"] == ["/home"] and group["excludes"] == ["*.tmp"]
    assert group["retention"]["keep_daily"] == 7 and group["pre_hook"] == "sync" and group["tag"] == "home"

    status, listing = await server.call("GET", f"/hosts/{host_id}/source-groups", role="viewer")
    assert status == 200 and [g["id"] for g in listing["source_groups"]] == [group["id"]]

    status, body = await server.call("PUT", f"/hosts/{host_id}/source-groups/{group['id']}", role="operator",
                                     json={"name": "home", "includes": ["/home", "/root"]})
    assert status == 200 and body["includes"] == ["/home", "/root"]
    status, body = await server.call("GET", f"/hosts/{host_id}/source-groups/{group['id']}", role="viewer")
    assert status == 200 and body["includes"] == ["/home", "/root"]

    status, _ = await server.call("DELETE", f"/hosts/{host_id}/source-groups/{group['id']}", role="operator")
    assert status == 204
    status, body = await server.call("GET", f"/hosts/{host_id}/source-groups/{group['id']}", role="viewer")
    assert status == 404 and body["error"]["code"] == "not_found"


async def test_source_group_validation_and_roles(server):
    host_id, _ = await server.enroll()
    status, body = await server.call("POST", f"/hosts/{host_id}/source-groups", role="operator",
                                     json={"name": "x", "includes": []})
    assert status == 400 and body["error"]["details"]["fields"][0]["field"] == "includes"
    status, body = await server.call("POST", f"/hosts/{host_id}/source-groups", role="viewer",
                                     json={"name": "x", "includes": ["/x"]})
    assert status == 403
    status, body = await server.call("POST", "/hosts/nope/source-groups", role="operator",
                                     json={"name": "x", "includes": ["/x"]})
    assert status == 404


async def test_group_name_unique_per_host(server):
    host_a, _ = await server.enroll("a")
    host_b, _ = await server.enroll("b")
    first = await make_group(server, host_a, "etc")
    status, body = await server.call("POST", f"/hosts/{host_a}/source-groups", role="operator",
                                     json={"name": "etc", "includes": ["/etc"]})
    assert status == 409 and body["error"]["code"] == "conflict"
    await make_group(server, host_b, "etc")  # another host may use the same name
    other = await make_group(server, host_a, "var")
    status, body = await server.call("PUT", f"/hosts/{host_a}/source-groups/{other['id']}", role="operator",
                                     json={"name": "etc", "includes": ["/var"]})
    assert status == 409
    # A failed mutation bumps nothing.
    assert (await versions(server, host_a))[0] == 2
    # Renaming a group to its own name is not a conflict.
    status, _ = await server.call("PUT", f"/hosts/{host_a}/source-groups/{first['id']}", role="operator",
                                  json={"name": "etc", "includes": ["/etc", "/opt"]})
    assert status == 200


async def test_delete_group_used_by_schedule_is_409_listing_schedules(server):
    host_id, _ = await server.enroll()
    group = await make_group(server, host_id)
    nightly = await make_schedule(server, host_id, [group["id"]], "nightly")
    hourly = await make_schedule(server, host_id, [group["id"]], "hourly", cron="0 * * * *")
    status, body = await server.call("DELETE", f"/hosts/{host_id}/source-groups/{group['id']}", role="operator")
    assert status == 409
    listed = body["error"]["details"]["schedules"]
    assert {s["id"] for s in listed} == {nightly["id"], hourly["id"]}
    assert {s["name"] for s in listed} == {"nightly", "hourly"}
    for s in (nightly, hourly):
        status, _ = await server.call("DELETE", f"/hosts/{host_id}/schedules/{s['id']}", role="operator")
        assert status == 204
    status, _ = await server.call("DELETE", f"/hosts/{host_id}/source-groups/{group['id']}", role="operator")
    assert status == 204


async def test_schedule_crud_and_envelope(server):
    host_id, _ = await server.enroll()
    group = await make_group(server, host_id)
    schedule = await make_schedule(server, host_id, [group["id"]], cron="30 2 * * *", timezone="Europe/Berlin")
    assert schedule["cron"] == "30 2 * * *" and schedule["timezone"] == "Europe/Berlin"
    assert schedule["enabled"] is True and schedule["manual"] is False
    assert schedule["source_group_ids"] == [group["id"]] and schedule["next_run"]

    status, body = await server.call("GET", f"/hosts/{host_id}/schedules", role="viewer")
    assert status == 200 and set(body) >= {"version", "applied_version", "schedules"}
    assert body["version"] == 2 and body["applied_version"] == 0
    assert [s["id"] for s in body["schedules"]] == [schedule["id"]]

    status, body = await server.call("PUT", f"/hosts/{host_id}/schedules/{schedule['id']}", role="operator",
                                     json={"name": "nightly", "cron": "0 4 * * *", "enabled": False,
                                           "source_group_ids": [group["id"]]})
    assert status == 200 and body["cron"] == "0 4 * * *" and body["enabled"] is False
    status, body = await server.call("GET", f"/hosts/{host_id}/schedules/{schedule['id']}", role="viewer")
    assert status == 200 and body["enabled"] is False
    status, _ = await server.call("DELETE", f"/hosts/{host_id}/schedules/{schedule['id']}", role="operator")
    assert status == 204
    status, _ = await server.call("GET", f"/hosts/{host_id}/schedules/{schedule['id']}", role="viewer")
    assert status == 404
    assert await versions(server, host_id) == (4, 0)


@pytest.mark.parametrize("cron", ["61 * * * *", "* * *", "0 3 * * * *", "every day", "0 3 31 2 *"])
async def test_bad_cron_is_400_naming_cron(server, cron):
    host_id, _ = await server.enroll()
    group = await make_group(server, host_id)
    status, body = await server.call("POST", f"/hosts/{host_id}/schedules", role="operator",
                                     json={"name": "n", "cron": cron, "source_group_ids": [group["id"]]})
    assert status == 400, body
    err = body["error"]
    assert err["details"]["field"] == "cron" and err["details"]["fields"][0]["field"] == "cron"
    assert await versions(server, host_id) == (1, 0)


@pytest.mark.parametrize("manual", [False, True])
@pytest.mark.parametrize("tz", ["Mars/Olympus", "America", "Etc", "zone1970.tab", "../etc", ""])
async def test_bad_timezone_is_400(server, manual, tz):
    """Also names of tzdata folders and files that are not zones: a 400, never a 500."""
    host_id, _ = await server.enroll()
    group = await make_group(server, host_id)
    body = {"name": "n", "timezone": tz, "manual": manual, "source_group_ids": [group["id"]]}
    if not manual:
        body["cron"] = "0 3 * * *"
    status, body = await server.call("POST", f"/hosts/{host_id}/schedules", role="operator", json=body)
    assert status == 400 and body["error"]["details"]["field"] == "timezone"


async def test_manual_schedule(server):
    host_id, _ = await server.enroll()
    group = await make_group(server, host_id)
    status, body = await server.call("POST", f"/hosts/{host_id}/schedules", role="operator",
                                     json={"name": "adhoc", "cron": "0 3 * * *", "manual": True,
                                           "source_group_ids": [group["id"]]})
    assert status == 400 and body["error"]["details"]["field"] == "cron"
    status, body = await server.call("POST", f"/hosts/{host_id}/schedules", role="operator",
                                     json={"name": "nocron", "source_group_ids": [group["id"]]})
    assert status == 400 and body["error"]["details"]["field"] == "cron"
    manual = await make_schedule(server, host_id, [group["id"]], "adhoc", cron=None, manual=True)
    assert manual["manual"] is True and manual["cron"] is None and manual["next_run"] is None


async def test_source_group_ids_must_belong_to_host(server):
    host_a, _ = await server.enroll("a")
    host_b, _ = await server.enroll("b")
    foreign = await make_group(server, host_b)
    own = await make_group(server, host_a)
    # a group that is not there (or not this host's) is a 404 naming it, as in a path
    for ids, missing in (([foreign["id"]], foreign["id"]), ([own["id"], foreign["id"]], foreign["id"]),
                         (["nope"], "nope")):
        status, body = await server.call("POST", f"/hosts/{host_a}/schedules", role="operator",
                                         json={"name": "n", "cron": "0 3 * * *", "source_group_ids": ids})
        assert status == 404 and body["error"]["details"]["id"] == missing, (ids, body)
    status, body = await server.call("POST", f"/hosts/{host_a}/schedules", role="operator",
                                     json={"name": "n", "cron": "0 3 * * *", "source_group_ids": [own["id"]] * 2})
    assert status == 400 and body["error"]["details"]["field"] == "source_group_ids", body
    status, body = await server.call("POST", f"/hosts/{host_a}/schedules", role="operator",
                                     json={"name": "n", "cron": "0 3 * * *", "source_group_ids": []})
    assert status == 400
    assert await versions(server, host_a) == (1, 0)


async def test_every_mutation_bumps_version_and_pushes_full_set(server):
    host_id, agent = await online_host(server)
    pushes = []

    async def push():
        env = await agent.expect("schedule.set")
        pushes.append(env.payload)
        return env.payload

    group = await make_group(server, host_id, "etc", retention={"keep_last": 3})
    assert (await push()).version == 1
    schedule = await make_schedule(server, host_id, [group["id"]])
    pushed = await push()
    assert pushed.version == 2
    (spec,) = pushed.schedules
    assert spec.id == schedule["id"] and spec.cron == "0 3 * * *"
    (g,) = spec.source_groups
    assert g.id == group["id"] and g.includes == ["/etc"] and g.retention.keep_last == 3 and g.tag == "etc"

    status, _ = await server.call("PUT", f"/hosts/{host_id}/source-groups/{group['id']}", role="operator",
                                  json={"name": "etc", "includes": ["/etc", "/srv"]})
    assert status == 200
    pushed = await push()
    assert pushed.version == 3 and pushed.schedules[0].source_groups[0].includes == ["/etc", "/srv"]

    status, _ = await server.call("PUT", f"/hosts/{host_id}/schedules/{schedule['id']}", role="operator",
                                  json={"name": "nightly", "cron": "0 5 * * *", "source_group_ids": [group["id"]]})
    assert status == 200
    assert (await push()).schedules[0].cron == "0 5 * * *"
    status, _ = await server.call("DELETE", f"/hosts/{host_id}/schedules/{schedule['id']}", role="operator")
    assert status == 204
    pushed = await push()
    assert pushed.version == 5 and pushed.schedules == []
    status, _ = await server.call("DELETE", f"/hosts/{host_id}/source-groups/{group['id']}", role="operator")
    assert (await push()).version == 6
    assert [x.version for x in pushes] == [1, 2, 3, 4, 5, 6]
    assert await versions(server, host_id) == (6, 0)
    status, host = await server.call("GET", f"/hosts/{host_id}", role="viewer")
    assert host["schedule_version"] == 6


async def barrier(agent):
    """Messages on one socket are handled in order: once this error reply arrives, all before it were applied."""
    await agent.send(p.JobLog(job_id="no-such-job", lines=[p.LogLine(seq=2, ts="2024-01-01T00:00:00Z", text="x")]))
    await agent.expect("error")


async def test_ack_sets_applied_version_never_above_version(server):
    host_id, agent = await online_host(server)
    group = await make_group(server, host_id)
    await make_schedule(server, host_id, [group["id"]])
    assert (await agent.expect("schedule.set")).payload.version == 1
    assert (await agent.expect("schedule.set")).payload.version == 2
    await agent.send(p.ScheduleAck(version=1))
    await barrier(agent)
    assert await versions(server, host_id) == (2, 1)
    await agent.send(p.ScheduleAck(version=2))
    await barrier(agent)
    assert await versions(server, host_id) == (2, 2)
    await agent.send(p.ScheduleAck(version=99))
    await barrier(agent)
    assert await versions(server, host_id) == (2, 2)
    status, host = await server.call("GET", f"/hosts/{host_id}", role="viewer")
    assert host["schedule_version"] == 2 and host["applied_schedule_version"] == 2


async def test_hello_pushes_schedule_set_first_even_when_empty(server):
    host_id, token = await server.enroll()
    agent = TestAgent(server, token)
    ok = await agent.connect()
    assert ok.type == "hello.ok"
    first = await agent.recv()
    assert first.type == "schedule.set" and first.payload.version == 0 and first.payload.schedules == []
    await agent.close()

    group = await make_group(server, host_id)
    schedule = await make_schedule(server, host_id, [group["id"]])
    again = TestAgent(server, token)
    assert (await again.connect()).type == "hello.ok"
    first = await again.recv()
    assert first.type == "schedule.set" and first.payload.version == 2
    assert first.payload.schedules[0].id == schedule["id"]
    assert first.payload.schedules[0].source_groups[0].id == group["id"]
    assert [e.type for e in again.received] == ["hello.ok", "schedule.set"]


async def test_hello_applied_version_recorded_but_capped(server):
    host_id, token = await server.enroll()
    await make_group(server, host_id)
    agent = TestAgent(server, token)
    await agent.connect(applied=7)
    assert await versions(server, host_id) == (1, 1)


async def test_run_now_on_schedule_makes_one_job_per_group(server):
    host_id, agent = await online_host(server)
    g1 = await make_group(server, host_id, "etc")
    g2 = await make_group(server, host_id, "home", includes=["/home"])
    schedule = await make_schedule(server, host_id, [g1["id"], g2["id"]], manual=True, cron=None)
    status, body = await server.call("POST", f"/hosts/{host_id}/schedules/{schedule['id']}/run", role="operator")
    assert status == 202 and set(body) == {"jobs"}
    jobs = body["jobs"]
    assert sorted(j["source_group_id"] for j in jobs) == sorted([g1["id"], g2["id"]])
    assert all(j["kind"] == "backup" and j["schedule_id"] == schedule["id"] for j in jobs)
    assert all(j["actor_kind"] == "user" and j["state"] == "dispatched" for j in jobs)
    runs = [await agent.expect("command.run"), await agent.expect("command.run")]
    assert {r.payload.job_id for r in runs} == {j["id"] for j in jobs}
    assert {r.payload.params["source_group"]["id"] for r in runs} == {g1["id"], g2["id"]}
    status, _ = await server.call("POST", f"/hosts/{host_id}/schedules/{schedule['id']}/run", role="viewer")
    assert status == 403
    status, _ = await server.call("POST", f"/hosts/{host_id}/schedules/nope/run", role="operator")
    assert status == 404


async def test_run_now_on_group(server):
    host_id, _ = await server.enroll()
    group = await make_group(server, host_id)
    status, body = await server.call("POST", f"/hosts/{host_id}/source-groups/{group['id']}/run", role="operator")
    assert status == 202 and body["job"]["id"] == body["id"], "the job, also under 'job'"
    job = body["job"]
    assert job["kind"] == "backup" and job["source_group_id"] == group["id"] and job["state"] == "queued"
    assert job["host_id"] == host_id and job["actor_kind"] == "user"
    other, _ = await server.enroll("other")
    status, _ = await server.call("POST", f"/hosts/{other}/source-groups/{group['id']}/run", role="operator")
    assert status == 404


async def test_a_burst_of_acks_is_applied_in_order_and_none_is_lost(server):
    """schedule.ack is written by group commit without a waiter per frame: a burst of acks
    ends at the last one, operators see them in order, and a later frame of the same socket
    is handled only after them."""
    host_id, agent = await online_host(server)
    group = await make_group(server, host_id)
    for _ in range(5):
        await server.call("PUT", f"/hosts/{host_id}/source-groups/{group['id']}", role="operator",
                          json={"name": "etc", "includes": ["/etc"]})
    version = (await versions(server, host_id))[0]
    assert version == 6
    ev = await server.http.ws_connect(server.api("/events"), headers=server.auth("viewer"))
    for v in range(1, version + 1):
        await agent.send(p.ScheduleAck(version=v))
    await barrier(agent)  # answered only once every ack before it is stored
    assert await versions(server, host_id) == (6, 6)
    applied = []
    while not applied or applied[-1] < version:
        msg = await ev.receive_json(timeout=5)
        if msg["type"] == "schedule.updated" and msg["payload"].get("applied_version") is not None:
            applied.append(msg["payload"]["applied_version"])
    assert applied == sorted(applied) and applied[-1] == 6
    await ev.close()
    await agent.close()
