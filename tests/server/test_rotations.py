"""Key rotation's state machine on a real server with a protocol-level agent: the phases in
order, the new password only in command.run and config.update (never a job record, the audit
or an answer), a lost phase run again with the same password, a cancelled add rolled back,
the admin slot rotated with the primary, fleet-wide starts."""

from __future__ import annotations

from rm_core import protocol as p
from rm_server.keys import ROTATIONS
from tests.conftest import TestAgent, wait_for
from tests.server.server_helpers import finished, job, online_host, started

FEATURES = ["query", "copy", "rotate_key"]
OLD = "the old repository password"
OLD_ID, NEW_ID = "0a" * 32, "1b" * 32


async def _host(server, name: str = "web-1", admin: bool = True):
    host_id, agent = await online_host(server, name, features=FEATURES)
    status, _ = await server.call("PUT", f"/hosts/{host_id}/repo", json={"url": "/srv/restic", "password": OLD})
    assert status == 200
    if admin:
        status, _ = await server.call("PUT", f"/hosts/{host_id}/repo/admin-credentials",
                                      json={"url": "rest:http://nas:8000/x/", "password": OLD, "rest_user": "adm",
                                            "rest_password": "admin-http-secret"})
        assert status == 200
    return host_id, agent


async def _command(agent, kind: str = "rotate_key") -> p.CommandRun:
    while True:
        env = await agent.expect("command.run")
        if env.payload.kind == kind:
            return env.payload


async def _finish(agent, server, job_id: str, state: str = "succeeded", **summary) -> None:
    await agent.send(started(job_id, kind="rotate_key"))
    await agent.send(finished(job_id, 2, state=state, exit_code=0 if state == "succeeded" else 1,
                              summary=summary or None, error=None if state == "succeeded" else "restic failed"))
    await agent.expect("ack")
    await agent.expect("ack")


async def _rotation(server, host_id: str) -> dict:
    status, body = await server.call("GET", f"/hosts/{host_id}/repo/rotate-key", role="viewer")
    assert status == 200, body
    return body


async def test_the_phases_in_order_and_the_password_only_where_it_goes(server):
    host_id, agent = await _host(server)
    status, before = await server.call("GET", f"/hosts/{host_id}/repo", role="viewer")
    status, body = await server.call("POST", f"/hosts/{host_id}/repo/rotate-key", role="operator", json={})
    assert status == 202 and body["state"] == "adding" and body["job"]["kind"] == "rotate_key", body
    add = await _command(agent)
    assert add.params["phase"] == "add" and len(add.params["new_password"]) >= 32, add.params
    new = add.params["new_password"]
    assert "new_password" not in (await job(server, add.job_id))["params"]

    status, again = await server.call("POST", f"/hosts/{host_id}/repo/rotate-key", role="operator", json={})
    assert status == 409 and again["error"]["details"]["state"] == "adding", again

    await _finish(agent, server, add.job_id, old_key_id=OLD_ID, new_key_id=NEW_ID, verified=True)
    update = await agent.expect("config.update")
    slots = {c.slot: c for c in update.payload.credentials}
    assert slots["repo"].password == new and slots["admin"].password == new, "both slots hold the new password"
    assert slots["admin"].rest_password == "admin-http-secret", "the admin's HTTP credentials are kept"
    remove = await _command(agent)
    assert remove.params == {"rotation_id": body["id"], "phase": "remove", "admin": True,
                             "old_key_id": OLD_ID, "new_key_id": NEW_ID}, remove.params
    assert (await _rotation(server, host_id))["state"] == "committed"
    status, after = await server.call("GET", f"/hosts/{host_id}/repo", role="viewer")
    assert after["key_fingerprint"] != before["key_fingerprint"]

    await _finish(agent, server, remove.job_id, removed_key_id=OLD_ID, keys=1)
    await wait_for(lambda: _state_is(server, host_id, "done"), what="rotation done")
    rot = await _rotation(server, host_id)
    assert rot["old_key_id"] == OLD_ID and rot["new_key_id"] == NEW_ID and rot["error"] is None
    _, audit = await server.call("GET", "/audit?limit=200")
    assert new not in str(audit) and OLD not in str(audit)
    assert {"repo.rotate_key", "repo.rotate_key_committed", "repo.rotate_key_done"} <= {e["action"] for e in audit["entries"]}
    for path in server.data_dir.iterdir():
        if path.is_file():
            assert new.encode() not in path.read_bytes(), path
    await agent.close()


async def _state_is(server, host_id: str, state: str) -> bool:
    return (await _rotation(server, host_id))["state"] == state


async def test_lost_phases_run_again_and_a_cancelled_add_rolls_back(server):
    host_id, agent = await _host(server, admin=False)
    status, body = await server.call("POST", f"/hosts/{host_id}/repo/rotate-key", role="operator", json={})
    add = await _command(agent)
    await agent.send(started(add.job_id, kind="rotate_key"))
    await agent.expect("ack")
    # the agent dies with the add running: on its next hello the job is lost and runs again
    await agent.close()
    agent2 = TestAgent(server, agent.token)
    await agent2.connect(features=FEATURES)
    retry = await _command(agent2)
    assert retry.job_id != add.job_id and retry.params["phase"] == "add"
    assert retry.params["new_password"] == add.params["new_password"], "the same new password: its key is found"
    assert (await job(server, add.job_id))["state"] == "lost"
    assert (await _rotation(server, host_id))["attempts"] == 2

    # an operator cancels the add: the rotation rolls back (the abandoned key is removed)
    status, _ = await server.call("POST", f"/jobs/{retry.job_id}/cancel", role="operator")
    assert status == 202
    cancel = await agent2.expect("command.cancel")
    await agent2.send(started(retry.job_id, kind="rotate_key"))
    await agent2.send(finished(retry.job_id, 2, state="cancelled", exit_code=130, error="cancelled by request"))
    await agent2.expect("ack")
    await agent2.expect("ack")
    rollback = await _command(agent2)
    assert rollback.params["phase"] == "rollback" and rollback.params["new_password"] == add.params["new_password"]
    await _finish(agent2, server, rollback.job_id, removed_key_id=NEW_ID)
    await wait_for(lambda: _state_is(server, host_id, "rolled_back"), what="rolled back")
    assert cancel.payload.job_id == retry.job_id
    # nothing changed: the agent still gets the old password, and a new rotation may start
    status, body = await server.call("POST", f"/hosts/{host_id}/repo/rotate-key", role="operator", json={})
    assert status == 202, body
    add3 = await _command(agent2)
    assert add3.params["new_password"] != add.params["new_password"]
    await agent2.close()


