"""The base of every store table class, and the transaction wrapper they write through."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

import aiosqlite

from rm_server.store.common import Actor, audit_row
from rm_server.store.db import Database

T = TypeVar("T")


class Tx:
    """One open write transaction; audit rows it appends are announced after commit."""

    def __init__(self, conn: aiosqlite.Connection, now: datetime) -> None:
        self.conn = conn
        self.now = now
        self.audited: list[dict[str, Any]] = []

    async def execute(self, sql: str, params: tuple = ()) -> aiosqlite.Cursor:
        return await self.conn.execute(sql, params)

    async def fetchone(self, sql: str, params: tuple = ()) -> aiosqlite.Row | None:
        async with self.conn.execute(sql, params) as cur:
            return await cur.fetchone()

    async def fetchall(self, sql: str, params: tuple = ()) -> list[aiosqlite.Row]:
        async with self.conn.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def audit(self, actor: Actor, action: str, target: str | None, details: dict | None = None) -> None:
        self.audited.append(await audit_row(self.conn, self.now, actor, action, target, details))


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
        self.clock = clock
        self._audit_listeners = audit_listeners

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[Tx]:
        async with self.db.write() as conn:
            tx = Tx(conn, self.clock())
            yield tx
        for entry in tx.audited:
            for listener in self._audit_listeners:
                listener(entry)

    async def tx_in_thread(self, fn: Callable[[sqlite3.Connection, datetime, list[dict[str, Any]]], T]) -> T:
        """`fn(conn, now, audited)` as one transaction in one hop to the writer thread
        (Database.write_in_thread); audit entries it appends to `audited` are announced after commit."""
        now = self.clock()
        audited: list[dict[str, Any]] = []
        result = await self.db.write_in_thread(lambda conn: fn(conn, now, audited))
        for entry in audited:
            for listener in self._audit_listeners:
                listener(entry)
        return result
