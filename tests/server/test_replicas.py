"""Two replicas of rm-server on one PostgreSQL database (issue 19): whatever an operator does
on one reaches the agent the other holds, and every operator sees every event.

Both replicas are real servers on port 0 in this process, each with its own data dir and the
same master key file; the database is a real throwaway PostgreSQL cluster's (tests/pgcluster.py),
whichever backend the rest of the run uses."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rm_core import protocol as p
from rm_core.ids import new_id
from rm_server.app import WrongMasterKey
from rm_server.keys import HOSTS, RELAY
from tests.conftest import FakeClock, Server, TestAgent, sign_in_roles, start_server, wait_for
from tests.server.server_helpers import finished, log, started

pytestmark = pytest.mark.e2e


async def replica(base: Path, name: str, url: str, key: Path | None) -> tuple[Any, Server]:
    clock = FakeClock()
    runner, base_url, app = await start_server(base / name, clock, database_url=url, master_key_file=key,
                                               alert_group_wait=0.3)
    http = aiohttp.ClientSession()
    return runner, Server(base_url, app, http, base / name / "data", clock)


@pytest.fixture
async def replicas(tmp_path: Path, pg_cluster: Any) -> AsyncIterator[tuple[Server, Server]]:
    url = pg_cluster.create_database(f"r{new_id().lower()}")
    key = tmp_path / "master.key"
    made = []
    try:
        made.append(await replica(tmp_path, "a", url, key))
        made.append(await replica(tmp_path, "b", url, key))
        a, b = made[0][1], made[1][1]
        await sign_in_roles(a)
        b.tokens.update(a.tokens)  # sessions are rows: any replica takes them
        yield a, b
    finally:
        for runner, srv in made:
            await srv.http.close()
            await runner.cleanup()


def terminate(srv: Server, replica_id: str) -> None:
    """End a replica's coordination sessions from the database side, as a killed process's end."""
    import psycopg

    from rm_server.keys import CONFIG

    with psycopg.connect(srv.app[CONFIG].database_url, autocommit=True) as conn:
        # the 5 s: wait until the session is gone (and its advisory locks with it)
        ended = conn.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                             " WHERE application_name LIKE %s", (f"% cluster {replica_id}",)).fetchall()
    assert ended, "no session of that replica"


async def agent_on(srv: Server, token: str) -> TestAgent:
    agent = TestAgent(srv, token)
    assert (await agent.connect(features=["query"])).type == "hello.ok"
    await agent.expect("schedule.set")
    await agent.expect("config.update")
    return agent


async def test_a_command_made_on_one_replica_reaches_the_agent_the_other_holds(replicas) -> None:
    a, b = replicas
    host_id, token = await a.enroll("web-1")
    agent = await agent_on(b, token)
    # run-now on A: B holds the agent and dispatches
    status, job = await a.call("POST", f"/hosts/{host_id}/jobs", role="operator", json={"kind": "check"})
    assert status == 202, job
    run = await agent.expect("command.run")
    assert run.payload.job_id == job["id"]
    # cancel on A reaches it too (the job is dispatched, not queued)
    status, body = await a.call("POST", f"/jobs/{job['id']}/cancel", role="operator")
    assert status == 202, body
    assert (await agent.expect("command.cancel")).payload.job_id == job["id"]
    # a schedule change on A is pushed by B
    status, group = await a.call("POST", f"/hosts/{host_id}/source-groups", role="operator",
                                 json={"name": "etc", "includes": ["/etc"]})
    assert status == 201, group
    pushed = await agent.expect("schedule.set")
    assert [g["name"] for s in pushed.payload.schedules for g in s.source_groups] == [] and pushed.payload.version >= 1
    # credentials on A: B sends the config.update
    status, body = await a.call("PUT", f"/hosts/{host_id}/repo", role="operator",
                                json={"url": "/srv/restic/web-1", "password": "correct horse battery"})
    assert status == 200, body
    update = await agent.expect("config.update")
    assert [c.slot for c in update.payload.credentials] == ["repo"]


async def test_every_operator_sees_every_event_and_log_line_whichever_replica(replicas) -> None:
    a, b = replicas
    host_id, token = await a.enroll("web-1")
    agent = await agent_on(b, token)
    ws = await a.http.ws_connect(a.api("/events"), headers=a.auth("viewer"))
    try:
        job_id = new_id()
        await agent.send(started(job_id, kind="check"))
        await agent.expect("ack")
        await ws.send_str(json.dumps({"type": "subscribe", "job_id": job_id}))
        for first in range(2, 202, 20):  # 200 lines in 10 frames, stored by B
            await agent.send(log(job_id, range(first, first + 20)))
            await agent.expect("ack")
        await agent.send(finished(job_id, 202))
        await agent.expect("ack")
        seqs: list[int] = []
        states: list[str] = []
        while not (states and states[-1] == "succeeded" and len(seqs) >= 200):
            msg = await ws.receive_json(timeout=10)
            if msg["type"] == "job.log":
                seqs += [ln["seq"] for ln in msg["payload"]["lines"]]
            elif msg["type"] == "job.updated" and msg["payload"]["id"] == job_id:
                states.append(msg["payload"]["state"])
        assert seqs == list(range(2, 202)), "every line once, in order, no gap"
        assert states[0] == "running" and states[-1] == "succeeded"
    finally:
        await ws.close()


async def test_a_live_query_is_answered_by_the_replica_that_holds_the_agent(replicas) -> None:
    a, b = replicas
    host_id, token = await a.enroll("web-1")
    agent = await agent_on(b, token)

    async def answer() -> None:
        env = await agent.expect("query")
        q = env.payload
        await agent.send(p.QueryResult(query_id=q.query_id, seq=0, done=True, info={"path": "/etc"},
                                       items=[{"name": f"f{i}", "type": "file", "size": i, "mtime": None,
                                               "mode": 420} for i in range(300)]))

    answering = asyncio.ensure_future(answer())
    status, body = await a.call("GET", f"/hosts/{host_id}/snapshots/abcdef01/ls?path=/etc", role="viewer")
    await answering
    assert status == 200, body
    assert len(body["entries"]) == 300 and body["entries"][0]["name"] == "f0"


async def test_a_newer_connection_on_another_replica_wins(replicas) -> None:
    a, b = replicas
    host_id, token = await a.enroll("web-1")
    old = await agent_on(b, token)
    new = await agent_on(a, token)
    msg = await old.ws.receive(timeout=10)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4000
    status, host = await a.call("GET", f"/hosts/{host_id}")
    assert host["status"] == "online"
    await new.close()


async def test_a_dead_replicas_hosts_go_offline_and_another_leads(replicas) -> None:
    a, b = replicas
    host_id, token = await a.enroll("web-1")
    agent = await agent_on(b, token)  # held: its socket stays open on B (B's sessions die, not the agent)
    coord_a, coord_b = a.app[RELAY].coordination, b.app[RELAY].coordination
    assert await coord_a.lead() and not await coord_b.lead()  # one leader
    # B dies: its coordination sessions end (what kill -9 does); its hosts are nobody's now.
    # B's coordination is closed first: alive in this process, it would open a new session
    # (and be alive again) at its next message, which a killed process never sends.
    coord_b_close = asyncio.ensure_future(coord_b.close())
    terminate(a, coord_b.replica_id)
    await coord_b_close
    alive = await coord_a.live_replicas()
    assert alive == {coord_a.replica_id}
    assert await a.app[HOSTS].sweep_replicas(alive) == [host_id]
    status, host = await a.call("GET", f"/hosts/{host_id}")
    assert host["status"] == "offline"
    # the leader dies: the other takes its place at its next tries (its own session is new)
    terminate(a, coord_a.replica_id)
    await wait_for(coord_b.lead, what="B leads")
    await agent.close()


async def test_a_storm_seen_by_two_replicas_is_one_digest_per_channel(replicas) -> None:
    from rm_core.alerts import AlertEvent, AlertSubject
    from rm_server.keys import ALERTS
    from tests.alert_receivers import json_receiver

    a, b = replicas
    assert a.app[RELAY].coordination.leading and not b.app[RELAY].coordination.leading
    async with json_receiver() as rec:
        status, ch = await a.call("POST", "/notification-channels",
                                  json={"name": "hook", "url": rec.channel_url(), "events": ["backup.failed"]})
        assert status == 201, ch
        for i in range(500):  # half the fleet's failures are seen by each replica
            srv = a if i % 2 else b
            srv.app[ALERTS].raise_event(AlertEvent.backup_failed, AlertSubject(new_id(), f"job {i}"), key=f"j{i}")
        await wait_for(lambda: rec.received, what="a digest")
        await wait_for(lambda: a.app[ALERTS].pending(ch["id"])[0] == 0, what="nothing left to send")
        assert len(rec.received) == 1, rec.received
        assert "500 occurrences" in rec.received[0]["message"]


async def test_a_fleet_policy_on_one_replica_reaches_agents_on_both(replicas) -> None:
    a, b = replicas
    agents = []
    for i, srv in enumerate((a, b, b)):
        _, token = await a.enroll(f"web-{i}")
        agents.append(await agent_on(srv, token))
    status, body = await a.call("PUT", "/fleet/policies/nightly", json={
        "includes": ["/etc"], "retention": {"keep_daily": 7}, "cron": "0 3 * * *", "hosts": {"q": "web"}})
    assert status == 200 and body["hosts"] == 3, body
    for agent in agents:  # one pushed by A itself, two by B
        pushed = await agent.expect("schedule.set", timeout=10)
        assert [s.name for s in pushed.payload.schedules] == ["nightly"]


async def test_two_leaders_in_one_minute_make_one_maintenance_job_per_host_and_kind(replicas) -> None:
    """A leader that lost its lock without knowing yet may tick beside the new one: the jobs
    of one host, kind and minute are made once (jobs_one_per_tick)."""
    from rm_server.keys import MAINTAINER

    a, b = replicas
    host_id, token = await a.enroll("web-1")
    agent = await agent_on(b, token)
    status, _ = await a.call("POST", f"/hosts/{host_id}/source-groups", role="operator",
                             json={"name": "etc", "includes": ["/etc"], "retention": {"keep_daily": 7}})
    await a.call("PUT", f"/hosts/{host_id}/repo", role="operator", json={"url": "/srv/r", "password": "pw-123456"})
    assert (await agent.expect("command.run")).payload.kind == "init"
    b.clock.now = a.clock.now
    cron = f"{(a.clock.now.minute - 1) % 60} * * * *"  # fired within the last hour
    status, body = await a.call("PUT", f"/hosts/{host_id}/maintenance", role="operator", json={
        "forget": {"cron": cron, "enabled": True}, "check": {"cron": cron, "enabled": True}})
    assert status == 200, body
    await asyncio.gather(a.app[MAINTAINER].run_maintenance(), b.app[MAINTAINER].run_maintenance())
    status, jobs = await a.call("GET", "/jobs", params={"host_id": host_id})
    kinds = sorted(j["kind"] for j in jobs["jobs"] if j["kind"] != "init")
    assert kinds == ["check", "forget"], kinds


async def test_failed_sign_ins_count_on_every_replica(replicas) -> None:
    """Spreading password guesses over replicas buys nothing: the 11th in the window is
    refused whichever replica it reaches."""
    a, b = replicas
    for i in range(10):
        srv = (a, b)[i % 2]
        status, _ = await srv.call("POST", "/auth/login", role=None, json={"username": "admin", "password": f"no{i}"})
        assert status == 401
    from rm_server.keys import LIMITER

    def seen(srv: Server) -> int:  # failures the replica counts for this address and name
        return max((len(q) for key, q in srv.app[LIMITER].failures.items() if key.endswith("|admin")), default=0)

    await wait_for(lambda: seen(a) == 10 and seen(b) == 10, what="each replica counts all ten")
    for srv in (a, b):  # without the sharing each would have counted 5 and let this one through
        status, body = await srv.call("POST", "/auth/login", role=None, json={"username": "admin", "password": "x"})
        assert status == 429, body


async def test_a_replica_serves_again_once_its_database_sessions_come_back(replicas) -> None:
    """Every session of the database ended (what a PostgreSQL restart does to a replica): the
    next requests fail, then each lane connects again and the replica serves as before."""
    import psycopg

    from rm_server.keys import CONFIG

    a, _ = replicas
    a.store.ping_fresh = 0  # every probe reads
    with psycopg.connect(a.app[CONFIG].database_url, autocommit=True) as conn:
        ended = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                             " WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall()
    assert len(ended) >= 10  # both replicas' lanes, listeners and locks

    async def healthy() -> bool:
        status, _ = await a.call("GET", f"{a.url}/healthz", role=None)
        return status == 200

    await wait_for(healthy, what="the replica reconnected")
    status, body = await a.call("POST", "/operators", json={"username": "after", "password": "correct horse battery",
                                                            "role": "viewer"})
    assert status == 201, body  # the writer lane too
    status, body = await a.call("GET", "/operators")
    assert "after" in {o["username"] for o in body["operators"]}


async def test_a_replica_with_another_master_key_refuses_to_start(tmp_path: Path, pg_cluster: Any) -> None:
    url = pg_cluster.create_database(f"k{new_id().lower()}")
    runner, srv = await replica(tmp_path, "a", url, tmp_path / "one.key")
    try:
        with pytest.raises(WrongMasterKey, match="master key"):
            await start_server(tmp_path / "b", FakeClock(), database_url=url, master_key_file=tmp_path / "two.key")
    finally:
        await srv.http.close()
        await runner.cleanup()
    shutil.rmtree(tmp_path / "b", ignore_errors=True)


@pytest.fixture
def cluster() -> Any:
    """A PostgreSQL cluster of the test's own, to stop and start: the worker's shared one stays up."""
    from tests.pgcluster import PgCluster

    own = PgCluster().start()
    try:
        yield own
    finally:
        own.stop()


async def test_replicas_ride_out_a_real_postgresql_restart(tmp_path: Path, cluster: Any) -> None:
    """PostgreSQL itself stopped (`pg_ctl stop -m fast`, as for an upgrade or a failover) and
    started again: while it is down every request is a clear 503 and nothing half-written is
    kept; once it is back both replicas serve, write, lead and route through it again."""
    made = []
    try:
        url = cluster.create_database("restart")
        key = tmp_path / "master.key"
        made.append(await replica(tmp_path, "a", url, key))
        made.append(await replica(tmp_path, "b", url, key))
        a, b = made[0][1], made[1][1]
        await sign_in_roles(a)
        b.tokens.update(a.tokens)
        for srv in (a, b):
            srv.store.ping_fresh = 0  # every probe reads

        cluster.halt()
        for srv in (a, b):
            status, body = await srv.call("GET", f"{srv.url}/healthz", role=None)
            assert status == 503 and body["error"]["code"] == "database_unavailable", body
            status, body = await srv.call("POST", "/operators", json={
                "username": f"during-{srv is a}", "password": "correct horse battery", "role": "viewer"})
            assert status == 503 and body["error"]["code"] == "database_unavailable", body
        cluster.resume()

        for srv in (a, b):
            async def healthy(srv: Server = srv) -> bool:
                status, _ = await srv.call("GET", f"{srv.url}/healthz", role=None)
                return status == 200

            await wait_for(healthy, timeout=30, what="the replica serves again")
        status, body = await a.call("POST", "/operators", json={"username": "after", "password": "correct horse battery",
                                                                "role": "viewer"})
        assert status == 201, body
        status, body = await b.call("GET", "/operators")
        assert {o["username"] for o in body["operators"]} >= {"after"}
        assert not {o["username"] for o in body["operators"]} & {"during-True", "during-False"}
        # the coordination sessions came back too: at its first tick one replica leads (the
        # session the lock lived on is gone, and a new one takes it at once), and a command made
        # on A reaches the agent B holds (A's notification through B's listener)
        leads = [await srv.app[RELAY].coordination.lead() for srv in (a, b)]
        assert sorted(leads) == [False, True], leads
        host_id, token = await a.enroll("web-after")
        agent = await agent_on(b, token)
        status, job = await a.call("POST", f"/hosts/{host_id}/jobs", role="operator", json={"kind": "check"})
        assert status == 202, job
        assert (await agent.expect("command.run")).payload.job_id == job["id"]
        await agent.close()
    finally:
        for runner, srv in made:
            await srv.http.close()
            await runner.cleanup()



async def test_an_agent_learns_the_replicas_its_server_names_and_fails_over_to_one(tmp_path: Path, pg_cluster: Any) -> None:
    """An agent enrolled with one URL, before the admin listed every replica (`--agent-url`):
    its config.update names them all; the agent keeps them in agent.json, and when the replica
    it is connected to stops it carries on at the other, which it never had been told of."""
    from rm_agent.agent import Agent
    from rm_agent.config import AgentConfig, load_config, save_config
    from rm_server.keys import CREDENTIALS
    from tests.agent.test_agent_server import AgentClock, Running, host_state

    url = pg_cluster.create_database(f"u{new_id().lower()}")
    key = tmp_path / "master.key"
    runner_a, a = await replica(tmp_path, "a", url, key)
    runner_b, b = await replica(tmp_path, "b", url, key)
    run = None
    try:
        await sign_in_roles(a)
        b.tokens.update(a.tokens)
        both = (a.url, b.url)
        for srv in (a, b):
            srv.app[CREDENTIALS].agent_urls = both  # what `serve --agent-url A --agent-url B` sets
        host_id, token = await a.enroll("web-1")
        cfg_path = tmp_path / "agent" / "agent.json"
        save_config(cfg_path, AgentConfig(server_urls=[a.url], host_id=host_id, agent_token=token))
        agent = Agent(load_config(cfg_path), cfg_path, clock=AgentClock(), hostname="web-1")
        run = Running(agent)
        await wait_for(lambda: load_config(cfg_path).server_urls == list(both), what="agent.json names both")
        assert load_config(cfg_path).server_url == a.url and agent.session.url == a.url

        await a.http.close()
        await runner_a.cleanup()  # A stops: its sockets close, as a replica's do when it dies
        await wait_for(lambda: agent.session.url == b.url and agent.online, 15, "the agent online at B")
        await wait_for(lambda: host_state(b, host_id, "online"), 15, "B sees the host online")
    finally:
        if run is not None:
            await run.close()
        await b.http.close()
        await runner_b.cleanup()
        if not a.http.closed:
            await a.http.close()
            await runner_a.cleanup()


async def test_a_bad_message_from_another_replica_costs_nothing_to_the_rest_of_its_payload(replicas) -> None:
    """Messages arrive a NOTIFY payload at a time (store/cluster.py): one that cannot be handled
    is logged, and the frames after it in the same payload still reach the operators."""
    import psycopg

    from rm_server.keys import CONFIG
    from rm_server.store.cluster import CHANNEL

    a, _ = replicas
    ws = await a.http.ws_connect(a.api("/events"), headers=a.auth("viewer"))
    try:
        frame = json.dumps({"type": "host.updated", "ts": "2026-01-01T00:00:00+00:00", "payload": {"host_id": "h1"}})
        payload = json.dumps({"from": "elsewhere", "m": [{"t": "events"}, {"t": "events", "f": frame, "k": None}]})
        with psycopg.connect(a.app[CONFIG].database_url, autocommit=True) as conn:
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
        got = await ws.receive_json(timeout=10)
        assert got["type"] == "host.updated" and got["payload"] == {"host_id": "h1"}, got
    finally:
        await ws.close()


class Channel:
    """The replicas' NOTIFY channel as the database carries it: what they relay, message by message."""

    def __init__(self, url: str) -> None:
        import psycopg

        from rm_server.store.cluster import CHANNEL

        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute(f"LISTEN {CHANNEL}")

    def read(self) -> list[dict[str, Any]]:
        """Every message relayed since the last read (a NOTIFY of our own marks the end)."""
        from rm_server.store.cluster import CHANNEL

        self.conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, json.dumps({"from": "test", "m": [{"t": "end"}]})))
        out: list[dict[str, Any]] = []
        for note in self.conn.notifies(timeout=10):
            envelope = json.loads(note.payload)
            if envelope.get("from") == "test":
                return out
            out += envelope.get("m", [])
        raise AssertionError("the channel's own marker never came back")

    def close(self) -> None:
        self.conn.close()


