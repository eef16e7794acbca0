"""Bootstrap of the first admin, login, logout, and who am I."""

from __future__ import annotations

import asyncio
import hmac
from datetime import timedelta

from aiohttp import web

from rm_core.api import BootstrapBody, LoginBody, LoginResponse, Operator
from rm_core.enums import Role
from rm_server.api.common import OPERATOR_KEY, PUBLIC, TOKEN_HASH_KEY, actor, parse_body, reply, requires
from rm_server.api.doc import documented
from rm_server.errors import Unauthorized
from rm_server.keys import CONFIG, SIGN_INS, STORE
from rm_server.login_limiter import LoginLimiter, client_address
from rm_server.security import DUMMY_HASH, hash_password, hash_token, new_token, verify_password
from rm_server.store import Actor, Conflict

routes = web.RouteTableDef()

BOOTSTRAP = web.AppKey("bootstrap_token_hash", dict)
LIMITER = web.AppKey("login_limiter", object)


async def _hash(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(None, hash_password, password)


async def _verify(password: str, stored: str) -> bool:
    return await asyncio.get_running_loop().run_in_executor(None, verify_password, password, stored)


async def issue_session(request: web.Request, operator) -> LoginResponse:
    token = new_token("rms")
    ttl = timedelta(hours=request.app[CONFIG].session_ttl_hours)
    await request.app[STORE].operators.create_session(operator, hash_token(token), ttl)
    return LoginResponse(token=token, operator=operator)


@routes.post("/api/v1/auth/bootstrap")
@requires(PUBLIC)
@documented("Create the first admin with the one-time bootstrap token",
            description="The token is printed by `rm-server serve` and written to DATA_DIR/bootstrap-token "
                        "while no operator exists; it works once.",
            body=BootstrapBody, reply=Operator, status=201, errors=(401, 409),
            examples={"first admin": {"token": "rmb_…", "username": "alice", "password": "correct horse battery"}})
async def bootstrap(request: web.Request) -> web.Response:
    body = await parse_body(request, BootstrapBody)
    state = request.app[BOOTSTRAP]
    expected = state.get("hash")
    if not expected or not hmac.compare_digest(expected, hash_token(body.token)):
        raise Unauthorized("bootstrap token is invalid or already used", code="invalid_token")
    store = request.app[STORE]
    try:
        op = await store.operators.create(Actor("bootstrap", None, body.username), body.username, Role.admin,
                                          await _hash(body.password), only_if_none=True)
    except Conflict:
        state.clear()
        raise
    state.clear()
    path = state.get("path") or (request.app[CONFIG].data_dir / "bootstrap-token")
    path.unlink(missing_ok=True)
    return reply(op, 201)


@routes.post("/api/v1/auth/login")
@requires(PUBLIC)
@documented("Sign in: a session token for the Authorization header",
            description="Send the token as `Authorization: Bearer <token>`. Failed logins are limited per "
                        "client address and per username (429 with `retry_after`), and recorded in the "
                        "server log and the audit (`auth.login_failed`: username, client address, reason; "
                        "never the password).",
            body=LoginBody, reply=LoginResponse, errors=(401, 429),
            examples={"sign in": {"username": "alice", "password": "correct horse battery"}})
async def login(request: web.Request) -> web.Response:
    body = await parse_body(request, LoginBody)
    limiter: LoginLimiter = request.app[LIMITER]
    cfg = request.app[CONFIG]
    address = client_address(request.remote, request.headers.get("X-Forwarded-For"), cfg.trusted_proxies)
    attempt = limiter.begin(address, body.username)  # counted now, before any await
    ok = False
    try:
        found = await request.app[STORE].operators.password_hash(body.username)
        matches = await _verify(body.password, found[1] if found else DUMMY_HASH)
        ok = matches and found is not None and not found[0].disabled
        if not ok:
            # Recorded for the admin (audit and log) with the reason; the client learns none of it.
            reason = "unknown_user" if found is None else "wrong_password" if not matches else "disabled"
            await request.app[SIGN_INS].failed(address, body.username, reason)
            raise Unauthorized("wrong username or password", code="invalid_credentials")
        session = await issue_session(request, found[0])
    finally:
        limiter.finish(attempt, ok)
    return reply(session)


@routes.post("/api/v1/auth/logout")
@requires(Role.viewer)
@documented("Sign out: end this session", reply=None, status=204)
async def logout(request: web.Request) -> web.Response:
    await request.app[STORE].operators.delete_session(actor(request), request[TOKEN_HASH_KEY])
    return web.Response(status=204)


@routes.get("/api/v1/me")
@requires(Role.viewer)
@documented("Who am I: the signed-in operator", reply=Operator)
async def me(request: web.Request) -> web.Response:
    return reply(request[OPERATOR_KEY])
