"""The server's database, whichever backend holds it: lanes (a thread and a connection
each), short write transactions on the one writer lane, reads routed by lane.

The backend (SQLite file or PostgreSQL URL: `Engine` in store/sqlite.py, store/postgres.py)
opens connections, runs migrations and says how to begin a write; everything above this
module is the same for both."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
import re
from typing import Any, Protocol, TypeVar, overload

from rm_server.store.dialect import Dialect
from rm_server.store.lanes import OPERATOR_LANES, READERS, ConnectionLost, Lane, LaneName

T = TypeVar("T")

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class SchemaTooNew(RuntimeError):
    """The database was written by a newer rm-server than this one."""


class Row(Protocol):
    """One result row, read by index, by column name or by unpacking: `sqlite3.Row` and
    store/postgres.py's `Row` both are one. `fetchone()` gives `Row | None`: a lookup that
    may find nothing must say what then (usually NotFound); a statement that always returns
    a row (an aggregate, `INSERT … RETURNING`) goes through `one()`."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def keys(self) -> list[str]: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...


def one(row: Row | None) -> Row:
    """The row of a statement that always returns one (`count(*)`, `INSERT … RETURNING`,
    an UPDATE's RETURNING of a row the transaction just read): none is a bug, said so."""
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached now (it restarted, the network is cut): a 503, and the
    next call connects again."""


class Cursor(Protocol):
    """What a lane's connection returns from execute(): DB-API, as sqlite3 and psycopg give it."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Row | None: ...

    def fetchall(self) -> list[Row]: ...


class Conn(Protocol):
    """A lane's connection as functions run on its thread see it: `?` placeholders, both backends."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Cursor: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


class Engine(Protocol):
    """A backend: how to connect a lane, migrate, begin a write, read the data version."""

    @property
    def dialect(self) -> Dialect: ...  # read-only: each engine holds its own kind

    begin: str  # the statement that starts a write transaction
    version_sql: str  # a value that changes whenever any connection commits
    where: str  # what to name in messages (a path, or a URL without credentials)

    def connect(self, lane: LaneName) -> Conn: ...

    def close(self, conn: Conn) -> None: ...

    def broken(self, conn: Conn) -> bool: ...

    def disconnected(self, exc: BaseException) -> bool: ...

    def migrate(self, conn: Conn, known: list[tuple[int, str, str]]) -> None: ...


def migrations(backend: str = "sqlite") -> list[tuple[int, str, str]]:
    """(number, file name, sql) for every bundled migration of a backend, in order.

    SQLite's are `migrations/NNNN_name.sql`, PostgreSQL's `migrations/postgresql/NNNN_name.sql`,
    numbered together: a number means the same change on both."""
    folder = resources.files("rm_server.store.migrations")
    if backend != "sqlite":
        folder = folder / backend
    found = []
    for entry in folder.iterdir():
        m = _MIGRATION_NAME.match(entry.name)
        if m:
            found.append((int(m.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort()
    for expected, (number, name, _) in enumerate(found, start=1):
        if number != expected:
            raise RuntimeError(f"migration {name} out of sequence: expected {expected:04d}")
    return found


class _NotBegun(Exception):
    """A write transaction's BEGIN failed: nothing of it ran."""


