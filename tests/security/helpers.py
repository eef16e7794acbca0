"""What the security tests share: a server started with chosen settings, clients from
other loopback addresses, raw (hostile) agent frames."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp

from rm_core.ids import new_id
from tests.conftest import FakeClock, Server, sign_in_roles, start_server


@asynccontextmanager
async def custom_server(tmp_path: Path, **cfg: Any) -> AsyncIterator[Server]:
    """A server built with `cfg`, with an admin, an operator and a viewer signed in."""
    clock = FakeClock()
    runner, url, app = await start_server(tmp_path, clock, **cfg)
    try:
        async with aiohttp.ClientSession() as http:
            srv = Server(url, app, http, tmp_path / "data", clock)
            await sign_in_roles(srv)
            yield srv
    finally:
        await runner.cleanup()


@asynccontextmanager
async def client_from(address: str) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client whose connections come from `address` (any 127.x.y.z on Linux)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0))) as http:
        yield http


async def login(http: aiohttp.ClientSession, server: Server, username: str, password: str,
                headers: dict | None = None) -> tuple[int, Any]:
    async with http.post(server.api("/auth/login"), json={"username": username, "password": password},
                         headers=headers or {}) as resp:
        return resp.status, await resp.json()


def raw_frame(type_: str, payload: dict, ts: str | None = None) -> str:
    """An agent frame built by hand, so it can carry what the typed models would refuse."""
    return json.dumps({"type": type_, "id": new_id(), "ref": None,
                       "ts": ts or datetime.now(timezone.utc).isoformat(), "payload": payload})