def publish(srv: Server, host: str) -> None:
    from rm_server.keys import EVENTS

    srv.app[EVENTS].publish("host.updated", {"id": host, "hostname": host, "status": "online"})


async def host_event(ws: Any) -> str:
    """The id of the next host.updated frame on an events socket (other frames passed over)."""
    while True:
        got = await ws.receive_json(timeout=10)
        if got["type"] == "host.updated":
            return str(got["payload"]["id"])


async def test_events_are_relayed_only_while_another_replica_has_operators_watching(replicas, monkeypatch) -> None:
    """A fleet push publishes an event per host: relayed to replicas where no operator watches,
    they cost a fifth of the push's CPU (docs/benchmarks.md). They go only while someone
    elsewhere watches, and an operator who connects gets what one server would give: every
    event published after connecting (also before the other replicas learned of it), none before."""
    from rm_server.keys import CONFIG, EVENTS, FORWARDING
    from rm_server.services import relay as relay_module

    a, b = replicas
    channel = Channel(a.app[CONFIG].database_url)
    try:
        channel.read()
        publish(a, "before")  # nobody watches anywhere: held, not relayed
        assert not [m for m in channel.read() if m["t"] == "events"]

        # B's announcement leaves half a second late, so A surely publishes before it learns
        monkeypatch.setattr(relay_module, "FLUSH_SECONDS", 0.5)
        ws = await b.http.ws_connect(b.api("/events"), headers=b.auth("viewer"))
        try:
            await wait_for(lambda: b.app[EVENTS].subscribers, what="B's operator counted")
            assert not a.app[FORWARDING].watchers
            publish(a, "while-A-did-not-know")
            await wait_for(lambda: a.app[FORWARDING].watchers == {b.app[RELAY].replica_id}, what="A knows B watches")
            publish(a, "once-A-knew")
            assert [await host_event(ws), await host_event(ws)] == ["while-A-did-not-know", "once-A-knew"]
        finally:
            await ws.close()
        await wait_for(lambda: not a.app[FORWARDING].watchers, what="A knows B's last operator left")
        channel.read()
        publish(a, "after")
        assert not [m for m in channel.read() if m["t"] == "events"]
    finally:
        channel.close()


