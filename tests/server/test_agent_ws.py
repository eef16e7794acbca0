"""The agent WebSocket: hello phase, version gate, newest wins, liveness."""

import asyncio
import threading

import aiohttp

from rm_core import protocol as p
from rm_server.keys import AGENTS, CONFIG, HOSTS, STORE
from rm_server.store.lanes import LaneName
from tests.conftest import TestAgent, wait_for


async def host(server, host_id):
    status, body = await server.call("GET", f"/hosts/{host_id}")
    assert status == 200
    return body


async def test_enroll_then_hello_marks_online_and_pushes_schedule_first(server):
    host_id, token = await server.enroll()
    assert (await host(server, host_id))["status"] == "pending"
    agent = TestAgent(server, token)
    ok = await agent.connect()
    assert ok.type == "hello.ok" and ok.payload.protocol_version == 1
    first = await agent.recv()
    assert first.type == "schedule.set" and first.payload.schedules == []
    assert (await agent.recv()).type == "config.update"
    h = await host(server, host_id)
    assert h["status"] == "online" and h["restic_version"] == "0.14.0"
    await agent.close()
    await wait_for(lambda: host(server, host_id), what="host listed")
    async def offline():
        return (await host(server, host_id))["status"] == "offline"
    await wait_for(offline, what="offline after close")


async def test_enrollment_token_single_use_and_expiry(server):
    status, tok = await server.call("POST", "/enrollment-tokens", json={"ttl_seconds": 600})
    assert status == 201 and tok["install_command"].count(tok["token"]) == 1
    body = {"token": tok["token"], "hostname": "a"}
    status, _ = await server.call("POST", "/agents/enroll", role=None, json=body)
    assert status == 201
    status, err = await server.call("POST", "/agents/enroll", role=None, json=body)
    assert status == 401 and err["error"]["code"] == "invalid_token"
    status, tok = await server.call("POST", "/enrollment-tokens", json={"ttl_seconds": 600, "max_uses": 5})
    server.clock.advance(601)
    status, err = await server.call("POST", "/agents/enroll", role=None, json={"token": tok["token"], "hostname": "b"})
    assert status == 401
    status, listed = await server.call("GET", "/enrollment-tokens")
    assert all("token" not in t for t in listed["tokens"]), "tokens are shown once only"


async def test_nothing_reaches_an_agent_before_its_hello_ok(server):
    """The connection is reachable while its hello is being written; a command sent then
    (CI saw an `ls` query) must follow hello.ok, or the agent drops the connection as a
    broken handshake and the host reads offline. The writer lane is held so the hello's
    write cannot finish before the command is sent."""
    host_id, token = await server.enroll()
    gate = threading.Event()
    writer = server.app[STORE].db.lane(LaneName.WRITER)
    held = asyncio.ensure_future(writer.call(lambda _conn: gate.wait(10)))
    try:
        agent = TestAgent(server, token)
        await agent.connect(hello=False)
        await agent.send(p.Hello(protocol_version=1, agent_version="test", hostname="web-1", os="linux",
                                 arch="x86_64", restic_version="0.14.0"))
        hub = server.app[AGENTS]
        await wait_for(lambda: host_id in hub.connections, what="the connection registered")
        assert hub.send(host_id, p.CommandCancel(job_id="01J00000000000000000000000"))
    finally:
        gate.set()
        await held
    first = await agent.recv()
    assert first is not None and first.type == "hello.ok", first
    assert (await agent.expect("command.cancel")).payload.job_id == "01J00000000000000000000000"
    await agent.close()


async def test_protocol_too_old_is_refused(server):
    _, token = await server.enroll()
    agent = TestAgent(server, token)
    reply = await agent.connect(protocol_version=0)
    assert reply.type == "error" and reply.payload.code == "protocol_too_old"
    assert (await agent.ws.receive()).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_hello_deadline(server):
    server.app[CONFIG].hello_timeout = 0.2
    _, token = await server.enroll()
    agent = TestAgent(server, token)
    await agent.connect(hello=False)
    env = await agent.recv(timeout=5)
    assert env.type == "error" and env.payload.code == "hello_timeout"


async def test_first_frame_must_be_hello(server):
    _, token = await server.enroll()
    agent = TestAgent(server, token)
    await agent.connect(hello=False)
    await agent.send(p.Heartbeat())
    env = await agent.recv()
    assert env.type == "error" and env.payload.code == "hello_required"


