"""packaging/haproxy/haproxy.cfg (docs/operations.md, "PostgreSQL and replicas"): HAProxy's own
check accepts it, and run for real in front of two real replicas on a throwaway PostgreSQL it
passes TLS through (the client sees the replicas' one certificate), names each client to the
replicas in a PROXY header (a failed sign-in is logged under the client's address, not the
balancer's), checks each on /healthz, and takes a killed replica out while requests keep
being answered by the other."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rm_core.ids import new_id
from tests.processes import Proc, free_port, until

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "packaging" / "haproxy" / "haproxy.cfg"
HAPROXY = shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if Path(p).exists()), None)
needs_haproxy = pytest.mark.skipif(not HAPROXY, reason="haproxy missing (scripts/test installs Debian's package)")
BIN = Path(sys.executable).parent


@needs_haproxy
def test_the_packaged_config_is_valid():
    done = subprocess.run([HAPROXY, "-c", "-f", str(CONFIG)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Configuration file is valid" in done.stdout + done.stderr


def replica(data_dir: Path, url: str, *tls: str) -> tuple[Proc, int]:
    port = free_port()
    proc = Proc([str(BIN / "rm-server"), "serve", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}",
                 "--database", url, "--proxy-protocol", "--trusted-proxy", "127.0.0.1", *tls])
    proc.wait_line(r"rm-server listening on https://")
    return proc, port


def failed_sign_in(port: int, cert: Path, source: str) -> int:
    """A wrong password through the balancer from the local address `source`: the status."""
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.check_hostname = False
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10, source_address=(source, 0))
    try:
        conn.request("POST", "/api/v1/auth/login", body=json.dumps({"username": "someone", "password": "x" * 12}),
                     headers={"Content-Type": "application/json"})
        return conn.getresponse().status
    finally:
        conn.close()


def get(port: int, cert: Path, path: str = "/healthz") -> tuple[int, bytes]:
    """One HTTPS request through the balancer, trusting only the replicas' certificate."""
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.check_hostname = False
    with urllib.request.urlopen(f"https://127.0.0.1:{port}{path}", context=ctx, timeout=10) as resp:
        return resp.status, resp.read()


@needs_haproxy
@pytest.mark.e2e
def test_replicas_behind_the_packaged_config_and_one_killed(tmp_path, pg_cluster):
    url = pg_cluster.create_database(f"h{new_id().lower()}")
    first, port1 = replica(tmp_path / "r1", url, "--self-signed")
    cert, key = tmp_path / "r1" / "tls-cert.pem", tmp_path / "r1" / "tls-key.pem"
    second, port2 = replica(tmp_path / "r2", url, "--tls-cert", str(cert), "--tls-key", str(key),
                            "--master-key-file", str(tmp_path / "r1" / "master.key"))
    front = free_port()
    text = CONFIG.read_text()
    servers = re.findall(r"^\s*server replica\d .*$", text, flags=re.M)
    assert len(servers) == 3, "the packaged config names three replicas"
    text = text.replace(servers[0], f"    server replica1 127.0.0.1:{port1}")
    text = text.replace(servers[1], f"    server replica2 127.0.0.1:{port2}").replace(servers[2], "")
    text = text.replace("bind :8950", f"bind 127.0.0.1:{front}").replace("log stdout", "log stderr")
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(text)
    balancer = Proc([HAPROXY, "-db", "-f", str(cfg)])
    try:
        fingerprint = hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert.read_text())).hexdigest()
        deadline = time.monotonic() + 30
        while True:  # until HAProxy listens (each refused try is immediate)
            try:
                served = ssl.get_server_certificate(("127.0.0.1", front), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline or balancer.p.poll() is not None:
                    raise AssertionError("\n".join(balancer.lines))
                time.sleep(0.05)  # polling a port against a deadline
        assert hashlib.sha256(ssl.PEM_cert_to_DER_cert(served)).hexdigest() == fingerprint, \
            "TLS passes through: the client sees the replicas' certificate"
        for _ in range(10):
            status, body = get(front, cert)
            assert status == 200 and b'"ok"' in body
        assert failed_sign_in(front, cert, "127.0.0.3") == 401
        logged = until(lambda: [line for proc in (first, second) for line in proc.lines  # after the answer
                                if "sign-in failed for 'someone'" in line], "the sign-in failure in a replica's log", 30)
        assert all("from 127.0.0.3 " in line for line in logged), logged

        first.stop(signal.SIGKILL)
        balancer.wait_line(r"replica1 is DOWN", timeout=30)  # the /healthz check found it gone
        for _ in range(10):  # every request answered by the replica left
            status, body = get(front, cert)
            assert status == 200 and b'"ok"' in body
        assert not [line for line in balancer.lines if "replica2 is DOWN" in line], balancer.lines
    finally:
        balancer.stop()
        first.stop()
        second.stop()
