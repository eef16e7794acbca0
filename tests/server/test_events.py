"""The operator events WebSocket: fan-out of changes, job log backlog + live tail, slow subscribers."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from rm_server.keys import CONFIG, EVENTS
from tests.conftest import wait_for
from tests.server.server_helpers import finished, log, make_group, online_host, started


class Events:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict] = []

    async def next(self, type_: str, pred=lambda f: True, timeout: float = 5.0) -> dict:
        for f in self.frames:
            if f["type"] == type_ and pred(f) and not f.get("_seen"):
                f["_seen"] = True
                return f
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no {type_} event within {timeout}s; got {[f['type'] for f in self.frames]}")
            msg = await self.ws.receive(timeout=remaining)
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"events socket closed ({msg.type})")
            frame = json.loads(msg.data)
            assert set(frame) >= {"type", "ts", "payload"}
            self.frames.append(frame)
            if frame["type"] == type_ and pred(frame):
                frame["_seen"] = True
                return frame


async def events(server, role: str = "viewer") -> Events:
    ws = await server.http.ws_connect(server.api("/events"), headers=server.auth(role))
    await wait_for(lambda: len(server.app[EVENTS].subscribers) >= 1, what="subscriber registered")
    return Events(ws)


async def test_events_need_a_token(server):
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await server.http.ws_connect(server.api("/events"))
    assert info.value.status == 401


async def test_host_job_and_audit_events(server):
    ev = await events(server)
    host_id, agent = await online_host(server)
    frame = await ev.next("host.updated", lambda f: f["payload"]["id"] == host_id and f["payload"]["status"] == "online")
    assert frame["payload"]["hostname"] == "web-1"

    status, job = await server.call("POST", f"/hosts/{host_id}/jobs", role="operator", json={"kind": "check"})
    await ev.next("job.updated", lambda f: f["payload"]["id"] == job["id"] and f["payload"]["state"] == "queued")
    await ev.next("job.updated", lambda f: f["payload"]["id"] == job["id"] and f["payload"]["state"] == "dispatched")
    audit = await ev.next("audit.appended", lambda f: f["payload"]["action"] == "job.create")
    assert audit["payload"]["target"] == job["id"]
    await agent.send(started(job["id"], kind="check"))
    await ev.next("job.updated", lambda f: f["payload"]["id"] == job["id"] and f["payload"]["state"] == "running")
    await agent.send(finished(job["id"], 2, state="failed", exit_code=1, error="boom"))
    await ev.next("job.updated", lambda f: f["payload"]["id"] == job["id"] and f["payload"]["state"] == "failed")

    await make_group(server, host_id)
    sched = await ev.next("schedule.updated", lambda f: f["payload"]["host_id"] == host_id)
    assert sched["payload"]["version"] == 1

    await agent.close()
    await ev.next("host.updated", lambda f: f["payload"]["id"] == host_id and f["payload"]["status"] == "offline")
    await ev.ws.close()


async def test_subscribe_backlog_then_live_tail_without_gap_or_duplicate(server):
    host_id, agent = await online_host(server)
    status, job = await server.call("POST", f"/hosts/{host_id}/jobs", role="operator", json={"kind": "check"})
    job_id = job["id"]
    await agent.expect("command.run")
    await agent.send(started(job_id, kind="check"))
    await agent.expect("ack")

    last_seq = 301
    sent = asyncio.Event()
    progress = {"seq": 1}

    async def chatter():
        seq = 2
        while seq <= last_seq:
            batch = range(seq, min(seq + 7, last_seq + 1))
            await agent.send(log(job_id, batch))
            await agent.expect("ack")
            seq = batch[-1] + 1
            progress["seq"] = seq
        await agent.send(finished(job_id, last_seq + 1))
        await agent.expect("ack")
        sent.set()

    writer = asyncio.create_task(chatter())
    await wait_for(lambda: progress["seq"] > 60, what="some backlog")
    ev = await events(server)
    await ev.ws.send_json({"type": "subscribe", "job_id": job_id})
    seqs: list[int] = []
    while not seqs or seqs[-1] < last_seq:
        frame = await ev.next("job.log", lambda f: f["payload"]["job_id"] == job_id)
        seqs += [ln["seq"] for ln in frame["payload"]["lines"]]
    await writer
    assert sent.is_set()
    assert progress["seq"] > 0
    assert seqs == list(range(2, last_seq + 1)), "gap or duplicate in backlog + live tail"
    # Unsubscribed, no more lines for that job.
    await ev.ws.send_json({"type": "unsubscribe", "job_id": job_id})
    await ev.ws.send_json({"type": "subscribe", "job_id": "nope"})
    err = await ev.next("error")
    assert err["payload"]["code"] == "not_found"
    await ev.ws.close()


async def test_slow_subscriber_is_dropped_without_delaying_others(server):
    server.app[CONFIG].operator_queue_size = 4
    hub = server.app[EVENTS]
    slow = await server.http.ws_connect(server.api("/events"), headers=server.auth("viewer"))
    fast_ws = await server.http.ws_connect(server.api("/events"), headers=server.auth("viewer"))
    await wait_for(lambda: len(hub.subscribers) == 2, what="two subscribers")
    fast = Events(fast_ws)
    big = "x" * 256 * 1024
    loop = asyncio.get_running_loop()
    for i in range(400):
        hub.publish("job.progress", {"job_id": f"j{i}", "pad": big})
        started_at = loop.time()
        frame = await fast.next("job.progress", lambda f, i=i: f["payload"]["job_id"] == f"j{i}")
        assert loop.time() - started_at < 2.0  # the fast one never waits on the slow one
        fast.frames.remove(frame)
        if len(hub.subscribers) == 1:
            break
    assert len(hub.subscribers) == 1, "the slow subscriber was never dropped"
    # The fast one still works.
    hub.publish("job.progress", {"job_id": "after"})
    await fast.next("job.progress", lambda f: f["payload"]["job_id"] == "after")
    await fast_ws.close()
    await slow.close()


async def test_a_reconnect_storm_ends_with_every_hosts_true_state(server):
    """Agents connect, drop and reconnect at once: each host's last host.updated says what
    the server's host list says, and every host got its events in the order they happened."""
    from tests.conftest import TestAgent

    ev = await events(server)
    hosts = [await server.enroll(f"storm-{i}") for i in range(24)]
    ids = {h for h, _ in hosts}

    async def connect(token):
        agent = TestAgent(server, token)
        assert (await agent.connect()).type == "hello.ok"
        return agent

    agents = await asyncio.gather(*(connect(tok) for _, tok in hosts))
    await asyncio.gather(*(a.close() for a in agents))
    agents = await asyncio.gather(*(connect(tok) for _, tok in hosts))

    last: dict[str, str] = {}

    def settled() -> bool:
        for f in ev.frames:
            if f["type"] == "host.updated" and f["payload"]["id"] in ids:
                last[f["payload"]["id"]] = f["payload"]["status"]
        return len(last) == len(ids) and all(s == "online" for s in last.values())

    async def read_until_settled():
        while not settled():
            msg = await ev.ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            ev.frames.append(json.loads(msg.data))

    await read_until_settled()
    # A marker after everything: events are published in order, so nothing older can follow it.
    status, _ = await server.call("PATCH", f"/hosts/{hosts[0][0]}", role="operator", json={"hostname": "marker"})
    assert status == 200
    await ev.next("host.updated", lambda f: f["payload"].get("hostname") == "marker")
    settled()
    status, listed = await server.call("GET", "/hosts")
    truth = {h["id"]: h["status"] for h in listed["hosts"] if h["id"] in ids}
    assert last == truth == {h: "online" for h in ids}
    await asyncio.gather(*(a.close() for a in agents))


