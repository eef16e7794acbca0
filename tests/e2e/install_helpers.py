"""Parts of the install tests: the built zipapps, a server run from its one file, a stub
systemctl (and, when asked, sudo and a non-root `id`) for an isolated install root on a PATH
without any real sudo, and a TLS proxy that tampers or impersonates."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.processes import Proc

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist"
ADMIN_PASSWORD = "correct horse battery"

# Records every call, and runs ExecStart= of the installed unit itself (with its Environment=),
# so the agent install.sh set up really runs, without systemd.
SYSTEMCTL = r"""#!/bin/sh
set -eu
echo "$*" >>"$STUB_STATE/calls"
unit="$RM_INSTALL_ROOT/etc/systemd/system/rm-agent.service"
pidf="$STUB_STATE/pid"
running() { [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; }
start() {
  running && return 0
  [ -z "${STUB_NO_START:-}" ] || return 0  # a unit that "starts" but whose agent never runs
  cmd=$(sed -n 's/^ExecStart=//p' "$unit")
  envs=$(sed -n 's/^Environment=//p' "$unit")
  # shellcheck disable=SC2086
  env $envs sh -c "exec $cmd" </dev/null >>"$STUB_STATE/agent.log" 2>&1 &
  echo $! >"$pidf"
}
stop() {
  running || { rm -f "$pidf"; return 0; }
  pid=$(cat "$pidf"); kill "$pid"
  i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidf"
}
[ "${1:-}" = "--quiet" ] && shift
case "${1:-}" in
  is-system-running)  # what a real systemctl prints: offline where systemd is not PID 1
    state=${STUB_SYSTEM_STATE:-running}; echo "$state"; [ "$state" = running ] ;;
  daemon-reload) ;;
  is-enabled) shift; [ "${1:-}" = "--quiet" ] && shift; [ -f "$STUB_STATE/enabled" ] ;;
  is-active) running ;;
  enable)
    if [ -n "${STUB_ENABLE_FAILS:-}" ]; then echo "Failed to enable unit: Unit file rm-agent.service is masked." >&2; exit 1; fi
    touch "$STUB_STATE/enabled"; [ "${2:-}" = "--now" ] && start ;;
  disable) rm -f "$STUB_STATE/enabled"; [ "${2:-}" = "--now" ] && stop ;;
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  *) echo "stub systemctl: unsupported: $*" >&2; exit 1 ;;
esac
"""

# A sudoer's sudo (records how it was called) and the `id` of a user who is not root.
SUDO = '#!/bin/sh\necho "$*" >>"$STUB_STATE/sudo"\nexec "$@"\n'
NOT_ROOT_ID = '#!/bin/sh\nif [ "$*" = "-u" ]; then echo 1000; else exec /usr/bin/id "$@"; fi\n'


def path_without(names: tuple[str, ...], directory: Path) -> str:
    """$PATH with every directory that holds one of `names` replaced by a copy (symlinks) without it."""
    out = []
    for i, entry in enumerate(os.environ["PATH"].split(os.pathsep)):
        if not any((Path(entry) / n).exists() for n in names):
            out.append(entry)
            continue
        mirror = directory / f"path-{i}"
        mirror.mkdir(parents=True)
        for item in Path(entry).iterdir():
            if item.name not in names:
                (mirror / item.name).symlink_to(item)
        out.append(str(mirror))
    return os.pathsep.join(out)


def build_zipapps(stamp: str) -> Path:
    """`scripts/build-zipapps`, exactly as README.md shows it, once per test run (workers share dist/)."""
    DIST.mkdir(exist_ok=True)
    with open(DIST / ".build-lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = DIST / ".built-by-test-run"
        if not (marker.exists() and marker.read_text() == stamp):
            env = {**os.environ, "RM_VENV": str(Path(sys.executable).parent.parent)}
            out = subprocess.run(["scripts/build-zipapps"], cwd=ROOT, capture_output=True, text=True, timeout=900,
                                 env=env, stdin=subprocess.DEVNULL)
            assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
            marker.write_text(stamp)
    return DIST


class PyzServer:
    """`python -I rm-server.pyz serve --self-signed` started from a directory holding only that file."""

    def __init__(self, tmp: Path, pyz: Path, public_url: str | None = None, python: str = sys.executable) -> None:
        self.work = tmp / "srv-cwd"
        self.work.mkdir()
        (self.work / "rm-server.pyz").write_bytes(pyz.read_bytes())
        self.data_dir = tmp / "srv-data"
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp / "srv-home"), "RM_DATA_DIR": str(self.data_dir),
               "RM_ZIPAPP_CACHE": str(tmp.parent / "zipapp-cache")}
        argv = [python, "-I", "rm-server.pyz", "serve", "--self-signed", "--listen", "127.0.0.1:0"]
        if public_url:
            argv += ["--public-url", public_url]
        self.proc = Proc(argv, cwd=self.work, env=env)
        self.url = self.proc.wait_line(r"listening on (https://\S+)").group(1)
        self.ctx = ssl.create_default_context(cafile=str(self.data_dir / "tls-cert.pem"))
        self.token = ""
        bootstrap = (self.data_dir / "bootstrap-token").read_text().strip()
        self.call("POST", "/auth/bootstrap", {"token": bootstrap, "username": "admin", "password": ADMIN_PASSWORD})
        self.token = self.call("POST", "/auth/login", {"username": "admin", "password": ADMIN_PASSWORD})["token"]

    def call(self, method: str, path: str, body: dict | None = None) -> Any:
        req = urllib.request.Request(f"{self.url}/api/v1{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=30, context=self.ctx) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path} -> {exc.code}: {exc.read()[:500]!r}") from None
        return json.loads(raw) if raw else None

    def wait(self, what: str, pred, timeout: float = 90) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = pred()
            if value:
                return value
            time.sleep(0.2)  # polling the REST API against a deadline
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def stop(self) -> None:
        self.proc.stop()


class InstallRoot:
    """An empty root to install into, with a stub systemctl first on a PATH that has no sudo:
    the tests run as root, the way the one-liner meets a minimal Debian or a container.
    `sudoer=True` plays a user who is not root but may sudo; `not_root=True` one who may not.
    `systemctl`: "stub", "real" (this machine's own), or "none" (hidden from PATH)."""

    def __init__(self, tmp: Path, python: str | None = None, *, sudoer: bool = False, not_root: bool = False,
                 systemctl: str = "stub") -> None:
        self.root = tmp / "root"
        self.root.mkdir()
        self.state = tmp / "systemd-stub"
        self.state.mkdir()
        self.bin = tmp / "stub-bin"
        self.bin.mkdir()
        stubs = {"systemctl": SYSTEMCTL} if systemctl == "stub" else {}
        if sudoer:
            stubs["sudo"] = SUDO
        if sudoer or not_root:
            stubs["id"] = NOT_ROOT_ID
        for name, text in stubs.items():
            (self.bin / name).write_text(text)
            (self.bin / name).chmod(0o755)
        if python:
            (self.bin / "python3").symlink_to(python)
        hidden = ("sudo", "systemctl") if systemctl == "none" else ("sudo",)
        self.env = {**os.environ, "PATH": f"{self.bin}:{path_without(hidden, tmp / 'no-sudo')}",
                    "RM_INSTALL_ROOT": str(self.root), "STUB_STATE": str(self.state)}

    def run(self, command: str, timeout: float = 240) -> subprocess.CompletedProcess:
        return subprocess.run(["sh", "-c", command], env=self.env, cwd=self.state, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def sudo_calls(self) -> list[str]:
        f = self.state / "sudo"
        return f.read_text().splitlines() if f.exists() else []

    def calls(self) -> list[str]:
        f = self.state / "calls"
        return f.read_text().splitlines() if f.exists() else []

    def changes(self) -> list[str]:
        """The systemctl calls that change something (not is-system-running, is-enabled, is-active)."""
        return [c for c in self.calls() if c.split()[0] not in ("is-system-running", "is-enabled", "is-active")]

    def files(self) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*") if not p.is_dir())

    def agent_pid(self) -> int | None:
        f = self.state / "pid"
        return int(f.read_text()) if f.exists() else None

    def kill_agent(self) -> None:
        pid = self.agent_pid()
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
