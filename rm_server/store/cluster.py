"""How replicas sharing one PostgreSQL database coordinate — PostgreSQL's own mechanisms only:

* LISTEN/NOTIFY wakes the other replicas (`send`). A payload is at most 8,000 bytes and a
  notification is lost for a listener that is down, so it is only ever a wake-up: what must
  not be lost is a row first (a queued job, a schedule version, a cancel request), and a
  replica whose listener reconnects resynchronises from the rows (`on_resync`).
* Session advisory locks: the leader holds LEADER_LOCK; every replica holds one lock of its
  own while it lives. A lock ends with its session, so a replica killed (or whose machine
  vanishes: TCP keepalives, postgres.py) stops leading and is seen dead without any
  heartbeat of ours.

With SQLite one process is the whole cluster: `Solo` leads, has no one to wake, sees no one die."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, TypeVar

from rm_server.store.common import iso
from rm_server.store.db import Conn, one
from rm_server.store.lanes import Lane

T = TypeVar("T")

log = logging.getLogger("rm_server.cluster")

CHANNEL = "rm_cluster"
PAYLOAD_MAX = 7900  # NOTIFY's limit is 8,000 bytes; the envelope takes the rest
LEADER_LOCK = 0x726D5F6C656164  # pg_try_advisory_lock key of the leader ("rm_lead")
REPLICA_LOCKS = 0x726D5F72  # first key of every replica's own pg_advisory_lock(key, number)


class Coordination(Protocol):
    replica_id: str
    clustered: bool

    @property
    def leading(self) -> bool: ...

    async def start(self, on_message: Callable[[dict[str, Any]], None], on_resync: Callable[[], None]) -> None: ...

    async def send(self, messages: list[dict[str, Any]]) -> None: ...

    async def lead(self) -> bool: ...

    async def live_replicas(self) -> set[str] | None: ...

    async def forget(self, replica_id: str) -> None: ...

    async def close(self) -> None: ...


class Solo:
    """One process, one SQLite file: the whole cluster."""

    clustered = False
    leading = True

    def __init__(self, replica_id: str) -> None:
        self.replica_id = replica_id

    async def start(self, on_message: Callable[[dict[str, Any]], None], on_resync: Callable[[], None]) -> None:
        pass

    async def send(self, messages: list[dict[str, Any]]) -> None:
        pass  # nobody else to wake

    async def lead(self) -> bool:
        return True

    async def live_replicas(self) -> set[str] | None:
        return None  # no one else: no replica to find dead

    async def forget(self, replica_id: str) -> None:
        pass

    async def close(self) -> None:
        pass


def pack(sender: str, messages: list[dict[str, Any]]) -> list[str]:
    """Messages as NOTIFY payloads of at most PAYLOAD_MAX bytes, in order. A message too big
    for one payload on its own is the sender's bug: it must go as a row and a wake-up."""
    payloads: list[str] = []
    batch: list[str] = []
    size = 0
    head = len(json.dumps({"from": sender, "m": []}))
    for message in messages:
        text = json.dumps(message, separators=(",", ":"))
        if head + len(text.encode()) + 1 > PAYLOAD_MAX:
            raise ValueError(f"cluster message {message.get('t')!r} of {len(text)} bytes does not fit a NOTIFY")
        if batch and head + size + len(text.encode()) + 1 > PAYLOAD_MAX:
            payloads.append('{"from":%s,"m":[%s]}' % (json.dumps(sender), ",".join(batch)))
            batch, size = [], 0
        batch.append(text)
        size += len(text.encode()) + 1
    if batch:
        payloads.append('{"from":%s,"m":[%s]}' % (json.dumps(sender), ",".join(batch)))
    return payloads