async def test_a_server_that_dies_between_steps_goes_on_from_the_row(server):
    """The state machine's memory is the rotation row and its job: drop the in-memory part
    (as a restart does) and resume() does the next thing at each point."""
    host_id, agent = await _host(server, admin=False)
    rotations = server.app[ROTATIONS]
    _, body = await server.call("POST", f"/hosts/{host_id}/repo/rotate-key", role="operator", json={})
    add = await _command(agent)
    await _finish(agent, server, add.job_id, old_key_id=OLD_ID, new_key_id=NEW_ID)
    await agent.expect("config.update")
    remove = await _command(agent)
    # a restart while the remove is out: the resume finds it running and waits
    rotations._hosts.clear()
    await rotations.resume()
    assert (await _rotation(server, host_id))["job_id"] == remove.job_id
    await _finish(agent, server, remove.job_id, state="failed")  # restic refused: tried again
    retry = await _command(agent)
    assert retry.params["phase"] == "remove" and retry.job_id != remove.job_id
    await _finish(agent, server, retry.job_id, removed_key_id=OLD_ID, keys=1)
    await wait_for(lambda: _state_is(server, host_id, "done"), what="done")
    await agent.close()


async def test_refusals_and_the_fleet(server):
    old_id, old = await online_host(server, "old-agent")  # no features
    status, _ = await server.call("PUT", f"/hosts/{old_id}/repo", json={"url": "/r", "password": OLD})
    status, body = await server.call("POST", f"/hosts/{old_id}/repo/rotate-key", role="operator", json={})
    assert status == 409 and body["error"]["code"] == "agent_too_old", body
    bare_id, bare = await online_host(server, "no-repo", features=FEATURES)
    status, body = await server.call("POST", f"/hosts/{bare_id}/repo/rotate-key", role="operator",
                                     json={"repo": "copy"})
    assert status == 409 and "PUT /hosts/{id}/repo/copy" in body["error"]["message"], body
    status, body = await server.call("POST", f"/hosts/{bare_id}/repo/rotate-key", role="viewer", json={})
    assert status == 403
    status, body = await server.call("POST", f"/hosts/{bare_id}/repo/rotate-key", role="operator",
                                     json={"repo": "tertiary"})
    assert status == 400 and body["error"]["details"]["field"] == "repo", body
    status, body = await server.call("POST", f"/hosts/{bare_id}/jobs", role="operator", json={"kind": "rotate_key"})
    assert status == 400 and "rotate-key" in body["error"]["message"], body
    status, body = await server.call("GET", f"/hosts/{bare_id}/repo/rotate-key", role="viewer")
    assert status == 404

    a_id, a = await _host(server, "a", admin=False)
    b_id, b = await _host(server, "b", admin=False)
    status, body = await server.call("POST", "/fleet/rotate-key", role="operator",
                                     json={"hosts": {"ids": [a_id, b_id, old_id, bare_id]}, "keep_old_key": True})
    assert status == 202, body
    assert sorted(r["host_id"] for r in body["started"]) == sorted([a_id, b_id])
    assert {s["host_id"] for s in body["skipped"]} == {old_id, bare_id}
    for agent in (a, b):
        add = await _command(agent)
        await _finish(agent, server, add.job_id, old_key_id=OLD_ID, new_key_id=NEW_ID)
    for host in (a_id, b_id):
        await wait_for(lambda h=host: _state_is(server, h, "done"), what="kept-old rotation done")
    for agent in (old, bare, a, b):
        await agent.close()


async def test_a_finished_add_stored_by_a_server_that_then_died_is_committed_on_resume(server):
    """The window between storing the add's job.finished and committing: the store has the
    succeeded job (written here without the hooks that follow it, as a server killed right
    after its commit would leave it); resume() — which runs at start — commits and goes on."""
    host_id, agent = await _host(server, admin=False)
    rotations = server.app[ROTATIONS]
    await server.call("POST", f"/hosts/{host_id}/repo/rotate-key", role="operator", json={})
    add = await _command(agent)
    await server.store.jobs.apply_started(host_id, started(add.job_id, kind="rotate_key"), True)
    await server.store.jobs.apply_finished(host_id, finished(add.job_id, 2, summary={
        "old_key_id": OLD_ID, "new_key_id": NEW_ID, "verified": True}))
    assert (await _rotation(server, host_id))["state"] == "adding"
    rotations._hosts.clear()
    await rotations.resume()
    assert (await _rotation(server, host_id))["state"] == "committed"
    update = await agent.expect("config.update")
    assert update.payload.credentials[0].password == add.params["new_password"]
    remove = await _command(agent)
    assert remove.params["phase"] == "remove" and remove.params["old_key_id"] == OLD_ID
    await rotations.resume()  # a second look changes nothing: the remove is out
    assert (await _rotation(server, host_id))["job_id"] == remove.job_id
    await agent.close()
