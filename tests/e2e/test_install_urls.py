"""The install command with several server URLs: install.sh enrolls the agent with all of
them (`--server URL,URL` after the token, as for URLs the server announced with
`rm-server serve --agent-url`), and the agent comes online through the one that answers."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.e2e.install_helpers import InstallRoot, PyzServer, build_zipapps
from tests.e2e.test_install import interpreter

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(testrun_uid: str, tmp_path_factory) -> PyzServer:
    srv = PyzServer(tmp_path_factory.mktemp("pyz-server"), build_zipapps(testrun_uid) / "rm-server.pyz")
    yield srv
    srv.stop()


def test_install_enrolls_the_agent_with_every_url(server: PyzServer, tmp_path: Path) -> None:
    closed = socket.socket()  # a replica that is down: bound, never listening
    closed.bind(("127.0.0.1", 0))
    dead = f"https://127.0.0.1:{closed.getsockname()[1]}"
    box = InstallRoot(tmp_path, interpreter("3.11"))
    try:
        created = server.call("POST", "/enrollment-tokens", {"name": "urls"})
        token = created["token"]
        command = created["install_command"].replace(f"--token {token}", f"--token {token} --server {server.url},{dead}")
        out = box.run(command)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert "rm-agent is online as host" in out.stderr
        config = json.loads((box.root / "etc/restic-manager/agent.json").read_text())
        assert config["server_urls"] == [server.url, dead] and config["server_url"] == server.url
    finally:
        box.kill_agent()
        closed.close()
