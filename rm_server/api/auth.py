"""Bootstrap of the first admin, login, logout, and who am I."""

from __future__ import annotations

from aiohttp import web

from rm_core.api import BootstrapBody, LoginBody, LoginResponse, Operator
from rm_core.enums import Role
from rm_server.api.common import OPERATOR_KEY, PUBLIC, TOKEN_HASH_KEY, actor, parse_body, reply, requires
from rm_server.api.doc import documented
from rm_server.errors import Unauthorized
from rm_server.keys import CONFIG, LIMITER, OPERATORS
from rm_server.login_limiter import client_address

routes = web.RouteTableDef()


@routes.post("/api/v1/auth/bootstrap")
@requires(PUBLIC)
@documented("Create the first admin with the one-time bootstrap token",
            description="The token is printed by `rm-server serve` and written to DATA_DIR/bootstrap-token "
                        "while no operator exists; it works once.",
            body=BootstrapBody, reply=Operator, status=201, errors=(401, 409),
            examples={"first admin": {"token": "rmb_…", "username": "alice", "password": "correct horse battery"}})
async def bootstrap(request: web.Request) -> web.Response:
    body = await parse_body(request, BootstrapBody)
    return reply(await request.app[OPERATORS].bootstrap(body.token, body.username, body.password), 201)


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
    limiter = request.app[LIMITER]
    cfg = request.app[CONFIG]
    address = client_address(request.remote, request.headers.get("X-Forwarded-For"), cfg.trusted_proxies)
    attempt = limiter.begin(address, body.username)  # counted now, before any await
    session: LoginResponse | None = None
    try:
        session = await request.app[OPERATORS].login(address, body.username, body.password)
    finally:
        limiter.finish(attempt, session is not None)
    if session is None:
        raise Unauthorized("wrong username or password", code="invalid_credentials")
    return reply(session)


@routes.post("/api/v1/auth/logout")
@requires(Role.viewer)
@documented("Sign out: end this session", reply=None, status=204)
async def logout(request: web.Request) -> web.Response:
    await request.app[OPERATORS].logout(actor(request), request[TOKEN_HASH_KEY])
    return web.Response(status=204)


@routes.get("/api/v1/me")
@requires(Role.viewer)
@documented("Who am I: the signed-in operator", reply=Operator)
async def me(request: web.Request) -> web.Response:
    return reply(request[OPERATOR_KEY])