async def test_a_hosts_newer_state_replaces_its_queued_one(server):
    """A reconnect storm sends two host.updated per agent faster than a console reads: while
    one waits in the queue, a newer one for the same host takes its place, so the console
    gets every host's newest state in one frame each and is not closed as too slow."""
    server.app[CONFIG].operator_queue_size = 4
    hub = server.app[EVENTS]
    ws = await server.http.ws_connect(server.api("/events"), headers=server.auth("viewer"))
    await wait_for(lambda: len(hub.subscribers) == 1, what="the subscriber")
    # published in one go, as a storm's batch is: the writer gets no turn in between
    for n in range(50):
        for host in ("h-a", "h-b"):
            hub.publish("host.updated", {"id": host, "hostname": host, "n": n})
        hub.publish("job.progress", {"job_id": "j-1", "percent_done": n / 50})
    hub.publish("job.updated", {"id": "j-1", "state": "succeeded"})  # not coalesced, stays last
    got = []
    while len(got) < 4:
        msg = await ws.receive_json(timeout=10)
        got.append((msg["type"], msg["payload"].get("id") or msg["payload"].get("job_id"),
                    msg["payload"].get("n", msg["payload"].get("percent_done"))))
    assert got == [("host.updated", "h-a", 49), ("host.updated", "h-b", 49), ("job.progress", "j-1", 0.98),
                   ("job.updated", "j-1", None)], got
    assert len(hub.subscribers) == 1, "the console was dropped as too slow"
    (sub,) = hub.subscribers
    assert sub.bytes == 0 and not sub.latest
    # once sent, the next change of a host is a frame of its own again
    hub.publish("host.updated", {"id": "h-a", "hostname": "h-a", "n": 50})
    msg = await ws.receive_json(timeout=10)
    assert (msg["type"], msg["payload"]["n"]) == ("host.updated", 50)
    await ws.close()
