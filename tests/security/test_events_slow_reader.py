"""A viewer's events socket cannot make the server hold unbounded memory (item 5)."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from rm_core import protocol as p
from rm_core.ids import new_id
from rm_server.keys import CONFIG, EVENTS
from tests.conftest import ADMIN_PASSWORD, wait_for
from tests.server.stalled_socket import StalledEvents
from tests.server.server_helpers import now, online_host, started

LINE = "x" * 8000
LINES = 1800  # ~14.4 MB of backlog (under the 16 MiB per-job log cap)
BOUND = 8 * 1024 * 1024  # ServerConfig.operator_queue_bytes default


def measure_queue(sub) -> tuple[list[int], list[int]]:
    """Count the bytes of every frame entering and leaving sub's queue, outside the
    Subscriber's own bookkeeping: ([held now], [peak])."""
    held, peak = [0], [0]
    put, send = sub.queue.put_nowait, sub.ws.send_str

    def measured_put(frame):
        put(frame)
        held[0] += len(frame) if isinstance(frame, bytes) else 0
        peak[0] = max(peak[0], held[0])

    async def measured_send(text: str) -> None:  # the writer's next step after taking a frame
        held[0] -= len(text.encode())
        await send(text)

    sub.queue.put_nowait, sub.ws.send_str = measured_put, measured_send
    return held, peak


async def big_job(server) -> str:
    _, agent = await online_host(server)
    job_id = new_id()
    await agent.send(started(job_id, kind="check"))
    await agent.expect("ack")
    for first in range(2, LINES + 2, 200):
        await agent.send(p.JobLog(job_id=job_id, lines=[
            p.LogLine(seq=s, ts=now(), text=LINE) for s in range(first, first + 200)]))
        env = await agent.expect("ack")
        assert env.payload.upto_seq == first + 199
    return job_id


async def test_slow_reader_never_has_more_than_the_byte_bound_queued(server):
    """A reader that stops reading (its socket paused) subscribes to a ~14 MB log: the
    server queues at most the byte bound for it and waits; once it reads again the whole
    backlog arrives. Subscribing again after unsubscribe does not queue it a second time."""
    job_id = await big_job(server)
    hub = server.app[EVENTS]
    ws = await StalledEvents.open(server.api("/events"), server.tokens["viewer"])
    await wait_for(lambda: len(hub.subscribers) == 1, what="the subscriber")
    (sub,) = hub.subscribers
    held, peak = measure_queue(sub)
    await ws.send_json({"type": "subscribe", "job_id": job_id})
    # Either the bound is broken, or the backlog loader is waiting for room.
    await wait_for(lambda: peak[0] > BOUND or sub.waiting_for_room, timeout=20,
                   what="the backlog loader to fill the queue or wait for room")
    assert peak[0] <= BOUND, f"{peak[0] / 1e6:.1f} MB queued for one reader that does not read"

    ws.resume_reading()
    received = 0
    while received < LINES:
        msg = await ws.receive_json(timeout=10)
        if msg["type"] == "job.log":
            received += len(msg["payload"]["lines"])
    assert received == LINES and peak[0] <= BOUND

    for _ in range(5):
        await ws.send_json({"type": "unsubscribe", "job_id": job_id})
        await ws.send_json({"type": "subscribe", "job_id": job_id})
    await ws.send_json({"type": "subscribe", "job_id": "no-such-job"})  # a marker: its error comes last
    while True:
        msg = await ws.receive_json(timeout=10)
        if msg["type"] == "error":
            break
        assert msg["type"] != "job.log", "backlog already sent was queued again"
    ws.close()


async def test_one_account_cannot_open_unbounded_sockets_whatever_its_sessions(server):
    """The cap is per account, not per session: sessions are free (12 logins x 4 sockets
    took the server from 292 to 795 MB)."""
    sessions = [server.tokens["viewer"]] + [await server.login("viewer", ADMIN_PASSWORD) for _ in range(3)]
    sockets = [await server.http.ws_connect(server.api("/events"), headers={"Authorization": f"Bearer {token}"})
               for token in sessions]
    for token in sessions:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await server.http.ws_connect(server.api("/events"), headers={"Authorization": f"Bearer {token}"})
        assert err.value.status == 429
    await sockets[0].close()
    again = await server.http.ws_connect(server.api("/events"), headers=server.auth("viewer"))
    # Another account is not affected by this one's sockets.
    other = await server.http.ws_connect(server.api("/events"), headers=server.auth("operator"))
    for ws in [*sockets[1:], again, other]:
        await ws.close()


