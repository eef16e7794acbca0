"""Shared fixtures: a real rm-server app on port 0 with a temporary data dir."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from rm_core import protocol as p
from rm_core.version import PROTOCOL_VERSION
from rm_server.app import create_app
from rm_server.config import ServerConfig
from rm_server.keys import AGENTS, STORE
from tests import pgcluster

ADMIN_PASSWORD = "correct horse battery"


class FakeClock:
    """A clock tests move by hand, for rules about time (sweeper, expiry, stale)."""

    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll (sync or async) `predicate` until truthy, failing with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class Server:
    url: str
    app: web.Application
    http: aiohttp.ClientSession
    data_dir: Path
    clock: FakeClock
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def store(self):
        return self.app[STORE]

    @property
    def hub(self):
        return self.app[AGENTS]

    def api(self, path: str) -> str:
        return f"{self.url}/api/v1{path}"

    def auth(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    async def call(self, method: str, path: str, role: str | None = "admin", **kw) -> tuple[int, Any]:
        headers = kw.pop("headers", {})
        if role:
            headers |= self.auth(role)
        async with self.http.request(method, self.api(path) if path.startswith("/") else path,
                                     headers=headers, **kw) as resp:
            body = await resp.json() if resp.content_type == "application/json" else await resp.text()
            return resp.status, body

    async def login(self, username: str, password: str) -> str:
        status, body = await self.call("POST", "/auth/login", role=None, json={"username": username, "password": password})
        assert status == 200, body
        return body["token"]

    async def enroll(self, hostname: str = "web-1", **token_kw) -> tuple[str, str]:
        status, tok = await self.call("POST", "/enrollment-tokens", json=token_kw)
        assert status == 201, tok
        status, body = await self.call("POST", "/agents/enroll", role=None,
                                       json={"token": tok["token"], "hostname": hostname, "os": "linux",
                                             "arch": "x86_64", "agent_version": "test"})
        assert status == 201, body
        return body["host_id"], body["agent_token"]


# Which database the in-process servers use (tests/pgcluster.py has the PostgreSQL cluster):
# every test of the server suites (tests/server, tests/security) runs once on each backend,
# `[sqlite]` and `[postgresql]` in its id, in one run so the workers share the load.
# RM_TEST_DATABASE=sqlite or =postgresql runs the whole suite on that one backend instead.
FORCED = os.environ.get("RM_TEST_DATABASE")
BOTH_BACKENDS = ("tests/server/", "tests/security/")
BACKEND = {"now": FORCED or "sqlite"}  # the running test's (set by the autouse `database` fixture)
# For tests of SQLite's own files (modes, WAL, a second process on the file): SQLite only.
sqlite_only = pytest.mark.sqlite_only


# For a test about the HTTP surface alone, whose every call is checked on both backends by the
# rest of the suite (the schemathesis run): once, on the run's default backend.
one_backend = pytest.mark.one_backend


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: about SQLite's own database file; never run on PostgreSQL")
    config.addinivalue_line("markers", "one_backend: runs once, not once per database backend")


# Slowest first: xdist hands tests out in collection order (one at a time: scripts/test), and a
# run ends when its last long test does; started first, the long ones (real processes, real
# restic) overlap the many short ones instead of running alone at the end. The three files
# with a test over a minute come before their folders.
FIRST = ("tests/reliability/", "tests/e2e/test_install.py", "tests/server/test_api_contract.py", "tests/e2e/",
         "tests/agent/", "tests/tui/")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        where = item.path.relative_to(config.rootpath).as_posix()
        return next((i for i, prefix in enumerate(FIRST) if where.startswith(prefix)), len(FIRST))

    items.sort(key=rank)  # stable: within a folder, the files' own order


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if FORCED or "database" not in metafunc.fixturenames:
        return
    where = metafunc.definition.path.relative_to(metafunc.config.rootpath).as_posix()
    postgres_itself = {"pg_cluster", "cluster"} & set(metafunc.fixturenames)  # replicas, migrate-store
    once = any(metafunc.definition.get_closest_marker(m) for m in ("sqlite_only", "one_backend"))
    if where.startswith(BOTH_BACKENDS) and not postgres_itself and not once:
        metafunc.parametrize("database", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture(autouse=True)
def database(request: pytest.FixtureRequest) -> str:
    """The backend of this test's servers."""
    backend = getattr(request, "param", None) or FORCED or "sqlite"
    if backend != "sqlite" and request.node.get_closest_marker("sqlite_only"):
        pytest.skip("about SQLite's database file")
    BACKEND["now"] = backend
    return backend


@pytest.fixture(scope="session", autouse=True)
def _stop_postgres() -> Any:
    """The worker's PostgreSQL cluster (started by the first test that needs it) ends with the session."""
    yield
    cluster = pgcluster.SUITE.pop("cluster", None)
    if cluster is not None:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_cluster() -> Any:
    """A PostgreSQL cluster for tests about PostgreSQL itself (replicas): this worker's."""
    yield from pgcluster.shared_or_own()


async def start_server(tmp_path: Path, clock: FakeClock | None = None, **cfg) -> tuple[web.AppRunner, str, web.Application]:
    cfg.setdefault("database_url", pgcluster.test_database(tmp_path) if BACKEND["now"] == "postgresql" else None)
    config = ServerConfig(data_dir=tmp_path / "data", clock=clock or FakeClock(), run_background=False, **cfg)
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    config.public_url = f"http://127.0.0.1:{port}"
    return runner, config.public_url, app


