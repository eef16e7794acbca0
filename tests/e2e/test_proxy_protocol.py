"""`rm-server serve --proxy-protocol --trusted-proxy IP` as a real process (rm_server/proxy_protocol.py):
a trusted balancer's connections name their client in a PROXY header before TLS, and sign-in
failures are counted and logged under that client; anyone else's header is no claim; a
trusted peer without a header, or too slow to send one, is closed and costs others nothing."""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import socket
import ssl
import sys
import time
from pathlib import Path

import pytest

from rm_server.proxy_protocol import HEADER_SECONDS, V2_SIGNATURE, BadHeader, header_length, parse
from tests.processes import Proc, free_port

BIN = Path(sys.executable).parent


def v2(client: str, command: int = 1) -> bytes:
    ip = ipaddress.ip_address(client)
    family = 0x11 if ip.version == 4 else 0x21  # TCP over IPv4 / IPv6
    body = ip.packed + ipaddress.ip_address("127.0.0.1" if ip.version == 4 else "::1").packed + bytes(4)
    return V2_SIGNATURE + bytes([0x20 | command, family]) + len(body).to_bytes(2, "big") + body


@pytest.mark.parametrize("header,client", [
    (b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 8950\r\n", "203.0.113.7"),
    (b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 8950\r\n", "2001:db8::7"),
    (b"PROXY UNKNOWN\r\n", None),
    (v2("198.51.100.9"), "198.51.100.9"),
    (v2("2001:db8::9"), "2001:db8::9"),
    (v2("198.51.100.9", command=0), None),  # LOCAL: the balancer's own health check
])
def test_headers_name_their_client(header, client):
    assert header_length(header + b"\x16\x03\x01") == len(header)  # TLS starts on the next byte
    assert header_length(header[:10]) is None  # more is needed to know
    assert parse(header) == client


@pytest.mark.parametrize("start", [
    b"\x16\x03\x01\x02\x00",  # a TLS ClientHello: no header
    b"GET / HTTP/1.1\r\n",
    b"PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\n",
    b"PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n",
    b"PROXY TCP4 " + b"1" * 120,  # no CRLF within the longest line the spec allows
    V2_SIGNATURE + b"\x21\x11" + (4000).to_bytes(2, "big"),  # longer than any header we take
])
def test_what_is_not_a_header_is_refused(start):
    with pytest.raises(BadHeader):
        total = header_length(start)
        parse(start[:total] if total else start)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@pytest.fixture
def proxied(tmp_path):
    port = free_port()
    proc = Proc([str(BIN / "rm-server"), "serve", "--data-dir", str(tmp_path / "data"), "--listen",
                 f"127.0.0.1:{port}", "--self-signed", "--proxy-protocol", "--trusted-proxy", "127.0.0.1"])
    try:
        proc.wait_line(r"rm-server listening on https://")
        ctx = ssl.create_default_context(cafile=str(tmp_path / "data" / "tls-cert.pem"))
        ctx.check_hostname = False
        yield proc, port, ctx
    finally:
        proc.stop()


def call(port: int, ctx: ssl.SSLContext, header: bytes, method: str, path: str, body: dict | None = None,
         source: str = "127.0.0.1", headers: dict | None = None, split: int = 1 << 16) -> tuple[int, bytes]:
    """One request over a TLS connection that first sends `header` (as a balancer would)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for start in range(0, len(header), split):  # a header may arrive in pieces
        raw.sendall(header[start:start + split])
    with ctx.wrap_socket(raw) as tls:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.sock = tls
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        if resp.status == 101:  # a WebSocket: is it alive? a ping (masked, as from a client) and its pong
            tls.sendall(b"\x89\x80" + bytes(4))
            return resp.status, tls.recv(2)
        return resp.status, resp.read()


def sign_in_fails(port: int, ctx: ssl.SSLContext, header: bytes, source: str = "127.0.0.1",
                  username: str = "nobody", split: int = 1 << 16) -> int:
    """One wrong sign-in over a connection that first sends `header`: its HTTP status."""
    return call(port, ctx, header, "POST", "/api/v1/auth/login", {"username": username, "password": "x" * 12},
                source, {"X-Forwarded-For": "192.0.2.66"}, split)[0]


@pytest.mark.e2e
def test_a_trusted_balancers_header_names_the_client(proxied):
    proc, port, ctx = proxied
    assert sign_in_fails(port, ctx, v2("203.0.113.7"), username="via-v2") == 401
    proc.wait_line(r"sign-in failed for 'via-v2' from 203\.0\.113\.7 ")
    assert sign_in_fails(port, ctx, b"PROXY TCP6 2001:db8::7 ::1 4000 8950\r\n", username="via-v1") == 401
    proc.wait_line(r"sign-in failed for 'via-v1' from 2001:db8::7 ")
    assert sign_in_fails(port, ctx, v2("203.0.113.44"), username="in-pieces", split=5) == 401
    proc.wait_line(r"sign-in failed for 'in-pieces' from 203\.0\.113\.44 ")
    # the balancer's own check (LOCAL) is the balancer: X-Forwarded-For from it is believed as before
    assert sign_in_fails(port, ctx, v2("198.51.100.1", command=0), username="local") == 401
    proc.wait_line(r"sign-in failed for 'local' from 192\.0\.2\.66 ")


@pytest.mark.e2e
def test_an_operators_events_stream_opens_through_the_header(proxied, tmp_path):
    # the request each handler sees is a clone carrying the client's address: a WebSocket
    # upgrade on it must still work (the console's events stream, agents' sockets)
    proc, port, ctx = proxied
    header = v2("203.0.113.20")
    bootstrap = (tmp_path / "data" / "bootstrap-token").read_text().strip()
    login = {"username": "admin", "password": "correct horse battery"}
    assert call(port, ctx, header, "POST", "/api/v1/auth/bootstrap", {"token": bootstrap, **login})[0] in (200, 201)
    status, body = call(port, ctx, header, "POST", "/api/v1/auth/login", login)
    assert status == 200, body
    token = json.loads(body)["token"]
    status, pong = call(port, ctx, header, "GET", "/api/v1/events", headers={
        "Authorization": f"Bearer {token}", "Connection": "Upgrade", "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert (status, pong) == (101, b"\x8a\x00")  # upgraded, and it answers a ping with a pong


@pytest.mark.e2e
def test_anyone_else_is_served_as_they_come_and_their_header_is_no_claim(proxied):
    proc, port, ctx = proxied
    assert sign_in_fails(port, ctx, b"", source="127.0.0.2", username="direct") == 401
    proc.wait_line(r"sign-in failed for 'direct' from 127\.0\.0\.2 ")  # its X-Forwarded-For ignored too
    with pytest.raises((ssl.SSLError, OSError)):  # the header is not TLS: the handshake fails
        sign_in_fails(port, ctx, v2("203.0.113.99"), source="127.0.0.2")
    assert sign_in_fails(port, ctx, b"", source="127.0.0.2", username="after") == 401
    proc.wait_line(r"sign-in failed for 'after' from 127\.0\.0\.2 ")  # the server's output up to here
    assert not [line for line in proc.lines if "203.0.113.99" in line]


@pytest.mark.e2e
def test_a_trusted_peer_without_a_header_is_closed_and_a_slow_one_costs_others_nothing(proxied):
    proc, port, ctx = proxied
    with pytest.raises((ssl.SSLError, OSError)):
        sign_in_fails(port, ctx, b"")  # a ClientHello where the header must be
    proc.wait_line(r"closed a connection from trusted proxy 127\.0\.0\.1: no PROXY protocol header")
    slow = socket.create_connection(("127.0.0.1", port), timeout=HEADER_SECONDS + 10)
    try:
        slow.sendall(b"PROXY TCP4 203.0.113.")  # and nothing more
        started, cpu = time.monotonic(), cpu_seconds(proc.p.pid)
        assert sign_in_fails(port, ctx, v2("203.0.113.8"), username="meanwhile") == 401  # served meanwhile
        assert time.monotonic() - started < HEADER_SECONDS
        try:  # closed once its time is up (a reset: its bytes were never read)
            assert slow.recv(1) == b""
        except ConnectionResetError:
            pass
        assert cpu_seconds(proc.p.pid) - cpu < 1.0, "waiting for the rest of a header must not spin"
    finally:
        slow.close()
    proc.wait_line(r"sign-in failed for 'meanwhile' from 203\.0\.113\.8 ")