async def test_the_server_holds_a_bounded_number_of_events_sockets(server):
    server.app[CONFIG].max_events_sockets = 6
    sockets = [await server.http.ws_connect(server.api("/events"), headers=server.auth(role))
               for role in ("viewer",) * 4 + ("operator",) * 2]
    for role in ("operator", "admin"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await server.http.ws_connect(server.api("/events"), headers=server.auth(role))
        assert err.value.status == 429
    await sockets[0].close()
    await wait_for(lambda: sum(server.app[EVENTS].per_account.values()) == 5, what="the closed socket to count")
    sockets[0] = await server.http.ws_connect(server.api("/events"), headers=server.auth("admin"))
    for ws in sockets:
        await ws.close()


async def test_live_lines_while_a_backlog_loads_count_in_the_bound(server):
    """A reader that does not read subscribes to a big job's log, and the job goes on
    writing: the live lines buffered while the backlog waits for room count in the same
    8 MiB (they were held without bound: +40 MB per 5,000 lines). Once it reads again it
    gets every line once, in order: lines let go for the bound are read from the database."""
    _, agent = await online_host(server)
    job_id = new_id()
    await agent.send(started(job_id, kind="check"))
    await agent.expect("ack")

    async def write(first: int, count: int) -> None:
        for start in range(first, first + count, 200):
            await agent.send(p.JobLog(job_id=job_id, lines=[
                p.LogLine(seq=s, ts=now(), text=LINE) for s in range(start, min(start + 200, first + count))]))
            await agent.expect("ack")

    await write(2, 1300)  # 10 MB stored: more than socket buffers and the reader's queue take
    hub = server.app[EVENTS]
    ws = await StalledEvents.open(server.api("/events"), server.tokens["viewer"])
    await wait_for(lambda: len(hub.subscribers) == 1, what="the subscriber")
    (sub,) = hub.subscribers
    held, _ = measure_queue(sub)
    peak = [0]
    log_lines = sub.log_lines

    def measured_log_lines(job, lines, frame):
        log_lines(job, lines, frame)
        buffered = sum(len(ln.text) for waiting in sub.pending.values() for ln in waiting)
        peak[0] = max(peak[0], held[0] + buffered)

    sub.log_lines = measured_log_lines
    await ws.send_json({"type": "subscribe", "job_id": job_id})
    await wait_for(lambda: sub.waiting_for_room, timeout=20, what="the backlog loader to wait for room")
    await write(1302, 200)  # live lines while it waits: buffered
    assert sub.pending_bytes > 0
    # A live event that fits the queue but not the queue and the buffer: the buffered lines
    # (stored) are let go, the event is queued, the reader stays.
    hub.publish("job.progress", {"job_id": "other", "pad": "p" * (BOUND - sub.bytes - 1000)})
    assert not sub.overflowed and sub.pending_bytes == 0
    await write(1502, 500)  # 5.6 MB live in all: 16 MB, under the per-job cap
    assert peak[0] <= BOUND, f"{peak[0] / 1e6:.1f} MB held for one reader that does not read"
    assert not sub.overflowed

    ws.resume_reading()
    seqs: list[int] = []
    while len(seqs) < 2000:
        msg = await ws.receive_json(timeout=10)
        if msg["type"] == "job.log" and msg["payload"]["job_id"] == job_id:
            seqs += [ln["seq"] for ln in msg["payload"]["lines"]]
    assert seqs == list(range(2, 2002)), "a gap or a line sent twice"
    ws.close()


async def test_a_reader_that_goes_away_with_frames_unsent_is_one_info_line(server, caplog):
    job_id = await big_job(server)
    hub = server.app[EVENTS]
    ws = await StalledEvents.open(server.api("/events"), server.tokens["viewer"])
    await wait_for(lambda: len(hub.subscribers) == 1, what="the subscriber")
    (sub,) = hub.subscribers
    await ws.send_json({"type": "subscribe", "job_id": job_id})
    await wait_for(lambda: sub.waiting_for_room, timeout=20, what="the backlog loader to wait for room")
    caplog.clear()
    caplog.set_level(logging.INFO, logger="rm_server")
    ws.abort()
    await wait_for(lambda: not hub.per_account, timeout=20, what="the socket to be let go")
    ours = [r for r in caplog.records if r.name.startswith("rm_server")]
    assert not [r for r in ours if r.exc_info or r.levelno >= logging.WARNING], [r.getMessage() for r in ours]
    closed = [r.getMessage() for r in ours if "closed by the client" in r.getMessage()]
    assert len(closed) == 1 and closed[0].startswith("events socket of viewer closed by the client"), closed
