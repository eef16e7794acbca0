"""Database lanes: each lane is one thread that owns one database connection.

DB-API drivers (sqlite3, psycopg) block; the event loop must not. Every call into the
database is a function `fn(conn)` run on the lane's thread, its result handed back to the
loop as a future. The lane owns its connection from open to close, so no other thread ever
touches it (sqlite3 connections refuse that), and nothing here leans on a wrapper
library's private internals (aiosqlite's `_conn`/`_execute` did, on an unpinned range).

Lanes are named by `LaneName`: one writer and the readers the store routes reads to
(docs/architecture.md, Store)."""

from __future__ import annotations

import asyncio
import enum
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

C = TypeVar("C")
T = TypeVar("T")


class LaneName(enum.Enum):
    """What each connection is for. Reads are routed by lane so a fleet-wide read never
    queues in front of an operator's page, and a console's 19k-host list never in front of a
    push (measured in docs/benchmarks.md, items 21 and 23)."""

    WRITER = "writer"          # the one write connection of this process
    BULK = "bulk"              # fleet-wide reads: a push's schedule sets, hello batches, tickers
    WHOLE_LIST = "whole-list"  # the full host list, built on one thread (its buffers stay in one arena)
    OPERATORS_1 = "operators-1"  # operators' queries: the less busy of these two
    OPERATORS_2 = "operators-2"


READERS = (LaneName.BULK, LaneName.WHOLE_LIST, LaneName.OPERATORS_1, LaneName.OPERATORS_2)
OPERATOR_LANES = (LaneName.OPERATORS_1, LaneName.OPERATORS_2)

_STOP = object()


class Lane(Generic[C]):
    """One thread, one connection, a queue of functions to run on it."""

    def __init__(self, name: str, connect: Callable[[], C], close: Callable[[C], None],
                 broken: Callable[[C], bool] = lambda conn: False) -> None:
        self.name = name
        self.busy = 0  # calls queued or running: the store routes operators' reads by it
        self._connect = connect
        self._close = close
        # A connection the database dropped (PostgreSQL restarted, a network cut): the call
        # that met it fails, the next one connects again.
        self._broken = broken
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        # Which connection of this lane is open: a transaction begun on one must never go on
        # on the next (its later statements would run outside it). Read on the lane's thread.
        self.epoch = 0

    async def open(self) -> None:
        """Start the thread and open the connection on it; raises what connecting raised."""
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._thread = threading.Thread(target=self._run, args=(ready, asyncio.get_running_loop()),
                                        name=f"rm-db-{self.name}", daemon=True)
        self._thread.start()
        await ready

    def _run(self, ready: asyncio.Future[None], loop: asyncio.AbstractEventLoop) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:  # noqa: BLE001 - handed to the opener, who reports it
            loop.call_soon_threadsafe(_settle, ready, None, exc)
            return
        loop.call_soon_threadsafe(_settle, ready, None, None)
        current: C | None = conn
        try:
            while True:
                job = self._jobs.get()
                if job is _STOP:
                    return
                fut, fn, loop, epoch = job
                try:
                    if epoch is not None and epoch != self.epoch:
                        raise ConnectionLost(f"the database connection of lane {self.name} was lost "
                                             "during this transaction; nothing of it was committed")
                    if current is None:
                        current = self._connect()
                    result, error = fn(current), None
                except BaseException as exc:  # noqa: BLE001 - the caller's future carries it
                    result, error = None, exc
                    if current is not None and self._broken(current):
                        self._quietly_close(current)
                        current = None
                        self.epoch += 1
                loop.call_soon_threadsafe(_settle, fut, result, error)
        finally:
            if current is not None:
                self._quietly_close(current)

    def _quietly_close(self, conn: C) -> None:
        try:
            self._close(conn)
        except Exception:  # noqa: BLE001 - closing a broken connection may fail too
            pass

    async def call(self, fn: Callable[[C], T], epoch: int | None = None) -> T:
        """Run `fn(conn)` on the lane's thread, in order with every other call; with `epoch`,
        only on that connection (ConnectionLost if the lane had to connect again since)."""
        if self._closed:
            raise RuntimeError(f"database lane {self.name} is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self.busy += 1
        try:
            self._jobs.put((fut, fn, loop, epoch))
            return await fut
        finally:
            self.busy -= 1

    async def close(self) -> None:
        """Finish queued calls, close the connection, end the thread."""
        if self._closed or self._thread is None:
            self._closed = True
            return
        self._closed = True
        self._jobs.put(_STOP)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)


class ConnectionLost(RuntimeError):
    """A transaction's connection went away under it (the database restarted)."""


def _settle(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if fut.cancelled():
        return  # the caller stopped waiting; the call itself already ran
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)
