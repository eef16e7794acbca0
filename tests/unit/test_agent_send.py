"""AgentConnection writes a frame at once when the socket takes it, and keeps the order when
a write has to wait for the socket (back-pressure)."""

import asyncio
from datetime import datetime, timezone

from rm_core import protocol as p
from rm_server.ws.agent_hub import AgentConnection


class Socket:
    """A WebSocket's send side whose writes wait while `paused` is set, like aiohttp's drain."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.paused: asyncio.Future | None = None

    async def send_str(self, frame: str) -> None:
        self.sent.append(frame)
        if self.paused is not None:
            await self.paused

    async def close(self, code: int, message: bytes) -> None:
        pass


async def test_frames_go_out_at_once_and_in_order_under_back_pressure():
    ws = Socket()
    conn = AgentConnection("h", ws, datetime.now(timezone.utc), limit=10)
    conn.welcomed = True  # past hello.ok (below: what waits for it)
    conn.send_frame("a")
    assert ws.sent == ["a"] and conn.flusher is None  # written without a task

    ws.paused = asyncio.get_running_loop().create_future()
    conn.send_frame("b")  # written, but the send waits for the socket
    conn.send_frame("c")
    conn.send_frame("d")
    assert ws.sent == ["a", "b"] and list(conn.pending) == ["c", "d"]
    flusher = conn.flusher
    ws.paused.set_result(None)
    ws.paused = None
    await flusher
    assert ws.sent == ["a", "b", "c", "d"] and not conn.pending
    conn.send_frame("e")
    assert ws.sent[-1] == "e"


async def test_stopping_cancels_a_waiting_send():
    ws = Socket()
    ws.paused = asyncio.get_running_loop().create_future()
    conn = AgentConnection("h", ws, datetime.now(timezone.utc), limit=10)
    conn.welcomed = True  # past hello.ok (below: what waits for it)
    conn.send_frame("a")
    flusher = conn.flusher
    await conn.stop()
    await asyncio.gather(flusher, return_exceptions=True)
    assert flusher.cancelled()
    assert conn.send_frame("b") is False


async def test_frames_sent_before_hello_ok_wait_for_it():
    """A query or cancel for a host whose hello is still being recorded must not arrive
    first: the agent would take it for a broken handshake and reconnect."""
    ws = Socket()
    conn = AgentConnection("h", ws, datetime.now(timezone.utc), limit=10)
    assert conn.send_frame("query") is True
    assert ws.sent == []
    conn.welcome(p.HelloOk(server_version="t", protocol_version=1), "ref")
    if conn.flusher is not None:  # a socket that took the frames at once needs no task
        await conn.flusher
    assert [p.parse_server_message(f).type for f in ws.sent[:1]] == ["hello.ok"] and ws.sent[1:] == ["query"]
    conn.send_frame("later")
    assert ws.sent[-1] == "later"


class TcpSocket(Socket):
    """send_str straight onto a real TCP socket, as aiohttp's writer does when the socket takes it."""

    def __init__(self, sock) -> None:
        super().__init__()
        self.sock = sock

    async def send_str(self, frame: str) -> None:
        self.sock.send(frame.encode())


async def test_frames_sent_corked_leave_together_when_the_block_ends():
    import select
    import socket

    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
        ours.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio sets it
        with peer, ours:
            conn = AgentConnection("h", TcpSocket(ours), datetime.now(timezone.utc), limit=10, sock=ours)
            conn.welcomed = True
            conn.send_frame("uncorked;")
            assert select.select([peer], [], [], 5)[0]  # uncorked: on its way at once
            assert peer.recv(100) == b"uncorked;"
            with conn.corked():
                for frame in ("hello.ok;", "schedule.set;", "config.update;"):
                    conn.send_frame(frame)
                assert select.select([peer], [], [], 0.05)[0] == []  # held back while corked
            assert select.select([peer], [], [], 5)[0]
            assert peer.recv(100) == b"hello.ok;schedule.set;config.update;"
            conn.sock = None  # no socket (a test's stand-in): corked() is a plain block
            with conn.corked():
                conn.send_frame("x;")
            assert select.select([peer], [], [], 5)[0] and peer.recv(100) == b"x;"
