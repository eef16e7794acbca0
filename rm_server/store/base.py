"""The base of every store table class, and the transaction wrapper they write through."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from rm_server.store.common import Actor, audit_row_sync
from rm_server.store.db import Conn, Database, Result, Row, Session

T = TypeVar("T")


class Tx:
    """One open write transaction; audit rows it appends are announced after commit."""

    def __init__(self, session: Session, now: datetime) -> None:
        self.session = session
        self.now = now
        self.audited: list[dict[str, Any]] = []

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        return await self.session.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Result:
        return await self.session.executemany(sql, rows)

    async def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
        return await self.session.insert_rows(table, columns, rows)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return await self.session.fetchone(sql, params)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self.session.fetchall(sql, params)

    async def audit(self, actor: Actor, action: str, target: str | None, details: dict[str, Any] | None = None) -> None:
        now = self.now
        self.audited.append(await self.session.run(
            lambda conn: audit_row_sync(conn, now, actor, action, target, details)))


class Table:
    """One resource's queries (hosts, jobs, ...): a database, a clock and audit listeners.

    Not named "Repo": in this product a repo is a restic repository."""

    def __init__(
        self,
        db: Database,
        clock: Callable[[], datetime],
        audit_listeners: list[Callable[[dict[str, Any]], None]],
    ) -> None:
        self.db = db
        self.d = db.dialect  # the few SQL differences between backends (store/dialect.py)
        self.clock = clock
        self._audit_listeners = audit_listeners

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[Tx]:
        async with self.db.write() as session:
            tx = Tx(session, self.clock())
            yield tx
        for entry in tx.audited:
            for listener in self._audit_listeners:
                listener(entry)

    async def tx_in_thread(self, fn: Callable[[Conn, datetime, list[dict[str, Any]]], T]) -> T:
        """`fn(conn, now, audited)` as one transaction in one hop to the writer thread
        (Database.write_in_thread); audit entries it appends to `audited` are announced after commit."""
        now = self.clock()
        audited: list[dict[str, Any]] = []
        result = await self.db.write_in_thread(lambda conn: fn(conn, now, audited))
        for entry in audited:
            for listener in self._audit_listeners:
                listener(entry)
        return result
