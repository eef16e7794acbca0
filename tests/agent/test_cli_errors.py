"""`rm-agent enroll` against a server it cannot trust or reach: say what to do, no reprs."""

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server.test_cli import Running

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    srv = Running("--listen", "127.0.0.1:0", "--self-signed", data_dir=tmp_path_factory.mktemp("srv"))
    fp = next(m.group(1) for line in srv.lines if (m := re.search(r"fingerprint: ([0-9a-f]{64})", line)))
    yield srv.url, fp
    srv.stop()


def enroll(tmp_path, *args):
    out = subprocess.run([str(BIN / "rm-agent"), "enroll", "--token", "rme_x", "--config",
                          str(tmp_path / "agent.json"), *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and "object at 0x" not in out.stderr, out.stderr
    assert "SSLCertVerificationError" not in out.stderr and "ServerDisconnectedError" not in out.stderr
    return out.stderr


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_self_signed_server_without_fingerprint_says_to_pass_it(tls_server, tmp_path):
    url, _ = tls_server
    err = enroll(tmp_path, "--server", url)
    assert "self-signed" in err and "--fingerprint" in err


def test_http_url_against_https_port_says_use_https(tls_server, tmp_path):
    url, _ = tls_server
    err = enroll(tmp_path, "--server", url.replace("https://", "http://"))
    assert "use an https:// URL" in err


def test_wrong_fingerprint_is_named(tls_server, tmp_path):
    url, fp = tls_server
    wrong = ("0" if fp[0] != "0" else "1") + fp[1:]
    err = enroll(tmp_path, "--server", url, "--fingerprint", wrong)
    assert "fingerprint mismatch" in err and fp in err


def test_nothing_listening_with_a_pin_names_host_and_port(tmp_path):
    port = closed_port()
    err = enroll(tmp_path, "--server", f"https://127.0.0.1:{port}", "--fingerprint", "ab" * 32)
    assert f"cannot connect to 127.0.0.1:{port}" in err