class Result:
    """A statement's outcome, detached from its cursor (cursors stay on their lane's thread)."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rowcount: int, rows: list[Row]) -> None:
        self.rowcount = rowcount
        self.rows = rows

    def fetchone(self) -> Row | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Row]:
        return self.rows


def _run(conn: Conn, sql: str, params: Sequence[Any]) -> Result:
    cur = conn.execute(sql, params)
    rows = cur.fetchall() if getattr(cur, "description", None) else []
    return Result(cur.rowcount, rows)


class Session:
    """The open write transaction as `Database.write()` hands it out: each call is one hop to
    the writer's thread. For many statements prefer `Database.write_in_thread`: one hop."""

    def __init__(self, lane: Lane[Conn], epoch: int) -> None:
        self._lane = lane
        self._epoch = epoch  # the connection the transaction began on: every statement goes there

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        return await self._call(lambda c: _run(c, sql, params))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Result:
        rows = list(rows)
        return await self._call(lambda c: Result(c.executemany(sql, rows).rowcount, []))

    async def _call(self, fn: Callable[[Conn], T]) -> T:
        try:
            return await self._lane.call(fn, self._epoch)
        except ConnectionLost as exc:
            raise DatabaseUnavailable(str(exc)) from exc

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return (await self.execute(sql, params)).fetchone()

    async def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
        """Many rows into one table at once: PostgreSQL's COPY, SQLite's executemany."""
        return await self._call(lambda c: insert_rows(c, table, columns, rows))

    async def run(self, fn: Callable[[Conn], T]) -> T:
        """`fn(conn)` inside this transaction, in one hop (several statements at once)."""
        return await self._call(fn)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return (await self.execute(sql, params)).rows


def insert_rows(conn: Conn, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
    """Rows into a table the fastest way the connection has (PgConn: COPY)."""
    copy = getattr(conn, "insert_rows", None)
    if copy is not None:
        return int(copy(table, columns, rows))
    marks = ", ".join("?" * len(columns))
    return conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows).rowcount


