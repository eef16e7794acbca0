"""The server's side of live queries with protocol-level agents: version gate, deadlines,
disconnects, malformed and foreign answers, request validation. (Real agent + restic:
tests/agent/test_browse_server.py.)"""

from __future__ import annotations

import asyncio

import pytest

from rm_core import protocol as p
from rm_core import queries as q
from rm_server.keys import QUERIES
from tests.conftest import wait_for

from tests.server.server_helpers import online_host

SNAP = "0123abcd" * 8


def ls_path(host_id: str, snap: str = SNAP, query: str = "path=/etc") -> str:
    return f"/hosts/{host_id}/snapshots/{snap}/ls?{query}"


async def asked(agent) -> p.Envelope:
    return await agent.expect("query")


async def test_an_agent_one_release_older_gets_no_query_and_the_operator_a_clear_409(server):
    """An agent without the `query` feature in hello (the release before) is never sent one."""
    host_id, agent = await online_host(server)
    status, body = await server.call("GET", ls_path(host_id), role="viewer")
    assert status == 409 and body["error"]["code"] == "agent_too_old", body
    assert "upgrade rm-agent" in body["error"]["message"]
    assert not [e for e in agent.received if e.type == "query"]
    await agent.close()


async def test_offline_and_unknown_hosts(server):
    host_id, _ = await server.enroll("never-connected")
    status, body = await server.call("GET", ls_path(host_id))
    assert status == 409 and body["error"]["code"] == "host_offline" and host_id in body["error"]["message"], body
    status, body = await server.call("GET", f"/hosts/{host_id}/snapshots/diff?from={SNAP}&to={SNAP}")
    assert status == 409 and body["error"]["code"] == "host_offline", body
    status, body = await server.call("GET", ls_path("no-such-host"))
    assert status == 404, body


async def test_chunks_are_joined_in_order(server):
    host_id, agent = await online_host(server, features=["query"])
    request = asyncio.ensure_future(server.call("GET", ls_path(host_id, query="path=/etc/&limit=3"), role="viewer"))
    env = await asked(agent)
    query: p.Query = env.payload
    assert query.kind == q.KIND_LS and query.params == {"snapshot_id": SNAP, "path": "/etc", "limit": 3}
    entry = {"name": "a", "type": "file", "size": 1, "mtime": "2026-01-01T00:00:00.123456789Z", "mode": 0o100644}
    await agent.send(p.QueryResult(query_id=query.query_id, seq=0, items=[entry, {**entry, "name": "b"}]))
    await agent.send(p.QueryResult(query_id=query.query_id, seq=1, items=[{**entry, "name": "c"}], done=True,
                                   info={"path": "/etc", "truncated": True, "next_after": "c"}))
    status, body = await request
    assert status == 200, body
    assert [e["name"] for e in body["entries"]] == ["a", "b", "c"] and body["truncated"] is True
    assert body["next_after"] == "c" and body["path"] == "/etc"
    assert not server.app[QUERIES].pending
    await agent.close()


async def test_agent_errors_map_to_statuses(server):
    host_id, agent = await online_host(server, features=["query"])
    for code, status_ in [(q.ERR_SNAPSHOT_NOT_FOUND, 404), (q.ERR_NO_REPOSITORY, 409), (q.ERR_UNKNOWN_KIND, 409),
                          (q.ERR_BUSY, 429), ("wrong_password", 502), (q.ERR_TIMEOUT, 504)]:
        request = asyncio.ensure_future(server.call("GET", ls_path(host_id)))
        env = await asked(agent)
        await agent.send(p.QueryError(query_id=env.payload.query_id, code=code, message=f"because {code}"))
        status, body = await request
        expected = "agent_too_old" if code == q.ERR_UNKNOWN_KIND else code
        assert (status, body["error"]["code"]) == (status_, expected), body
    # an agent that answers the frame itself with `error` (it does not know `query`): too old, not a hang
    request = asyncio.ensure_future(server.call("GET", ls_path(host_id)))
    env = await asked(agent)
    await agent.ws.send_str(p.encode(p.message(p.Error(code="unknown_type", message="unknown type query"), env.id)))
    status, body = await request
    assert status == 409 and body["error"]["code"] == "agent_too_old", body
    await agent.close()


async def test_disconnect_mid_query_is_409_at_once(server):
    host_id, agent = await online_host(server, features=["query"])
    request = asyncio.ensure_future(server.call("GET", ls_path(host_id)))
    await asked(agent)
    await agent.close()
    status, body = await asyncio.wait_for(request, 5)
    assert status == 409 and body["error"]["code"] == "host_offline", body


async def test_a_silent_agent_meets_the_deadline(server):
    server.app[QUERIES].default_timeout = 0.3
    server.app[QUERIES].margin = 0.2
    host_id, agent = await online_host(server, features=["query"])
    status, body = await server.call("GET", ls_path(host_id))
    assert status == 504 and body["error"]["code"] == "agent_timeout", body
    env = await asked(agent)
    assert env.payload.timeout_seconds == 0.3
    # the late answer finds nobody waiting and changes nothing
    await agent.send(p.QueryResult(query_id=env.payload.query_id, seq=0, done=True))
    await agent.send(p.Heartbeat())
    assert not server.app[QUERIES].pending
    await agent.close()


