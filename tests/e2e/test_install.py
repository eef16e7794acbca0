"""The promise to admins, end to end: the server is one file, and a host joins with the one
line the enrollment answer gives — pinned to this server, checked byte for byte.

Built with `scripts/build-zipapps` (no arguments, as README.md shows), the server runs as
`python -I rm-server.pyz serve --self-signed` from a directory holding nothing else; the
install command runs in an isolated root with a stub systemctl that starts the agent."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.e2e.install_helpers import ROOT, InstallRoot, PyzServer, build_zipapps
from tests.processes import Proc, free_port

pytestmark = pytest.mark.e2e
PYENV = Path.home() / ".pyenv" / "versions"


@pytest.fixture(scope="module")
def dist(testrun_uid: str) -> Path:
    return build_zipapps(testrun_uid)


@pytest.fixture(scope="module")
def server(dist: Path, tmp_path_factory) -> PyzServer:
    srv = PyzServer(tmp_path_factory.mktemp("pyz-server"), dist / "rm-server.pyz")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def rest_repo(tmp_path_factory) -> str:
    if not shutil.which("rclone"):
        pytest.skip("rclone is not installed (scripts/test installs it)")
    base = tmp_path_factory.mktemp("rest")
    proc = Proc(["rclone", "serve", "restic", str(base), "--addr", "127.0.0.1:0"])
    url = proc.wait_line(r"Serving restic REST API on (http://\S+)").group(1)
    yield url.rstrip("/") + "/"
    proc.stop()


def interpreter(version: str) -> str | None:
    if "%d.%d" % sys.version_info[:2] == version and not sys.prefix.startswith(str(ROOT)):
        return sys.executable
    found = sorted(PYENV.glob(f"{version}.*/bin/python"), reverse=True)
    return str(found[0]) if found else shutil.which(f"python{version}")


def install_and_back_up(server: PyzServer, repo: str, box: InstallRoot, tmp: Path,
                        options: str = "") -> tuple[str, str]:
    """Run the exact install command (with `options` after the token); the agent it installs
    comes online and completes a backup."""
    created = server.call("POST", "/enrollment-tokens", {"name": "e2e"})
    command = created["install_command"]
    if options:
        command = command.replace(f"--token {created['token']}", f"--token {created['token']} {options}")
    out = box.run(command)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    host_id = re.search(r"online as host (\S+)", out.stderr).group(1)
    assert server.call("GET", f"/hosts/{host_id}")["status"] == "online"
    data = tmp / "data"
    data.mkdir()
    (data / "hello.txt").write_text("installed by the one-liner\n")
    server.call("PUT", f"/hosts/{host_id}/repo", {"url": f"rest:{repo}{host_id}", "generate_password": True})
    group = server.call("POST", f"/hosts/{host_id}/source-groups",
                        {"name": "e2e", "includes": [str(data)], "retention": {"keep_last": 3}})
    job = server.call("POST", f"/hosts/{host_id}/source-groups/{group['id']}/run", {})["job"]
    end = server.wait("the backup to finish", lambda: (j := server.call("GET", f"/jobs/{job['id']}"))["state"]
                      in ("succeeded", "warning", "failed", "cancelled", "lost") and j)
    assert end["state"] == "succeeded", (end, (box.state / "agent.log").read_text()[-3000:])
    return command, host_id


def test_readme_shows_the_build_command_the_tests_run():
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"^One-file builds: `scripts/build-zipapps` ", readme, re.M), "README must show the bare command"


def test_build_names_what_it_builds_and_refuses_unknown_apps():
    out = subprocess.run([sys.executable, str(ROOT / "scripts/lib/build_zipapp.py"), "rm-nothing"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "unknown app rm-nothing; choose from rm-agent, rm-server" in out.stderr


def test_two_builds_at_once_into_one_directory_both_finish(dist, tmp_path):
    """A test run and a manual scripts/build-zipapps may write dist/ at the same moment: each
    writes its own temporary file (a fixed name made one fail or ship the other's half)."""
    out = tmp_path / "dist"
    argv = [sys.executable, str(ROOT / "scripts/lib/build_zipapp.py"), "rm-agent", "--out", str(out)]
    builds = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(b.wait(timeout=600), b.stdout.read() + b.stderr.read()) for b in builds]
    for b in builds:
        b.stdout.close()
        b.stderr.close()
    assert [code for code, _ in results] == [0, 0], results
    assert sorted(p.name for p in out.iterdir()) == ["rm-agent.pyz"], "a temporary file was left behind"
    ran = subprocess.run([sys.executable, "-I", str(out / "rm-agent.pyz"), "version"], capture_output=True,
                         text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "RM_ZIPAPP_CACHE": str(tmp_path / "c")})
    assert ran.returncode == 0 and ran.stdout.startswith("rm-agent "), ran.stderr[-2000:]