class Database:
    """Writes go through `write()` / `write_in_thread()`, reads through `fetch*`."""

    def __init__(self, engine: Engine, lanes: dict[LaneName, Lane[Conn]]) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self.where = engine.where
        self._lanes = lanes
        self._writer = lanes[LaneName.WRITER]
        self._lock = asyncio.Lock()
        # Bumped by every committed write of this process: a cheap first check for caches
        # (other connections' commits show in data_version()).
        self.generation = 0
        self._written: asyncio.Event | None = None  # only while someone awaits committed_after()

    @classmethod
    async def open(cls, engine: Engine) -> "Database":
        """Open the writer (and migrate on it), then the readers."""
        lanes: dict[LaneName, Lane[Conn]] = {}
        try:
            for name in (LaneName.WRITER, *READERS):
                lane: Lane[Conn] = Lane(name.value, functools.partial(engine.connect, name), engine.close,
                                        engine.broken)
                await lane.open()
                lanes[name] = lane
                if name is LaneName.WRITER:
                    known = migrations(engine.dialect.name)
                    await lane.call(lambda c: engine.migrate(c, known))
        except BaseException:
            for lane in lanes.values():
                await lane.close()
            raise
        return cls(engine, lanes)

    async def close(self) -> None:
        async with self._lock:
            for lane in self._lanes.values():
                await lane.close()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Session]:
        """A short write transaction on the writer lane, one hop per statement."""
        async with self._lock:
            begin, lane = self.engine.begin, self._writer

            def start(c: Conn) -> int:
                c.execute(begin)
                return lane.epoch

            epoch = await self._again_if_dropped(lane, start)
            try:
                yield Session(lane, epoch)
            except BaseException:
                with contextlib.suppress(ConnectionLost):  # gone with its connection: nothing to undo
                    await lane.call(lambda c: c.rollback(), epoch)
                raise
            else:
                try:
                    await lane.call(lambda c: c.commit(), epoch)
                finally:
                    self._bump()

    async def write_in_thread(self, fn: Callable[[Conn], T]) -> T:
        """Run `fn(conn)` as one write transaction in a single hop to the writer's thread.

        For fleet-scale writes: each statement of a `write()` transaction is a round trip
        between the loop and the writer thread (a future, a loop wake-up, the GIL handed over
        twice); a group commit of acks took four, a policy slice eleven, and while a push ran
        those hand-overs were a fifth of the loop's time. `fn` runs in the writer thread: it
        must only use `conn` and values it was given."""
        begin = self.engine.begin

        def run(conn: Conn) -> T:
            try:
                conn.execute(begin)
            except Exception as exc:
                raise _NotBegun(exc) from exc  # nothing ran: safe to try on a new connection
            try:
                result = fn(conn)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
            return result

        async with self._lock:
            try:
                return await self._again_if_dropped(self._writer, run)
            finally:
                self._bump()

    async def _again_if_dropped(self, lane: Lane[Conn], fn: Callable[[Conn], T]) -> T:
        """`fn` on the lane; once more on a new connection if the database had dropped the
        lane's (a PostgreSQL restart ends every session: the first call after it meets the dead
        one). Only for calls that did nothing before failing: a read, or a transaction's BEGIN."""
        for attempt in (1, 2):
            try:
                return await lane.call(fn)
            except Exception as exc:
                cause = exc.__cause__ if isinstance(exc, _NotBegun) else exc
                if cause is None or not self.engine.disconnected(cause):
                    raise cause if isinstance(exc, _NotBegun) and cause is not None else exc
                if attempt == 2:
                    raise DatabaseUnavailable(f"the database cannot be reached: {cause}") from cause
        raise AssertionError("unreachable")

    def _bump(self) -> None:
        # On the loop, once per write: a 19k fleet push commits thousands of times a second,
        # so waking waiters costs one attribute check unless someone waits.
        self.generation += 1
        if self._written is not None:
            self._written.set()
            self._written = None

    async def committed_after(self, generation: int) -> int:
        """Wait until a write of this process ends after `generation` was read (the counter
        moved past it); return the new generation. Tests use it to wait for the writer."""
        while self.generation <= generation:
            if self._written is None:
                self._written = asyncio.Event()
            await self._written.wait()
        return self.generation

    def least_busy_reader(self) -> LaneName:
        """The operators' lane with the fewest queries queued (never the bulk lane)."""
        return min(OPERATOR_LANES, key=lambda name: self._lanes[name].busy)

    async def data_version(self, lane: LaneName) -> Any:
        """A value that changes whenever any connection commits (this server's writer, another
        replica, or another process such as `rm-server host remove`), as `lane` sees it."""
        rows = await self.fetchall(self.engine.version_sql, lane=lane)
        return rows[0][0]

    @overload
    async def fetchall(self, sql: str, params: Iterable[Any] = (), lane: LaneName | None = None, *,
                       bulk: bool = False) -> list[Row]: ...

    @overload
    async def fetchall(self, sql: str, params: Iterable[Any] = (), lane: LaneName | None = None, *,
                       bulk: bool = False, convert: Callable[[list[Row]], T]) -> T: ...

    async def fetchall(self, sql: str, params: Iterable[Any] = (), lane: LaneName | None = None, *,
                       bulk: bool = False, convert: Callable[[list[Row]], T] | None = None) -> list[Row] | T:
        """Rows of one query on a reader lane; `bulk` for fleet-wide reads (the bulk lane).

        One call per query: a cursor left open between two awaits would keep the lane's
        snapshot alive, and a concurrent request would read data older than its own write.
        `convert(rows)` runs on the lane's thread and its result is returned instead: turning
        19k rows into Python values is tens of ms the loop would otherwise spend in one piece."""
        name = (LaneName.BULK if bulk else self.least_busy_reader()) if lane is None else lane
        args = tuple(params)
        if convert is None:
            return await self._again_if_dropped(self._lanes[name], lambda c: c.execute(sql, args).fetchall())
        return await self._again_if_dropped(self._lanes[name], lambda c: convert(c.execute(sql, args).fetchall()))

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def on_lane(self, lane: LaneName, fn: Callable[[Conn], T]) -> T:
        """Run `fn(conn)` on a reader lane's thread (a read of several statements, a backup)."""
        return await self._lanes[lane].call(fn)

    def lane(self, name: LaneName) -> Lane[Conn]:
        return self._lanes[name]

