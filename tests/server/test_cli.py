"""rm-server as an admin runs it: real processes, real ports."""

import os
import re
import sqlite3
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def rm_server(*args, env=None, **kw):
    return subprocess.run([str(BIN / "rm-server"), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, **kw)


class Running:
    def __init__(self, *args, data_dir):
        self.proc = subprocess.Popen([str(BIN / "rm-server"), "serve", "--data-dir", str(data_dir), *args],
                                     stderr=subprocess.PIPE, text=True)
        self.lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            m = re.search(r"rm-server listening on (\S+)", line)
            if m:
                self.url = m.group(1)
                return
        self.stop()
        raise AssertionError("no ready line: " + "".join(self.lines))

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        finally:
            self.proc.stderr.close()


def test_version():
    out = rm_server("version")
    assert out.returncode == 0 and re.match(r"rm-server \d+\.\d+\.\d+", out.stdout)


def test_refuses_plain_http_off_loopback(tmp_path):
    out = rm_server("serve", "--data-dir", str(tmp_path), "--listen", "0.0.0.0:0")
    assert out.returncode == 2 and "--insecure-http" in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_listen_value(tmp_path):
    out = rm_server("serve", "--data-dir", str(tmp_path), "--listen", "nowhere")
    assert out.returncode == 2 and "HOST:PORT" in out.stderr


def test_serve_bootstrap_and_health(tmp_path):
    srv = Running("--listen", "127.0.0.1:0", data_dir=tmp_path)
    try:
        with urllib.request.urlopen(srv.url + "/healthz", timeout=5) as resp:
            assert resp.status == 200
        token = (tmp_path / "bootstrap-token").read_text().strip()
        assert any(token in line for line in srv.lines), "bootstrap token printed at first start"
    finally:
        srv.stop()


def test_self_signed_prints_fingerprint_that_matches_the_cert(tmp_path):
    srv = Running("--listen", "127.0.0.1:0", "--self-signed", data_dir=tmp_path)
    try:
        fp_line = next(line for line in srv.lines if "fingerprint" in line)
        fingerprint = fp_line.strip().split()[-1]
        assert re.fullmatch(r"[0-9a-f]{64}", fingerprint)
        assert srv.url.startswith("https://")
        host, port = srv.url.removeprefix("https://").split(":")
        der = ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate((host, int(port))))
        import hashlib

        assert hashlib.sha256(der).hexdigest() == fingerprint
    finally:
        srv.stop()


def test_operator_add_and_backup_db(tmp_path):
    env = {"RM_DATA_DIR": str(tmp_path / "d"), "RM_OPERATOR_PASSWORD": "a-long-password"}
    out = rm_server("operator", "add", "alice", "--role", "admin", env=env)
    assert out.returncode == 0, out.stderr
    again = rm_server("operator", "add", "alice", "--role", "admin", env=env)
    assert again.returncode == 1 and "already exists" in again.stderr
    bad = rm_server("operator", "add", "bob", "--role", "king", env=env)
    assert bad.returncode == 2 and "king" in bad.stderr
    srv = Running("--listen", "127.0.0.1:0", data_dir=tmp_path / "d")
    try:
        out = rm_server("backup-db", str(tmp_path / "copy.db"), env=env)
        assert out.returncode == 0, out.stderr
    finally:
        srv.stop()
    conn = sqlite3.connect(tmp_path / "copy.db")
    assert conn.execute("SELECT username FROM operators").fetchall() == [("alice",)]
    conn.close()
    assert (tmp_path / "copy.db").stat().st_mode & 0o077 == 0
    refused = rm_server("backup-db", str(tmp_path / "copy.db"), env=env)
    assert refused.returncode == 1 and "refusing" in refused.stderr


@pytest.mark.parametrize("args", [["--tls-cert", "/nonexistent"], ["--self-signed", "--tls-cert", __file__]])
def test_tls_flag_errors_are_clear(tmp_path, args):
    out = rm_server("serve", "--data-dir", str(tmp_path), *args)
    assert out.returncode == 2 and "Traceback" not in out.stderr


def test_operator_add_reads_a_piped_password(tmp_path):
    env = {"RM_DATA_DIR": str(tmp_path / "d")}
    env_clean = {k: v for k, v in os.environ.items() if k != "RM_OPERATOR_PASSWORD"}
    out = subprocess.run([str(BIN / "rm-server"), "operator", "add", "dora", "--role", "operator"],
                         input="a-long-password\n", capture_output=True, text=True, timeout=60, env={**env_clean, **env})
    assert out.returncode == 0, out.stderr
    assert "a-long-password" not in out.stdout + out.stderr
    short = subprocess.run([str(BIN / "rm-server"), "operator", "add", "eve", "--role", "operator"],
                           input="short\n", capture_output=True, text=True, timeout=60, env={**env_clean, **env})
    assert short.returncode == 2 and "at least 8 characters" in short.stderr


def test_sigterm_stops_cleanly(tmp_path):
    srv = Running("--listen", "127.0.0.1:0", data_dir=tmp_path)
    srv.proc.terminate()
    rest = srv.proc.stderr.read()
    assert srv.proc.wait(15) == 0, rest
    srv.proc.stderr.close()
    assert '"msg": "stopped"' in rest and "Traceback" not in rest