@pytest.mark.parametrize("name", ["rm-server", "rm-agent"])
def test_each_file_runs_with_no_site_packages_at_all(dist, tmp_path, name):
    # -I -S: not even the venv's packages, so the archive must carry everything it imports.
    out = subprocess.run([sys.executable, "-I", "-S", str(dist / f"{name}.pyz"), "version"], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert out.returncode == 0 and out.stdout.startswith(name + " "), out.stderr[-2000:]


def test_agent_file_names_the_pythons_it_runs_on(dist, tmp_path):
    old = interpreter("3.8")
    if old is None:
        pytest.skip("no Python 3.8 here to show the refusal with")
    out = subprocess.run([old, "-I", str(dist / "rm-agent.pyz"), "version"], capture_output=True, text=True,
                         timeout=60, env={"PATH": "/usr/bin:/bin", "RM_ZIPAPP_CACHE": str(tmp_path)})
    assert out.returncode == 1
    assert "rm-agent: this file runs on Python 3.9, 3.10, 3.11, 3.12, 3.13" in out.stderr, out.stderr


def test_one_liner_installs_backs_up_reruns_as_no_op_and_uninstalls(server, rest_repo, tmp_path):
    box = InstallRoot(tmp_path, interpreter("3.11"))
    assert os.getuid() == 0 and shutil.which("sudo", path=box.env["PATH"]) is None  # root, no sudo at all
    try:
        command, host_id = install_and_back_up(server, rest_repo, box, tmp_path)
        assert "--insecure" not in command and " -k " not in command
        assert "--pinnedpubkey 'sha256//" in command
        calls, changes = box.calls(), box.changes()
        assert "enable --now rm-agent" in calls
        pid = box.agent_pid()
        pyz = box.root / "usr/local/lib/restic-manager/rm-agent.pyz"
        before = {f: (box.root / f).stat().st_mtime_ns for f in box.files() if not f.startswith("etc/restic-manager/")}

        again = box.run(command)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "nothing to change" in again.stderr
        new_calls = box.calls()[len(calls):]
        assert new_calls and box.changes() == changes, new_calls
        assert box.agent_pid() == pid
        assert {f: (box.root / f).stat().st_mtime_ns for f in before} == before
        assert pyz.exists()

        gone = box.run(f"sh {box.root}/usr/local/lib/restic-manager/install.sh --uninstall --purge")
        assert gone.returncode == 0, gone.stderr[-2000:]
        assert box.files() == [], box.files()
        left = [p for p in box.root.rglob("*") if "restic-manager" in p.name or "rm-agent" in p.name]
        assert left == [], left
        assert box.agent_pid() is None
    finally:
        box.kill_agent()


def test_an_agent_that_does_not_come_online_is_reported(server, tmp_path):
    box = InstallRoot(tmp_path, interpreter("3.11"))
    box.env["STUB_NO_START"] = "1"
    created = server.call("POST", "/enrollment-tokens", {"name": "silent"})
    command = created["install_command"].replace(f"--token {created['token']}",
                                                 f"--token {created['token']} --wait 2")
    out = box.run(command)
    assert out.returncode == 1
    assert "rm-agent is installed but not online after 2s (state: never started); see: journalctl -u rm-agent" \
        in out.stderr, out.stderr


def systemd_not_running(tmp_path: Path) -> InstallRoot:
    """This machine's own systemctl where it has one and systemd is not running (a container),
    else the stub answering as that systemctl does."""
    real = shutil.which("systemctl")
    if real and subprocess.run([real, "is-system-running"], capture_output=True, text=True).stdout.strip() == "offline":
        return InstallRoot(tmp_path, interpreter("3.11"), systemctl="real")
    box = InstallRoot(tmp_path, interpreter("3.11"))
    box.env["STUB_SYSTEM_STATE"] = "offline"
    return box


def test_systemd_installed_but_not_running_installs_and_says_how_to_start(server, tmp_path):
    box = systemd_not_running(tmp_path)
    created = server.call("POST", "/enrollment-tokens", {"name": "container"})
    out = box.run(created["install_command"])
    assert out.returncode == 0, out.stderr[-3000:]
    bin_, conf = box.root / "usr/local/bin/rm-agent", box.root / "etc/restic-manager/agent.json"
    assert (f"install.sh: installed and enrolled; systemd is installed but not running here (a container or "
            f"chroot?): start the agent with: {bin_} run --config {conf}") in out.stderr, out.stderr
    assert box.changes() == []
    host_id = re.search(r'"host_id": "([^"]+)"', conf.read_text()).group(1)
    # The advice works as written.
    agent = Proc([str(bin_), "run", "--config", str(conf)], env=box.env)
    try:
        server.wait("the agent started by hand to come online",
                    lambda: server.call("GET", f"/hosts/{host_id}")["status"] == "online")
    finally:
        agent.stop()


def test_systemd_refusing_the_unit_leaves_nothing_behind(server, tmp_path):
    box = InstallRoot(tmp_path, interpreter("3.11"))
    box.env["STUB_ENABLE_FAILS"] = "1"
    created = server.call("POST", "/enrollment-tokens", {"name": "masked"})
    out = box.run(created["install_command"])
    assert out.returncode == 1
    assert "Failed to enable unit: Unit file rm-agent.service is masked." in out.stderr
    assert "install.sh: systemd could not start rm-agent (see above; journalctl -u rm-agent)" in out.stderr
    host_id = re.search(r"the server lists this host as (\S+) with no agent: delete it \(console, or rm-server "
                        r"host remove \1\) and paste a new install command", out.stderr).group(1)
    assert server.call("GET", f"/hosts/{host_id}")["status"] == "pending"
    assert box.files() == [] and list(box.root.iterdir()) == [], box.files()
    assert box.changes() == ["daemon-reload", "enable --now rm-agent", "disable --now rm-agent", "daemon-reload"]


def test_a_refused_enrollment_leaves_nothing_behind(server, tmp_path):
    box = InstallRoot(tmp_path, interpreter("3.11"))
    created = server.call("POST", "/enrollment-tokens", {"name": "revoked"})
    server.call("DELETE", f"/enrollment-tokens/{created['id']}")
    out = box.run(created["install_command"])
    assert out.returncode == 1
    assert "install.sh: enrollment failed (see above)" in out.stderr and "removed what this run installed" in out.stderr
    assert box.files() == [] and list(box.root.iterdir()) == [] and box.changes() == []


def test_install_restic_brings_a_new_enough_restic_the_agent_then_uses(server, rest_repo, tmp_path):
    restic = os.environ.get("RM_RESTIC_018")
    if not restic:
        pytest.skip("RM_RESTIC_018 is not set (scripts/test fetches restic 0.18 from Debian trixie)")
    box = InstallRoot(tmp_path, interpreter("3.11"))
    (box.bin / "restic").write_text('#!/bin/sh\n[ "$1" = version ] && echo "restic 0.12.1 compiled with go1.18.1 '
                                    'on linux/amd64"\nexit 0\n')  # Ubuntu 22.04's
    (box.bin / "restic").chmod(0o755)
    shutil.copy(restic, server.data_dir / "restic")
    try:
        _, host_id = install_and_back_up(server, rest_repo, box, tmp_path, "--install-restic")
        assert server.call("GET", f"/hosts/{host_id}")["restic_version"] == "0.18.0"
        assert (box.root / "usr/local/bin/restic").read_bytes() == Path(restic).read_bytes()
    finally:
        (server.data_dir / "restic").unlink()
        box.kill_agent()


@pytest.mark.parametrize("version", ["3.9", "3.10", "3.12", "3.13"])
def test_agent_file_runs_on_every_supported_python(server, rest_repo, tmp_path, version):
    python = interpreter(version)
    if python is None:
        pytest.skip(f"no Python {version} on this machine (pyenv install {version})")
    box = InstallRoot(tmp_path, python)
    try:
        install_and_back_up(server, rest_repo, box, tmp_path)
        wrapper = (box.root / "usr/local/bin/rm-agent").read_text()
        ran_with = re.search(r"exec '([^']+)' -I ", wrapper).group(1)
        assert os.path.realpath(ran_with) == os.path.realpath(python)
    finally:
        box.kill_agent()


@pytest.mark.parametrize("version", ["3.11", "3.12", "3.13"])  # build_zipapp.SERVER_PYTHONS
def test_server_file_serves_enrolls_and_backs_up_on_every_supported_python(server, dist, rest_repo, tmp_path,
                                                                           version):
    """The server file on each Python it is built for: it listens, an agent installed with
    its one-liner enrolls and completes a backup; and a start it cannot make is one line."""
    python = interpreter(version)
    if python is None:
        pytest.skip(f"no Python {version} on this machine (pyenv install {version})")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "server.db").write_bytes(bytes(range(256)) * 64)
    out = subprocess.run([python, "-I", str(dist / "rm-server.pyz"), "serve", "--listen", "127.0.0.1:0",
                          "--data-dir", str(broken)], capture_output=True, text=True, timeout=120,
                         env={"PATH": os.environ["PATH"], "HOME": str(tmp_path),
                              "RM_ZIPAPP_CACHE": str(tmp_path.parent / "zipapp-cache")})
    assert out.returncode == 1, out.stderr[-3000:]
    assert out.stderr.splitlines() == [f"rm-server: cannot open the database {broken}/server.db: "
                                       "file is not a database"], out.stderr[-3000:]

    same = os.path.realpath(python) == os.path.realpath(sys.executable)
    srv = server if same else PyzServer(tmp_path, dist / "rm-server.pyz", python=python)
    box = InstallRoot(tmp_path, python)
    try:
        _, host_id = install_and_back_up(srv, rest_repo, box, tmp_path)
        assert srv.call("GET", f"/hosts/{host_id}")["status"] == "online"
    finally:
        box.kill_agent()
        if not same:
            srv.stop()


