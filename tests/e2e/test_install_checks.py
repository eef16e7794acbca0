"""The install one-liner and install.sh's checks against a server run from source (no zipapp
build needed): who runs install.sh (root without sudo, a sudoer, neither), and the restic
check, all before anything is written or the one-time token is spent.

The full install, with the built agent, is tests/e2e/test_install.py."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Server
from tests.e2e.install_helpers import InstallRoot

pytestmark = pytest.mark.e2e
RESTIC_018 = os.environ.get("RM_RESTIC_018", "")
OLD_RESTIC = '#!/bin/sh\n[ "$1" = version ] && { echo "restic 0.12.1 compiled with go1.18.1 on linux/amd64"; exit 0; }\nexit 1\n'


async def new_command(server: Server) -> tuple[str, dict]:
    status, created = await server.call("POST", "/enrollment-tokens", json={"name": "checks"})
    assert status == 201, created
    return created["install_command"], created


async def token_uses(server: Server, token_id: str) -> int:
    status, body = await server.call("GET", "/enrollment-tokens")
    assert status == 200, body
    return next(t["uses"] for t in body["tokens"] if t["id"] == token_id)


async def run(box: InstallRoot, command: str) -> subprocess.CompletedProcess:
    """In a thread: the server answering install.sh's downloads runs on this test's loop."""
    return await asyncio.to_thread(box.run, command, 120)


def with_old_restic(box: InstallRoot) -> None:
    (box.bin / "restic").write_text(OLD_RESTIC)
    (box.bin / "restic").chmod(0o755)


def with_agent_build(server: Server) -> None:
    """Any bytes do for checks that end before the agent is downloaded (install.sh needs its sum)."""
    (server.data_dir / "rm-agent.pyz").write_bytes(b"not an agent: the checks stop before it is fetched\n")


async def test_as_root_the_one_liner_runs_install_sh_without_sudo(server: Server, tmp_path: Path):
    box = InstallRoot(tmp_path, sys.executable)
    assert shutil.which("sudo", path=box.env["PATH"]) is None
    command, _ = await new_command(server)
    out = await run(box, command)
    # install.sh itself ran (as root, no sudo) and stopped at its first check that fails here.
    assert out.returncode == 1
    assert "install.sh: " in out.stderr and "has no agent build to hand out" in out.stderr, out.stderr
    assert "sudo" not in out.stderr
    assert box.files() == []


async def test_a_sudoer_runs_it_through_sudo(server: Server, tmp_path: Path):
    box = InstallRoot(tmp_path, sys.executable, sudoer=True)
    command, created = await new_command(server)
    out = await run(box, command)
    assert out.returncode == 1 and "has no agent build to hand out" in out.stderr, out.stderr
    (call,) = box.sudo_calls()
    assert re.fullmatch(rf"sh \S+/install\.sh --token {created['token']}", call), call


async def test_neither_root_nor_sudo_says_what_to_do(server: Server, tmp_path: Path):
    box = InstallRoot(tmp_path, sys.executable, not_root=True)
    command, created = await new_command(server)
    out = await run(box, command)
    assert out.returncode == 1
    assert out.stderr.strip() == "install.sh must run as root: paste this line in a root shell (su -), or install sudo"
    assert box.files() == [] and await token_uses(server, created["id"]) == 0


async def test_an_old_restic_is_refused_before_anything_is_written(server: Server, tmp_path: Path):
    with_agent_build(server)
    box = InstallRoot(tmp_path, sys.executable)
    with_old_restic(box)
    command, created = await new_command(server)
    out = await run(box, command)
    assert out.returncode == 1
    assert f"{box.bin}/restic is restic 0.12.1; rm-agent needs restic 0.14 or newer" in out.stderr, out.stderr
    assert "has no restic to hand out" in out.stderr and "https://github.com/restic/restic/releases" in out.stderr
    assert "nothing was installed" in out.stderr
    assert box.files() == [] and box.changes() == [] and await token_uses(server, created["id"]) == 0

    # A server that hands out restic offers it.
    (server.data_dir / "restic").write_bytes(b"any restic build an admin chose")
    command, _ = await new_command(server)
    out = await run(box, command)
    assert out.returncode == 1
    assert "paste the install command again with --install-restic after the token" in out.stderr, out.stderr


async def test_install_restic_installs_the_servers_restic_checked_by_its_sum(server: Server, tmp_path: Path):
    if not RESTIC_018:
        pytest.skip("RM_RESTIC_018 is not set (scripts/test fetches restic 0.18 from Debian trixie)")
    with_agent_build(server)
    shutil.copy(RESTIC_018, server.data_dir / "restic")
    box = InstallRoot(tmp_path, sys.executable)
    with_old_restic(box)
    command, created = await new_command(server)
    out = await run(box, command.replace(f"--token {created['token']}",
                                         f"--token {created['token']} --install-restic"))
    installed = box.root / "usr/local/bin/restic"
    assert f"install.sh: installed restic 0.18.0 as {installed}" in out.stderr, out.stderr
    assert installed.read_bytes() == Path(RESTIC_018).read_bytes() and os.access(installed, os.X_OK)
    # The fake agent file then fails its own check: what this run installed goes again, but the
    # restic the operator asked for stays (like a package they installed first), and the token is unused.
    assert out.returncode == 1 and "the agent does not run with" in out.stderr, out.stderr
    assert box.files() == ["usr/local/bin/restic"]
    assert await token_uses(server, created["id"]) == 0


async def test_a_restic_changed_on_the_server_fails_its_sum(server: Server, tmp_path: Path):
    with_agent_build(server)
    (server.data_dir / "restic").write_bytes(b"the restic install.sh was made for")
    box = InstallRoot(tmp_path, sys.executable)
    with_old_restic(box)
    _, created = await new_command(server)
    script = tmp_path / "install.sh"
    script.write_bytes(await fetch(server, "/install/install.sh"))
    swapped = b"another file in its place"
    (server.data_dir / "restic").write_bytes(swapped)
    out = await run(box, f"sh {script} --token {created['token']} --install-restic")
    assert out.returncode == 1
    assert f"restic failed its SHA-256 check (expected {hashlib.sha256(b'the restic install.sh was made for').hexdigest()}, " \
           f"got {hashlib.sha256(swapped).hexdigest()})" in out.stderr, out.stderr
    assert box.files() == []


async def fetch(server: Server, path: str) -> bytes:
    async with server.http.get(server.url + path) as resp:
        assert resp.status == 200
        return await resp.read()