async def test_bad_and_foreign_answers(server):
    host_id, agent = await online_host(server, "web-1", features=["query"])
    other_id, other = await online_host(server, "web-2", features=["query"])
    # another host's agent cannot answer this host's query
    request = asyncio.ensure_future(server.call("GET", ls_path(host_id)))
    env = await asked(agent)
    await other.send(p.QueryResult(query_id=env.payload.query_id, seq=0, done=True,
                                   items=[{"name": "evil", "type": "file"}], info={"path": "/etc"}))
    await other.send(p.Heartbeat())
    await agent.send(p.QueryResult(query_id=env.payload.query_id, seq=0, done=True, info={"path": "/etc"}))
    status, body = await request
    assert status == 200 and body["entries"] == [], body
    # a gap in the chunks, an entry that is not one, too many entries: 502 bad_agent_reply
    for chunks in ([p.QueryResult(query_id="Q", seq=1, done=True)],
                   [p.QueryResult(query_id="Q", seq=0, done=True, items=[{"name": "x", "type": "weird"}])],
                   [p.QueryResult(query_id="Q", seq=0, items=[{"name": str(i), "type": "file"} for i in range(3)])]):
        request = asyncio.ensure_future(server.call("GET", ls_path(host_id, query="path=/&limit=2")))
        env = await asked(agent)
        for chunk in chunks:
            await agent.send(chunk.model_copy(update={"query_id": env.payload.query_id}))
        status, body = await request
        assert status == 502 and body["error"]["code"] == "bad_agent_reply", body
    await agent.close()
    await other.close()


@pytest.mark.parametrize("query, field", [
    ("path=etc", "path"), ("path=/etc/../root", "path"), ("path=/a%00b", "path"), ("path=/&limit=5001", "limit"),
    ("path=/&limit=0", "limit"), ("path=/&after=a/b", "after"), (f"path=/{'x' * 5000}", "path"),
])
async def test_ls_request_validation(server, query, field):
    host_id, agent = await online_host(server, features=["query"])
    status, body = await server.call("GET", ls_path(host_id, query=query))
    assert status == 400 and body["error"]["details"]["field"] == field, body
    status, body = await server.call("GET", ls_path(host_id, snap="not-hex!", query="path=/"))
    assert status == 400 and body["error"]["details"]["field"] == "snapshot_id", body
    assert not [e for e in agent.received if e.type == "query"], "nothing invalid reaches the agent"
    await agent.close()


async def test_diff_and_preview_validation(server):
    host_id, agent = await online_host(server, features=["query"])
    for query, field in [("to=" + SNAP, "from"), ("from=" + SNAP, "to"), (f"from=xyz&to={SNAP}", "from"),
                         (f"from={SNAP}&to={SNAP}&limit=10001", "limit")]:
        status, body = await server.call("GET", f"/hosts/{host_id}/snapshots/diff?{query}")
        assert status == 400 and body["error"]["details"]["field"] == field, (query, body)
    status, group = await server.call("POST", f"/hosts/{host_id}/source-groups", json={
        "name": "etc", "includes": ["/etc"]})
    assert status == 201, group
    path = f"/hosts/{host_id}/source-groups/{group['id']}/retention-preview"
    status, body = await server.call("POST", path)
    assert status == 400 and body["error"]["code"] == "empty_retention", body
    status, body = await server.call("POST", path, json={"retention": {"keep_last": -1}})
    assert status == 400 and body["error"]["details"]["field"].startswith("retention"), body
    status, body = await server.call("POST", path, json={"retention": {"keep_last": 1}, "extra": 1})
    assert status == 400, body
    status, body = await server.call("POST", f"/hosts/{host_id}/source-groups/nope/retention-preview",
                                     json={"retention": {"keep_last": 1}})
    assert status == 404, body
    # a valid preview reaches the agent with the group's tag
    request = asyncio.ensure_future(server.call("POST", path, json={"retention": {"keep_daily": 7}}, role="viewer"))
    env = await asked(agent)
    assert env.payload.kind == q.KIND_FORGET_PREVIEW
    assert env.payload.params == {"tag": group["tag"], "retention": {"keep_daily": 7}}
    await agent.send(p.QueryResult(query_id=env.payload.query_id, seq=0, done=True, items=[
        {"action": "keep", "id": SNAP, "short_id": SNAP[:8], "time": "2026-01-01T00:00:00Z", "reasons": ["daily"]}]))
    status, body = await request
    assert status == 200 and body["keep_count"] == 1 and body["keep"][0]["reasons"] == ["daily"], body
    await wait_for(lambda: not server.app[QUERIES].pending, 5, "pending cleared")
    await agent.close()
