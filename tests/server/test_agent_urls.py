"""`rm-server serve --agent-url`: the URLs new agents are enrolled with, carried by install.sh
(whose SHA-256 the install command pins); the public URL when none is given."""

import subprocess
import sys
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import start_server
from tests.server.test_cli import Running

BIN = Path(sys.executable).parent


async def script(url: str) -> bytes:
    async with aiohttp.ClientSession() as http, http.get(url + "/install/install.sh") as resp:
        assert resp.status == 200
        return await resp.read()


async def test_install_script_carries_the_agent_urls(tmp_path):
    urls = ("https://replica-1.example:8950", "https://replica-2.example:8950")
    runner, url, _ = await start_server(tmp_path / "two", agent_urls=urls)
    try:
        body = await script(url)
    finally:
        await runner.cleanup()
    assert f"AGENT_URLS='{','.join(urls)}'".encode() in body
    assert f"SERVER='{url}'".encode() in body  # downloads still come from the public URL

    runner, url, _ = await start_server(tmp_path / "none")
    try:
        body = await script(url)
    finally:
        await runner.cleanup()
    assert f"AGENT_URLS='{url}'".encode() in body


def test_serve_takes_repeated_and_comma_separated_agent_urls(tmp_path):
    srv = Running("--listen", "127.0.0.1:0", "--agent-url", "http://a.example:8950/",
                  "--agent-url", "http://b.example:8950,http://c.example:8950", data_dir=tmp_path)
    try:
        with urllib.request.urlopen(srv.url + "/install/install.sh", timeout=30) as resp:
            body = resp.read()
    finally:
        srv.stop()
    assert b"AGENT_URLS='http://a.example:8950,http://b.example:8950,http://c.example:8950'" in body


@pytest.mark.parametrize("value, said", [("ftp://a.example", "must start with http:// or https://"),
                                         ("https://a.example:8950?x=1", "query"),
                                         ("https://a.example:70000", "invalid port")])
def test_a_bad_agent_url_is_refused_by_name(tmp_path, value, said):
    out = subprocess.run([str(BIN / "rm-server"), "serve", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0",
                          "--agent-url", "https://ok.example", "--agent-url", value],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--agent-url" in out.stderr and said in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