async def test_a_replica_that_died_watching_is_relayed_to_no_more(replicas) -> None:
    """A replica that dies with operators watching never says its last one left: the next
    sweep finds its advisory lock gone and the others stop relaying for it. A live watcher
    stays, and so does one whose `watch` came while the sweep's query ran."""
    from rm_server.app import sweep
    from rm_server.keys import FORWARDING

    a, b = replicas
    forwarding = a.app[FORWARDING]
    ws = await b.http.ws_connect(b.api("/events"), headers=b.auth("viewer"))
    try:
        await wait_for(lambda: forwarding.watchers == {b.app[RELAY].replica_id}, what="A knows B watches")
        forwarding.watchers.add("died-watching")  # its lock went with its session
        await sweep(a.app)
        assert forwarding.watchers == {b.app[RELAY].replica_id}

        live_replicas = a.app[RELAY].coordination.live_replicas

        async def answered_late() -> set[str] | None:
            alive = await live_replicas()
            forwarding.watchers.add("started-meanwhile")  # its lock came after the query's snapshot
            return alive

        await forwarding.drop_dead(answered_late)
        assert forwarding.watchers == {b.app[RELAY].replica_id, "started-meanwhile"}
    finally:
        await ws.close()


async def test_a_replica_that_lost_notifications_asks_who_watches(replicas) -> None:
    """B's operator watches; A's listener loses its session (the database ended it) and with
    it B's announcement would be gone: A asks again, and B's operator still gets A's events."""
    from rm_server.keys import FORWARDING

    a, b = replicas
    ws = await b.http.ws_connect(b.api("/events"), headers=b.auth("viewer"))
    try:
        await wait_for(lambda: a.app[FORWARDING].watchers, what="A knows B watches")
        a.app[FORWARDING].watchers.clear()  # as if the announcement had been lost
        terminate(a, a.app[RELAY].replica_id)  # A's listener reconnects and resynchronises
        await wait_for(lambda: a.app[FORWARDING].watchers == {b.app[RELAY].replica_id}, 20, "A asked; B answered")
        publish(a, "after-resync")
        assert await host_event(ws) == "after-resync"
    finally:
        await ws.close()