class PgCoordination:
    """LISTEN on a thread of its own, NOTIFY and the advisory locks on a lane of their own."""

    clustered = True

    @property
    def leading(self) -> bool:
        """Whether this replica held the leader's lock when last asked (lead())."""
        return self._leading

    def __init__(self, connect: Callable[[], Any], replica_id: str, now: Callable[[], datetime]) -> None:
        self.replica_id = replica_id
        self._connect = connect  # a new psycopg connection (autocommit), as postgres.py makes them
        self._now = now
        self._locks: Lane[Conn] | None = None
        self._leading = False
        self._lock_no = 0
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None

    # ------------------------------------------------------------ the lock lane

    async def _open_locks(self) -> None:
        from rm_server.store.postgres import PgConn

        def close(conn: Conn) -> None:
            assert isinstance(conn, PgConn)
            conn.raw.close()

        lane: Lane[Conn] = Lane("cluster", lambda: PgConn(self._connect()), close)
        await lane.open()
        now = iso(self._now())

        def register(conn: Conn) -> int:
            for _ in range(20):  # a number nobody holds: random, so two replicas starting at once do not collide
                number = random.randrange(1, 2**31 - 1)
                got = one(conn.execute("SELECT pg_try_advisory_lock(?, ?)", (REPLICA_LOCKS, number)).fetchone())[0]
                if got:
                    conn.execute("INSERT INTO replicas (id, lock_no, started_at) VALUES (?, ?, ?)"
                                 " ON CONFLICT (id) DO UPDATE SET lock_no = excluded.lock_no",
                                 (self.replica_id, number, now))
                    return number
            raise RuntimeError("no free replica lock number after 20 tries")

        self._lock_no = await lane.call(register)
        self._locks = lane

    async def lead(self) -> bool:
        """Take the leader's lock if it is free, or check the session that holds it is alive.
        A lost session (database restart, network) ends leadership; the lane is reopened and
        the lock tried for at once on the new session, so a database restart costs the
        fleet-wide duties no tick."""
        def step() -> Callable[[Conn], bool]:
            if self._leading:  # this session holds the lock: it only has to be alive
                return lambda c: c.execute("SELECT 1").fetchone() is not None
            return lambda c: bool(one(c.execute("SELECT pg_try_advisory_lock(?)", (LEADER_LOCK,)).fetchone())[0])

        try:
            leads = await self._on_a_session(step)
        except Exception:  # noqa: BLE001 - a new session failed too: the database is away
            return False
        if leads and not self._leading:
            log.info("replica %s leads the fleet-wide duties", self.replica_id)
        self._leading = leads
        return leads

    async def _on_a_session(self, step: Callable[[], Callable[[Conn], T]]) -> T:
        """`step()`'s function run on the lock lane's session. When that session is gone (a
        database restart, the network), so is every lock it held: the lane is reopened and
        `step()` asked again, which must not count on a lock of the old session (lead() asks
        `_leading`, which is False by then). A second failure is raised."""
        for attempt in range(2):
            try:
                if self._locks is None:
                    await self._open_locks()
                assert self._locks is not None
                return await self._locks.call(step())
            except Exception as exc:  # noqa: BLE001 - the session is gone: so is every lock it held
                if self._leading:
                    log.warning("replica %s lost the leader's lock: %s", self.replica_id, exc)
                await self._lost()
                if attempt:
                    raise
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def _lost(self) -> None:
        self._leading = False
        lane, self._locks = self._locks, None
        if lane is not None:
            await lane.close()

    async def live_replicas(self) -> set[str] | None:
        """Replicas whose own advisory lock is held: alive (their session is)."""
        if self._locks is None:
            return None
        rows = await self._locks.call(lambda c: c.execute(
            "SELECT r.id FROM replicas r WHERE EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory'"
            " AND l.granted AND l.classid::bigint = ? AND l.objid::bigint = r.lock_no AND l.objsubid = 2"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
            (REPLICA_LOCKS,)).fetchall())
        return {r[0] for r in rows}

    async def forget(self, replica_id: str) -> None:
        if self._locks is not None:
            await self._locks.call(lambda c: c.execute("DELETE FROM replicas WHERE id = ?", (replica_id,)))

    # ------------------------------------------------------------ NOTIFY / LISTEN

    async def send(self, messages: list[dict[str, Any]]) -> None:
        if not messages or self._stop.is_set():
            return  # closed: no new session (it would register this replica as alive again)
        payloads = pack(self.replica_id, messages)

        def notify(conn: Conn) -> None:
            for payload in payloads:
                conn.execute("SELECT pg_notify(?, ?)", (CHANNEL, payload))

        # A NOTIFY is sent at its commit or not at all: if the session is gone, the listeners
        # of the others may be fine and would never resynchronise, so it goes once more on a
        # new session rather than lose the wake-up.
        await self._on_a_session(lambda: notify)

    async def start(self, on_message: Callable[[dict[str, Any]], None], on_resync: Callable[[], None]) -> None:
        await self._open_locks()
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._listener = threading.Thread(target=self._listen, args=(loop, ready, on_message, on_resync),
                                          name="rm-db-listen", daemon=True)
        self._listener.start()
        await ready

    def _listen(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None],
                on_message: Callable[[dict[str, Any]], None], on_resync: Callable[[], None]) -> None:
        first, delay = True, 0.5
        while not self._stop.is_set():
            try:
                conn = self._connect()
            except Exception as exc:  # noqa: BLE001 - the database is away: try again
                if first:
                    loop.call_soon_threadsafe(_settle, ready, exc)
                    return
                log.warning("cluster listener cannot connect (%s); retrying in %.0f s", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30)
                continue
            try:
                conn.execute(f"LISTEN {CHANNEL}")
                if first:
                    loop.call_soon_threadsafe(_settle, ready, None)
                    first = False
                else:  # notifications sent while we were away are gone: the rows are not
                    loop.call_soon_threadsafe(on_resync)
                delay = 0.5
                while not self._stop.is_set():
                    for note in conn.notifies(timeout=0.25):  # a stop waits at most this long
                        try:
                            envelope = json.loads(note.payload)
                        except ValueError:
                            continue
                        if envelope.get("from") == self.replica_id:
                            if self._stop.is_set():
                                break  # our own wake-up from close()
                            continue
                        for message in envelope.get("m", []):
                            loop.call_soon_threadsafe(on_message, message)
            except Exception as exc:  # noqa: BLE001 - a dropped session: reconnect and resync
                log.warning("cluster listener lost its connection (%s); reconnecting", exc)
            finally:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass

    async def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            if self._locks is not None:  # wake the listener now rather than at its next timeout
                stop = json.dumps({"from": self.replica_id, "m": []})
                with contextlib.suppress(Exception):
                    await self._locks.call(lambda c: c.execute("SELECT pg_notify(?, ?)", (CHANNEL, stop)))
            await asyncio.get_running_loop().run_in_executor(None, self._listener.join, 5)
        if self._locks is not None:
            lane, self._locks = self._locks, None
            try:  # a clean stop: gone at once from the list (a killed one goes when its lock does)
                await lane.call(lambda c: c.execute("DELETE FROM replicas WHERE id = ?", (self.replica_id,)))
            except Exception:  # noqa: BLE001 - the session is already gone: so is its lock
                pass
            await lane.close()


def _settle(fut: asyncio.Future[None], error: BaseException | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)
