"""A hostile agent's answer to a live query cannot make the server hold, or send a viewer,
more than a bounded answer (issue 18 item 5): one `ls` answered with 60 entries of 3.9 MB
names took the server to 1 GB and sent the viewer a 240 MB body."""

from __future__ import annotations

import asyncio

from rm_core import protocol as p
from rm_core import queries as q
from rm_server.keys import QUERIES
from tests.conftest import wait_for
from tests.server.server_helpers import online_host

SNAP = "0123abcd" * 8
HUGE_NAME = "n" * (3900 * 1000)  # one agent frame holds at most 4 MiB


async def test_an_answer_past_the_byte_cap_is_refused_while_it_arrives(server):
    host_id, agent = await online_host(server, features=["query"])
    request = asyncio.ensure_future(server.call("GET", f"/hosts/{host_id}/snapshots/{SNAP}/ls?path=/&limit=5000"))
    query: p.Query = (await agent.expect("query")).payload
    pend = server.app[QUERIES].pending[query.query_id]
    accepted = 0
    for seq in range(60):
        if query.query_id not in server.app[QUERIES].pending:
            break
        await agent.send(p.QueryResult(query_id=query.query_id, seq=seq, items=[{"name": f"{HUGE_NAME}{seq}",
                                                                                  "type": "file"}]))
        await wait_for(lambda: pend.next_seq > seq or query.query_id not in server.app[QUERIES].pending,
                       what="the chunk to be taken")
        accepted = len(pend.items)
    status, body = await request
    assert status == 502 and body["error"]["code"] == "bad_agent_reply", body
    assert "larger than 16 MiB" in body["error"]["message"], body
    held = accepted * len(HUGE_NAME)
    assert held <= q.MAX_ANSWER_BYTES, f"{held / 1e6:.0f} MB held for one answer"
    await agent.close()


async def test_names_and_paths_in_answers_are_bounded(server):
    host_id, agent = await online_host(server, features=["query"])
    long_name = "x" * (q.MAX_NAME_LENGTH + 1)
    cases = [
        (f"/hosts/{host_id}/snapshots/{SNAP}/ls?path=/", [{"name": long_name, "type": "file"}], {"path": "/"}),
        (f"/hosts/{host_id}/snapshots/diff?from={SNAP}&to={SNAP}",
         [{"path": "/" + "p" * q.MAX_ANSWER_PATH, "change": "added", "modifier": "+"}], {}),
    ]
    for path, items, info in cases:
        request = asyncio.ensure_future(server.call("GET", path))
        query: p.Query = (await agent.expect("query")).payload
        await agent.send(p.QueryResult(query_id=query.query_id, seq=0, done=True, items=items, info=info))
        status, body = await request
        assert status == 502 and body["error"]["code"] == "bad_agent_reply", body
        assert "at most" in body["error"]["message"], body
    await agent.close()
