"""Operator accounts and their sessions: the first admin (bootstrap), the accounts an admin
manages, sign-in and sign-out. Passwords are hashed and checked here, in a worker thread
(scrypt takes tens of milliseconds: on the loop it would stall every connection)."""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from rm_core.api import LoginResponse, Operator, OperatorCreate, OperatorPatch
from rm_core.enums import Role
from rm_server.errors import Unauthorized
from rm_server.security import dummy_hash, hash_password, hash_token, new_token, verify_password
from rm_server.services.sign_ins import FailedSignIns
from rm_server.store import Actor, Conflict, Store


@dataclass
class BootstrapToken:
    """The one-time token that creates the first admin: its hash, and the file that shows it."""

    token_hash: str
    path: Path


@dataclass(eq=False)
class OperatorService:
    store: Store
    sign_ins: FailedSignIns
    session_ttl: timedelta
    # set at startup while no operator exists (app.py); spent by the first bootstrap call
    bootstrap_token: BootstrapToken | None = None

    async def bootstrap(self, token: str, username: str, password: str) -> Operator:
        """The first admin, made with the bootstrap token; the token works once."""
        expected = self.bootstrap_token
        if expected is None or not hmac.compare_digest(expected.token_hash, hash_token(token)):
            raise Unauthorized("bootstrap token is invalid or already used", code="invalid_token")
        try:
            op = await self.store.operators.create(Actor("bootstrap", None, username), username, Role.admin,
                                                   await _hash(password), only_if_none=True)
        except Conflict:
            self.bootstrap_token = None
            raise
        self.bootstrap_token = None
        expected.path.unlink(missing_ok=True)
        return op

    async def login(self, address: str, username: str, password: str) -> LoginResponse | None:
        """A new session for the right password of an enabled operator, else None (and the
        failure recorded, with its reason, for the admin: sign_ins.py).

        An unknown username costs as long as a wrong password (dummy_hash), so the answer's
        time does not tell which usernames exist."""
        found = await self.store.operators.password_hash(username)
        matches = await _verify(password, found[1] if found else dummy_hash())
        if not matches or found is None or found[0].disabled:
            # Recorded for the admin (audit and log) with the reason; the client learns none of it.
            reason = "unknown_user" if found is None else "wrong_password" if not matches else "disabled"
            await self.sign_ins.failed(address, username, reason)
            return None
        token = new_token("rms")
        await self.store.operators.create_session(found[0], hash_token(token), self.session_ttl)
        return LoginResponse(token=token, operator=found[0])

    async def logout(self, actor: Actor, token_hash: str) -> None:
        await self.store.operators.delete_session(actor, token_hash)

    async def create(self, actor: Actor, body: OperatorCreate) -> Operator:
        return await self.store.operators.create(actor, body.username, body.role, await _hash(body.password))

    async def update(self, actor: Actor, operator_id: str, body: OperatorPatch, keep_session: str = "") -> Operator:
        """Only the fields given change; a new password ends the operator's sessions but
        `keep_session` (the caller's, by token hash), disabling ends them all."""
        pw = await _hash(body.password) if body.password else None
        return await self.store.operators.update(actor, operator_id, role=body.role, password_hash=pw,
                                                 disabled=body.disabled, keep_session=keep_session)

    async def delete(self, actor: Actor, operator_id: str) -> None:
        await self.store.operators.delete(actor, operator_id)


async def _hash(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(None, hash_password, password)


async def _verify(password: str, stored: str) -> bool:
    return await asyncio.get_running_loop().run_in_executor(None, verify_password, password, stored)