async def sign_in_roles(srv: Server) -> None:
    """Bootstrap the admin with the server's token, then add and sign in an operator and a viewer."""
    token = (srv.data_dir / "bootstrap-token").read_text().strip()
    status, body = await srv.call("POST", "/auth/bootstrap", role=None,
                                  json={"token": token, "username": "admin", "password": ADMIN_PASSWORD})
    assert status == 201, body
    srv.tokens["admin"] = await srv.login("admin", ADMIN_PASSWORD)
    for role in ("operator", "viewer"):
        status, body = await srv.call("POST", "/operators",
                                      json={"username": role, "password": ADMIN_PASSWORD, "role": role})
        assert status == 201, body
        srv.tokens[role] = await srv.login(role, ADMIN_PASSWORD)


_SEED: dict[str, Any] = {}  # this worker's signed-in data dir (and database), made once


async def seeded(tmp_path: Path) -> dict[str, str]:
    """Give `tmp_path` a data dir (and database) where admin, operator and viewer exist and are
    signed in, as sign_in_roles leaves it; return their session tokens.

    Signing in three operators costs six scrypt runs (~1 s of a test's set-up, hundreds of
    tests); they run once per test worker instead, on a server that is then stopped, and each
    test starts from a copy: SQLite's backup API for the file, PostgreSQL's CREATE DATABASE …
    TEMPLATE for a database."""
    backend = BACKEND["now"]
    if backend not in _SEED:
        base = Path(tempfile.mkdtemp(prefix="rm-seed-"))
        url = pgcluster.seed_database() if backend == "postgresql" else None
        runner, base_url, app = await start_server(base, FakeClock(), database_url=url)
        try:
            async with aiohttp.ClientSession() as http:
                srv = Server(base_url, app, http, base / "data", FakeClock())
                await sign_in_roles(srv)
        finally:
            await runner.cleanup()
        _SEED[backend] = {"dir": base / "data", "tokens": dict(srv.tokens)}
    seed = _SEED[backend]
    data = tmp_path / "data"
    data.mkdir(parents=True, mode=0o700)
    for name in ("master.key", "metrics-token"):
        shutil.copy2(seed["dir"] / name, data / name)
    if backend == "postgresql":
        pgcluster.test_database(tmp_path, template=pgcluster.SEED)
    else:
        with sqlite3.connect(seed["dir"] / "server.db") as src, sqlite3.connect(data / "server.db") as dst:
            src.backup(dst)
    return dict(seed["tokens"])


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    """A running server with an admin, an operator and a viewer signed in."""
    clock = FakeClock()
    clock.now = datetime.now(timezone.utc)
    tokens = await seeded(tmp_path)
    runner, url, app = await start_server(tmp_path, clock)
    async with aiohttp.ClientSession() as http:
        srv = Server(url, app, http, tmp_path / "data", clock, tokens)
        try:
            yield srv
        finally:
            await runner.cleanup()


@pytest.fixture
async def webhook() -> AsyncIterator[tuple[str, list[dict]]]:
    """A receiver for the server's webhook posts on port 0: (its URL, the JSON bodies it got)."""
    received: list[dict] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/hook", received
    finally:
        await runner.cleanup()



async def set_webhook(server: Server, url: str) -> None:
    """Point the server's webhook at `url` (the webhook fixture's receiver)."""
    status, body = await server.call("PUT", "/settings", json={"webhook_url": url})
    assert status == 200, body


class TestAgent:
    """A protocol-level agent: speaks the WebSocket protocol directly, for server tests."""

    __test__ = False

    def __init__(self, server: Server, agent_token: str) -> None:
        self.server = server
        self.token = agent_token
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.received: list[p.Envelope] = []

    async def connect(self, *, hello: bool = True, protocol_version: int = PROTOCOL_VERSION,
                      running_jobs: list[str] | None = None, applied: int = 0,
                      features: list[str] | None = None) -> p.Envelope | None:
        self.ws = await self.server.http.ws_connect(self.server.api("/agent/ws"),
                                                    headers={"Authorization": f"Bearer {self.token}"})
        if not hello:
            return None
        await self.send(p.Hello(protocol_version=protocol_version, agent_version="test", hostname="web-1",
                                os="linux", arch="x86_64", restic_version="0.14.0",
                                applied_schedule_version=applied, running_jobs=running_jobs or [],
                                features=features or []))
        return await self.expect("hello.ok", "error")

    async def send(self, payload: p.Payload) -> None:
        await self.ws.send_str(p.encode(p.message(payload)))

    async def recv(self, timeout: float = 5.0) -> p.Envelope | None:
        msg = await self.ws.receive(timeout=timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            return None
        env = p.parse_server_message(msg.data)
        self.received.append(env)
        return env

    async def expect(self, *types: str, timeout: float = 5.0) -> p.Envelope:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {types} within {timeout}s; got {[e.type for e in self.received]}")
            env = await self.recv(remaining)
            if env is None:
                raise AssertionError(f"socket closed while waiting for {types} (code {self.ws.close_code})")
            if env.type in types:
                return env

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
