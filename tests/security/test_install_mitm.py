"""The install one-liner refuses a man in the middle (item 4): the command a self-signed
server hands out, run with `sh` against an impostor holding another self-signed
certificate for the same name, never gets to run what the impostor served."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
from aiohttp import web

from rm_server.app import create_app
from rm_server.config import ServerConfig
from rm_server.tls import ensure_self_signed, fingerprint_pem, server_context
from tests.conftest import ADMIN_PASSWORD, FakeClock

RAN = "INSTALL-SCRIPT-RAN"


async def _serve(app: web.Application, ctx) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    return runner, runner.addresses[0][1]


async def _run(command: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec("sh", "-c", command, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(errors="replace")


async def test_install_command_refuses_an_impostor_certificate(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "fake").mkdir()
    real_cert, real_key = ensure_self_signed(tmp_path / "real", ["127.0.0.1"])
    fake_cert, fake_key = ensure_self_signed(tmp_path / "fake", ["127.0.0.1"])  # same name, another key
    pem = real_cert.read_bytes()
    config = ServerConfig(data_dir=tmp_path / "data", clock=FakeClock(), run_background=False,
                          self_signed_cert_pem=pem, tls_fingerprint=fingerprint_pem(pem))
    real_runner, real_port = await _serve(create_app(config), server_context(real_cert, real_key))
    fake_runner = None
    try:
        config.public_url = f"https://127.0.0.1:{real_port}"

        async def evil(request: web.Request) -> web.Response:
            return web.Response(text=f"echo {RAN}-BY-IMPOSTOR\n")

        impostor = web.Application()
        impostor.router.add_get("/install/install.sh", evil)
        fake_runner, fake_port = await _serve(impostor, server_context(fake_cert, fake_key))
        pin = aiohttp.Fingerprint(bytes.fromhex(fingerprint_pem(pem)))
        async with aiohttp.ClientSession() as http:
            api = f"{config.public_url}/api/v1"
            boot = (config.data_dir / "bootstrap-token").read_text().strip()
            await http.post(f"{api}/auth/bootstrap", ssl=pin,
                            json={"token": boot, "username": "admin", "password": ADMIN_PASSWORD})
            async with http.post(f"{api}/auth/login", ssl=pin,
                                 json={"username": "admin", "password": ADMIN_PASSWORD}) as r:
                session = (await r.json())["token"]
            async with http.post(f"{api}/enrollment-tokens", json={}, ssl=pin,
                                 headers={"Authorization": f"Bearer {session}"}) as r:
                command = (await r.json())["install_command"]
        # Stop before root: the checked script is printed instead of run (as root, or with sudo).
        command, n = re.subn(r'\$r sh "\$d/install\.sh"[^;&]*', f'echo {RAN}', command)
        assert n == 1, command

        status, out = await _run(command)  # the genuine server: the command works
        assert status == 0 and RAN in out, out

        hijacked = command.replace(f"127.0.0.1:{real_port}", f"127.0.0.1:{fake_port}")
        status, out = await _run(hijacked)
        assert status != 0 and RAN not in out, out
    finally:
        if fake_runner is not None:
            await fake_runner.cleanup()
        await real_runner.cleanup()