async def test_bad_token_is_refused_before_upgrade(server):
    agent = TestAgent(server, "rma_nope")
    try:
        await agent.connect()
        raise AssertionError("upgrade should have failed")
    except aiohttp.WSServerHandshakeError as exc:
        assert exc.status == 401


async def test_newest_connection_wins(server):
    host_id, token = await server.enroll()
    a, b = TestAgent(server, token), TestAgent(server, token)
    await a.connect()
    await b.connect()
    msg = await a.ws.receive(timeout=5)
    while msg.type == aiohttp.WSMsgType.TEXT:
        msg = await a.ws.receive(timeout=5)
    # The close frame's own code: aiohttp may drop the transport before the client's reply,
    # so the client-side close_code can read 1006 although 4000 arrived.
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4000, (msg.type, msg.data)
    assert server.hub.connections[host_id].ws is not None
    assert (await host(server, host_id))["status"] == "online", "the older socket closing must not mark offline"
    await b.send(p.Heartbeat())
    await b.close()


async def test_unknown_and_malformed_frames_get_errors_not_a_drop(server):
    _, token = await server.enroll()
    agent = TestAgent(server, token)
    await agent.connect()
    await agent.ws.send_str('{"type": "from.the.future", "id": "x1", "payload": {}}')
    err = await agent.expect("error")
    assert err.payload.code == "unknown_type" and err.ref == "x1"
    await agent.ws.send_str("{{{")
    err = await agent.expect("error")
    assert err.payload.code == "malformed"
    await agent.send(p.Heartbeat())
    assert not agent.ws.closed
    await agent.close()


async def test_sweeper_marks_silent_agents_offline(server):
    host_id, token = await server.enroll()
    agent = TestAgent(server, token)
    await agent.connect()
    server.clock.advance(60)
    assert await server.app[HOSTS].sweep() == []
    await agent.send(p.Heartbeat())
    await wait_for(lambda: server.hub.connections[host_id].last_seen == server.clock.now, what="heartbeat seen")
    server.clock.advance(89)
    assert await server.app[HOSTS].sweep() == []
    server.clock.advance(2)
    assert await server.app[HOSTS].sweep() == [host_id]
    assert (await host(server, host_id))["status"] == "offline"
    await agent.close()


async def test_delete_host_revokes_token(server):
    host_id, token = await server.enroll()
    agent = TestAgent(server, token)
    await agent.connect()
    status, _ = await server.call("DELETE", f"/hosts/{host_id}")
    assert status == 204
    status, _ = await server.call("GET", f"/hosts/{host_id}")
    assert status == 404
    again = TestAgent(server, token)
    try:
        await again.connect()
        raise AssertionError("revoked token accepted")
    except aiohttp.WSServerHandshakeError as exc:
        assert exc.status == 401


async def test_hostile_frames_get_errors_and_change_nothing(server):
    host_id, token = await server.enroll()
    agent = TestAgent(server, token)
    await agent.connect()
    frames = [
        '{"type": "job.log", "payload": {"job_id": "x", "lines": []}}',
        '{"type": "job.log", "payload": {"job_id": "x", "lines": [{"seq": 0, "ts": "now", "text": 1}]}}',
        '{"type": "job.finished", "payload": {"job_id": "nope", "seq": 2, "state": "succeeded"}}',
        '{"type": "job.finished", "payload": {"job_id": "nope", "seq": 2, "state": "exploded"}}',
        '{"type": "job.started", "payload": {"job_id": "j", "started_at": "2026-01-01T00:00:00Z", "kind": "backup",'
        ' "source_group_id": "not-mine"}}',
        '{"type": "snapshots.report", "payload": {"snapshots": "all"}}',
        '{"type": "schedule.ack", "payload": {"version": -1}}',
        '{"type": "schedule.fire", "payload": {"schedule_id": "nope", "scheduled_at": "2026-01-01T00:00:00Z",'
        ' "fire_id": "f"}}',
        '[1, 2, 3]',
        '"hello"',
    ]
    for frame in frames:
        await agent.ws.send_str(frame)
        err = await agent.expect("error")
        assert err.payload.code in ("malformed", "unknown_job", "unknown_schedule"), (frame, err.payload)
    status, jobs = await server.call("GET", f"/jobs?host_id={host_id}")
    assert jobs["jobs"] == []
    status, host = await server.call("GET", f"/hosts/{host_id}")
    assert host["status"] == "online" and host["applied_schedule_version"] == 0
    await agent.close()
