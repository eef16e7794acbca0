"""Operators and their login sessions."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from rm_core.api import Operator
from rm_core.enums import Role
from rm_core.ids import new_id
from rm_server.store.base import Table, Tx
from rm_server.store.common import Actor, Conflict, NotFound, dt, iso
from rm_server.store.db import Row, one

_COLS = "id, username, role, created_at, disabled"
# Every REST request checks its session; during a 19k fleet push that query was one of a
# request's two trips to the busy database thread. A found session is remembered this long:
# it bounds how late a change made by another process (`rm-server admin …` on the same
# database) applies. Changes made by this server (logout, role, password, disable, delete)
# forget every remembered session at once; expiry is checked on every use.
SESSION_CACHE_SECONDS = 2.0
SESSION_CACHE_MAX = 10_000


def _operator(row: Row) -> Operator:
    return Operator(
        id=row["id"], username=row["username"], role=Role(row["role"]),
        created_at=dt(row["created_at"]), disabled=bool(row["disabled"]),
    )


class Operators(Table):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        # token hash -> (operator, session expiry, remembered until on the monotonic clock)
        self._sessions: dict[str, tuple[Operator, str, float]] = {}
        self._generation = 0  # bumped by every change: a lookup begun before it is not kept

    def _forget_sessions(self) -> None:
        self._sessions.clear()
        self._generation += 1

    async def count(self) -> int:
        return int(one(await self.db.fetchone("SELECT count(*) FROM operators"))[0])

    async def all(self) -> list[Operator]:
        rows = await self.db.fetchall(f"SELECT {_COLS} FROM operators ORDER BY username")
        return [_operator(r) for r in rows]

    async def get(self, operator_id: str) -> Operator:
        row = await self.db.fetchone(f"SELECT {_COLS} FROM operators WHERE id = ?", (operator_id,))
        if row is None:
            raise NotFound("operator", operator_id)
        return _operator(row)

    async def password_hash(self, username: str) -> tuple[Operator, str] | None:
        row = await self.db.fetchone(
            f"SELECT {_COLS}, password_hash FROM operators WHERE username = ?", (username,)
        )
        return None if row is None else (_operator(row), row["password_hash"])

    async def create(
        self, actor: Actor, username: str, role: Role, password_hash: str, *, only_if_none: bool = False
    ) -> Operator:
        async with self.tx() as tx:
            if only_if_none:
                if one(await tx.fetchone("SELECT count(*) FROM operators"))[0]:
                    raise Conflict("an operator already exists; bootstrap is closed")
            if await tx.fetchone("SELECT 1 FROM operators WHERE username = ?", (username,)):
                raise Conflict(f"operator {username!r} already exists", {"field": "username"})
            op_id = new_id()
            await tx.execute(
                "INSERT INTO operators (id, username, role, password_hash, created_at) VALUES (?, ?, ?, ?, ?)",
                (op_id, username, role.value, password_hash, iso(tx.now)),
            )
            await tx.audit(actor, "operator.create", op_id, {"username": username, "role": role.value})
        return await self.get(op_id)

    async def update(
        self, actor: Actor, operator_id: str, *, role: Role | None, password_hash: str | None,
        disabled: bool | None, keep_session: str = "",
    ) -> Operator:
        """`keep_session`: the token hash of the session making the change; a new password ends
        every other session of the operator, not the one that set it."""
        async with self.tx() as tx:
            row = await tx.fetchone("SELECT role, disabled FROM operators WHERE id = ?", (operator_id,))
            if row is None:
                raise NotFound("operator", operator_id)
            if actor.id == operator_id and ((role is not None and role.value != row["role"]) or disabled):
                # Locking oneself out is never what was meant; another admin can do it.
                raise Conflict("you cannot change your own role or disable yourself; another admin can",
                               {"field": "role" if role is not None and role.value != row["role"] else "disabled"})
            demoting = (role is not None and role != Role.admin) or disabled
            if demoting and row["role"] == "admin":
                await self._keep_an_admin(tx, operator_id)
            changed = []
            if role is not None:
                await tx.execute("UPDATE operators SET role = ? WHERE id = ?", (role.value, operator_id))
                changed.append("role")
            if password_hash is not None:
                await tx.execute("UPDATE operators SET password_hash = ? WHERE id = ?", (password_hash, operator_id))
                await tx.execute("DELETE FROM sessions WHERE operator_id = ? AND token_hash != ?",
                                 (operator_id, keep_session))
                changed.append("password")
            if disabled is not None:
                await tx.execute("UPDATE operators SET disabled = ? WHERE id = ?", (int(disabled), operator_id))
                if disabled:
                    await tx.execute("DELETE FROM sessions WHERE operator_id = ?", (operator_id,))
                changed.append("disabled")
            await tx.audit(actor, "operator.update", operator_id, {"changed": changed, "role": role})
        self._forget_sessions()
        return await self.get(operator_id)

    async def delete(self, actor: Actor, operator_id: str) -> None:
        async with self.tx() as tx:
            row = await tx.fetchone("SELECT username, role FROM operators WHERE id = ?", (operator_id,))
            if row is None:
                raise NotFound("operator", operator_id)
            if actor.id == operator_id:
                raise Conflict("you cannot delete yourself; another admin can")
            if row["role"] == "admin":
                await self._keep_an_admin(tx, operator_id)
            await tx.execute("DELETE FROM operators WHERE id = ?", (operator_id,))
            await tx.audit(actor, "operator.delete", operator_id, {"username": row["username"]})
        self._forget_sessions()

    @staticmethod
    async def _keep_an_admin(tx: Tx, operator_id: str) -> None:
        row = one(await tx.fetchone(
            "SELECT count(*) FROM operators WHERE role = 'admin' AND disabled = 0 AND id != ?", (operator_id,)
        ))
        if row[0] == 0:
            raise Conflict("this is the last active admin; make another admin first")

    # ------------------------------------------------------------ sessions

    async def create_session(self, operator: Operator, token_hash: str, ttl: timedelta) -> None:
        async with self.tx() as tx:
            await tx.execute(
                "INSERT INTO sessions (token_hash, operator_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (token_hash, operator.id, iso(tx.now), iso(tx.now + ttl)),
            )
            await tx.execute("DELETE FROM sessions WHERE expires_at < ?", (iso(tx.now),))
            await tx.audit(Actor("user", operator.id, operator.username), "auth.login", operator.id)

    async def session_operator(self, token_hash: str, now: datetime) -> Operator | None:
        at = iso(now)
        known = self._sessions.get(token_hash)
        if known is not None and known[1] > at and known[2] > time.monotonic():
            return known[0]
        generation = self._generation
        row = await self.db.fetchone(
            f"SELECT o.{', o.'.join(_COLS.split(', '))}, s.expires_at FROM sessions s"
            " JOIN operators o ON o.id = s.operator_id"
            " WHERE s.token_hash = ? AND s.expires_at > ? AND o.disabled = 0",
            (token_hash, at),
        )
        if row is None:
            self._sessions.pop(token_hash, None)
            return None
        operator = _operator(row)
        if generation == self._generation:  # no change committed while the query ran
            if len(self._sessions) >= SESSION_CACHE_MAX:
                self._sessions.clear()
            self._sessions[token_hash] = (operator, row["expires_at"], time.monotonic() + SESSION_CACHE_SECONDS)
        return operator

    async def delete_session(self, actor: Actor, token_hash: str) -> None:
        async with self.tx() as tx:
            await tx.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))
            await tx.audit(actor, "auth.logout", actor.id)
        self._forget_sessions()