@pytest.fixture(scope="module")
def proxied(dist: Path, tmp_path_factory):
    """A server whose public URL is a proxy port: its install command goes through the proxy."""
    port = free_port()
    srv = PyzServer(tmp_path_factory.mktemp("proxied"), dist / "rm-server.pyz", f"https://127.0.0.1:{port}")
    yield srv, port
    srv.stop()


def run_proxy(srv: PyzServer, port: int, cert: Path, key: Path, tamper: str = "") -> Proc:
    proxy = Proc([sys.executable, str(ROOT / "tests/e2e/tls_proxy.py"), str(port), str(cert), str(key), srv.url,
                  str(srv.data_dir / "tls-cert.pem"), tamper])
    proxy.wait_line("proxy listening")
    return proxy


@pytest.mark.parametrize("name", ["install.sh", "rm-agent.pyz"])
def test_a_download_changed_in_transit_is_refused(proxied, tmp_path, name):
    srv, port = proxied
    proxy = run_proxy(srv, port, srv.data_dir / "tls-cert.pem", srv.data_dir / "tls-key.pem", tamper=name)
    box = InstallRoot(tmp_path, interpreter("3.11"))
    try:
        command = srv.call("POST", "/enrollment-tokens", {"name": "tamper"})["install_command"]
        out = box.run(command)
    finally:
        proxy.stop()
    assert out.returncode != 0
    if name == "install.sh":
        assert "FAILED" in out.stdout + out.stderr
    else:
        assert "rm-agent.pyz failed its SHA-256 check" in out.stderr, out.stderr
    assert box.files() == [] and box.changes() == []


def test_a_certificate_with_another_key_is_refused(proxied, tmp_path):
    srv, port = proxied
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "restic-manager")])
    import datetime as dt
    import ipaddress
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "mitm-cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "mitm-key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                              serialization.PrivateFormat.PKCS8,
                                                              serialization.NoEncryption()))
    proxy = run_proxy(srv, port, tmp_path / "mitm-cert.pem", tmp_path / "mitm-key.pem")
    box = InstallRoot(tmp_path, interpreter("3.11"))
    try:
        command = srv.call("POST", "/enrollment-tokens", {"name": "mitm"})["install_command"]
        out = box.run(command)
        # The same curl without the pin trusts the impostor (it offers the same self-signed name)…
        loose = subprocess.run(["curl", "-fsS", "-k", "-o", "/dev/null", f"https://127.0.0.1:{port}/healthz"],
                               capture_output=True, timeout=30)
    finally:
        proxy.stop()
    assert loose.returncode == 0  # …so the refusal below is the pin's doing, not a dead proxy.
    assert out.returncode != 0
    assert "curl: (60)" in out.stderr or "curl: (90)" in out.stderr, out.stderr
    assert box.files() == [] and box.changes() == []
