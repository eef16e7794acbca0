"""The server's loop serves operators' sockets before agents' (rm_server/loop.py): each turn
takes every ready operator socket and at most `bulk_per_turn` ready agent sockets."""

from __future__ import annotations

import asyncio
import selectors
import socket

import pytest

from rm_server.loop import OperatorsFirstSelector, ServerLoop, serve_after_operators, serve_first


@pytest.fixture
def pairs():
    made: list[tuple[socket.socket, socket.socket]] = []

    def make(n: int) -> list[tuple[socket.socket, socket.socket]]:
        new = [socket.socketpair() for _ in range(n)]
        made.extend(new)
        return new

    yield make
    for a, b in made:
        a.close()
        b.close()


def ready_fds(sel: selectors.BaseSelector) -> list[int]:
    return [key.fd for key, _ in sel.select(0)]


def test_each_turn_takes_every_operator_and_a_few_agents(pairs):
    sel = OperatorsFirstSelector(bulk_per_turn=4)
    agents, operators = pairs(20), pairs(3)
    for ours, _ in agents + operators:
        sel.register(ours.fileno(), selectors.EVENT_READ)
    for ours, _ in agents:
        sel.demote(ours.fileno())
    for _, theirs in agents + operators:
        theirs.send(b"x")
    agent_fds = {ours.fileno() for ours, _ in agents}
    operator_fds = {ours.fileno() for ours, _ in operators}

    seen: list[int] = []
    for _ in range(5):
        got = ready_fds(sel)
        assert operator_fds <= set(got)  # unread operator sockets come back every turn
        turn = [fd for fd in got if fd in agent_fds]
        assert len(turn) == 4
        for fd in turn:  # read what was reported, as the loop's readers do
            next(o for o, _ in agents if o.fileno() == fd).recv(1)
        seen += turn
    assert len(set(seen)) == 20  # every agent served once in 5 turns, none twice
    assert [fd for fd in ready_fds(sel) if fd in agent_fds] == []
    sel.close()


def test_a_demoted_socket_stays_behind_after_its_reading_pauses(pairs):
    sel = OperatorsFirstSelector(bulk_per_turn=1)
    (a, a_peer), (b, b_peer) = pairs(2)
    for s in (a, b):
        sel.register(s.fileno(), selectors.EVENT_READ)
        sel.demote(s.fileno())
    sel.demote(a.fileno())  # twice is harmless
    sel.unregister(a.fileno())  # what asyncio does on pause_reading ...
    sel.register(a.fileno(), selectors.EVENT_READ)  # ... and on resume_reading
    a_peer.send(b"x")
    b_peer.send(b"x")
    assert len(ready_fds(sel)) == 1  # both in the bulk epoll: one per turn
    sel.close()


def test_write_interest_of_an_agent_socket_is_reported(pairs):
    sel = OperatorsFirstSelector()
    ((a, _),) = pairs(1)
    sel.register(a.fileno(), selectors.EVENT_READ)
    sel.demote(a.fileno())
    assert ready_fds(sel) == []
    sel.modify(a.fileno(), selectors.EVENT_READ | selectors.EVENT_WRITE, "data")
    assert sel.select(0) == [(sel.get_key(a.fileno()), selectors.EVENT_WRITE)]
    assert sel.get_key(a.fileno()).data == "data"
    sel.close()


def test_a_number_promoted_after_its_connection_ends_is_an_operator_again(pairs):
    sel = OperatorsFirstSelector(bulk_per_turn=1)
    agents = pairs(3)
    for ours, theirs in agents:
        sel.register(ours.fileno(), selectors.EVENT_READ)
        sel.demote(ours.fileno())
        theirs.send(b"x")
    first = agents[0][0].fileno()
    sel.promote(first)
    assert len(ready_fds(sel)) == 2  # the promoted one plus one agent
    sel.unregister(first)
    sel.register(first, selectors.EVENT_READ)
    assert first in ready_fds(sel)
    sel.promote(first)  # twice is harmless
    sel.close()


async def _echo_server_on(loop_sock_count: int) -> list[bytes]:
    """A real asyncio server on ServerLoop: agent sockets demoted through the helper still
    get every byte, and the helper undoes itself."""
    got: list[bytes] = []
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        fd = serve_after_operators(writer.get_extra_info("socket"))
        assert fd is not None
        got.append(await reader.readexactly(5))
        writer.write(b"ok")
        await writer.drain()
        writer.close()
        serve_first(fd)
        if len(got) == loop_sock_count:
            done.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    replies = []
    for _ in range(loop_sock_count):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"hello")
        replies.append(await r.readexactly(2))
        w.close()
    await asyncio.wait_for(done.wait(), 10)
    server.close()
    assert replies == [b"ok"] * loop_sock_count
    assert not asyncio.get_running_loop().selector._bulk_fds
    return got


def test_server_loop_carries_demoted_connections_end_to_end():
    with asyncio.Runner(loop_factory=ServerLoop) as runner:
        assert runner.run(_echo_server_on(10)) == [b"hello"] * 10


def test_the_helpers_do_nothing_on_another_loop(pairs):
    ((a, _),) = pairs(1)

    async def main() -> None:
        assert serve_after_operators(a) is None
        serve_first(None)

    asyncio.run(main())
