"""SQLite access: one writer connection behind a lock, one reader, numbered migrations."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

T = TypeVar("T")

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


# Reader 0 is the bulk lane: what agents and tickers read in bulk (a push's schedule sets,
# hello batches, token lookups, host events, the tickers' fleet-wide reads) queues there.
# Operators' queries take the least busy of the others, so a paged list or /healthz never
# waits behind a fleet read, and a push never waits behind a console's 19k-host list
# (during a 19k push the paged p99 was the full list's: 243 vs 255 ms). The full list is
# always built on reader 1: its 9 MB of buffers then stay in one thread's malloc arena
# (built on any of three readers, the server's RSS peak grew by ~50 MB), and while it
# builds, readers 2 and 3 serve everything else.
READERS = 4
BULK = 0
WHOLE_LIST = 1


class SchemaTooNew(RuntimeError):
    """The database was written by a newer rm-server than this one."""


def migrations() -> list[tuple[int, str, str]]:
    """(number, file name, sql) for every bundled migration, in order."""
    found = []
    for entry in resources.files("rm_server.store.migrations").iterdir():
        m = _MIGRATION_NAME.match(entry.name)
        if m:
            found.append((int(m.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort()
    for expected, (number, name, _) in enumerate(found, start=1):
        if number != expected:
            raise RuntimeError(f"migration {name} out of sequence: expected {expected:04d}")
    return found


async def _connect(path: str) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    conn.row_factory = aiosqlite.Row
    await conn.execute("PRAGMA foreign_keys = ON")
    await conn.execute("PRAGMA busy_timeout = 10000")
    await conn.execute("PRAGMA synchronous = NORMAL")
    # 16 MiB of page cache per connection (the default is 2 MiB): at 19k hosts the hot
    # tables outgrow the default and every write re-reads pages.
    await conn.execute("PRAGMA cache_size = -16384")
    return conn


def _private(path: str) -> None:
    """The database holds sealed credentials, token hashes and the audit log: owner only,
    whatever umask or pre-existing directory it landed in. SQLite gives -wal and -shm the
    database file's mode, so creating it 0600 first covers them too; chmod fixes older files."""
    if path == ":memory:" or path.startswith("file:"):
        return
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path, path + "-wal", path + "-shm", path + "-journal"):
        try:
            os.chmod(name, 0o600)
        except FileNotFoundError:
            pass


class Database:
    """The server's database. Writes go through `write()`, reads through `fetch*`."""

    def __init__(self, path: str, writer: aiosqlite.Connection, readers: list[aiosqlite.Connection]):
        self.path = path
        self._writer = writer
        # Several readers (each its own thread; WAL lets them run beside the writer and each
        # other): a paged query need not wait behind a full fleet list or a push's reads.
        self._readers = readers
        self._busy = [0] * len(readers)
        self._lock = asyncio.Lock()
        # Bumped by every committed write of this process: a cheap first check for caches
        # (another process's writes show in data_version()).
        self.generation = 0
        self._written: asyncio.Event | None = None  # only while someone awaits committed_after()

    @classmethod
    async def open(cls, path: str | Path) -> "Database":
        path = str(path)
        _private(path)
        writer = await _connect(path)
        try:
            await writer.execute("PRAGMA journal_mode = WAL")
            _private(path)
            await cls._migrate(writer)
            readers = [await _connect(path) for _ in range(READERS)]
        except BaseException:
            await writer.close()
            raise
        return cls(path, writer, readers)

    @staticmethod
    async def _migrate(conn: aiosqlite.Connection) -> None:
        known = migrations()
        async with conn.execute("PRAGMA user_version") as cur:
            (current,) = await cur.fetchone()
        if current > len(known):
            raise SchemaTooNew(
                f"database schema version {current} is newer than this rm-server understands "
                f"({len(known)}); run the newer rm-server or restore a backup"
            )
        for number, name, sql in known[current:]:
            try:
                # Each script holds its own BEGIN ... PRAGMA user_version = N; COMMIT.
                await conn.executescript(sql)
            except Exception:
                if conn.in_transaction:
                    await conn.rollback()
                raise
            async with conn.execute("PRAGMA user_version") as cur:
                (now,) = await cur.fetchone()
            if now != number:
                raise RuntimeError(f"migration {name} did not set user_version to {number}")

    async def close(self) -> None:
        async with self._lock:
            for reader in self._readers:
                await reader.close()
            await self._writer.close()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """A short BEGIN IMMEDIATE transaction on the single writer connection."""
        async with self._lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException:
                await self._writer.rollback()
                raise
            else:
                try:
                    await self._writer.commit()
                finally:
                    self._bump()

    async def write_in_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` as one BEGIN IMMEDIATE transaction in a single hop to the writer thread.

        For fleet-scale writes: each statement of a `write()` transaction is a round trip
        between the loop and the writer thread (a future, a loop wake-up, the GIL handed over
        twice); a group commit of acks took four, a policy slice eleven, and while a push ran
        those hand-overs were a fifth of the loop's time. `fn` runs in the writer thread: it
        must only use `conn` and values it was given."""

        def run() -> T:
            conn = self._writer._conn  # aiosqlite's own connection, used on its own thread
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
            return result

        async with self._lock:
            try:
                return await self._writer._execute(run)
            finally:
                self._bump()

    def _bump(self) -> None:
        # On the loop, once per write: a 19k fleet push commits thousands of times a second,
        # so waking waiters costs one attribute check unless someone waits.
        self.generation += 1
        if self._written is not None:
            self._written.set()
            self._written = None

    async def committed_after(self, generation: int) -> int:
        """Wait until a write of this process ends after `generation` was read (the counter
        moved past it); return the new generation.

        The counter's own wait, so a caller need not poll it: the server has no use for it
        yet (its caches only compare generations), tests use it to wait for the writer."""
        while self.generation <= generation:
            if self._written is None:
                self._written = asyncio.Event()
            await self._written.wait()
        return self.generation

    # One call into the reader thread per query: a cursor left open between two awaits keeps
    # the shared reader's snapshot alive, and a concurrent request would then read data older
    # than its own committed write.
    def least_busy_reader(self) -> int:
        """The operators' reader with the fewest queries queued (never the bulk lane)."""
        busy = self._busy
        return min(range(1, len(busy)), key=busy.__getitem__)

    async def data_version(self, reader: int) -> int:
        """SQLite's data_version as `reader` sees it: it changes whenever another connection
        (this server's writer or another process, e.g. `rm-server host remove`) commits."""
        rows = await self.fetchall("PRAGMA data_version", reader=reader)
        return rows[0][0]

    async def fetchall(self, sql: str, params: Iterable[Any] = (), reader: int | None = None, *,
                       bulk: bool = False, convert: Callable[[list[Any]], T] | None = None) -> Any:
        """Rows of one query on a reader; `bulk` for fleet-wide reads (the bulk lane).

        `convert(rows)` runs in the reader thread and its result is returned instead: turning
        19k rows into Python values (JSON columns, timestamps) is tens of ms that the loop
        would spend in one piece, while in a thread the GIL gives the loop a turn every 5 ms."""
        i = (BULK if bulk else self.least_busy_reader()) if reader is None else reader
        self._busy[i] += 1
        try:
            conn = self._readers[i]
            if convert is None:
                return list(await conn.execute_fetchall(sql, tuple(params)))
            args = tuple(params)
            return await conn._execute(lambda: convert(conn._conn.execute(sql, args).fetchall()))
        finally:
            self._busy[i] -= 1

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def backup_to(self, out: str | Path) -> None:
        """Online backup (SQLite backup API): consistent while the server keeps writing."""
        target = await aiosqlite.connect(str(out))
        try:
            await self._readers[0].backup(target)
        finally:
            await target.close()
