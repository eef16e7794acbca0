"""A server that cannot start says why in one line on stderr and exits non-zero within
seconds, whatever the cause (issue 18 items 2 and 7): never a traceback, never a process
left alive that does not listen. Real `rm-server serve` processes."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ADMIN_PASSWORD

SERVE = [sys.executable, "-m", "rm_server.cli"]


def run(args: list[str], timeout: float = 60) -> tuple[subprocess.CompletedProcess | None, float]:
    """(the finished process or None if it was still running at `timeout`, seconds taken)."""
    started = time.monotonic()
    proc = subprocess.Popen(SERVE + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return None, time.monotonic() - started
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), time.monotonic() - started


@pytest.fixture(scope="module")
def import_cost() -> float:
    """What starting Python and importing the server costs on this machine right now: the
    5 s budget is for the server, not for a busy test box."""
    done, took = run(["version"])
    assert done is not None and done.returncode == 0, done
    return took


def made_database(data: Path) -> Path:
    """A real server.db, made the way an admin would before the first start."""
    done, _ = run(["operator", "add", "alice", "--role", "admin", "--password", ADMIN_PASSWORD,
                   "--data-dir", str(data)])
    assert done is not None and done.returncode == 0, done
    return data / "server.db"


def corrupt(tmp: Path) -> list[str]:
    data = tmp / "data"
    data.mkdir()
    (data / "server.db").write_bytes(bytes(range(256)) * 400)
    return ["--data-dir", str(data)]


def truncated(tmp: Path) -> list[str]:
    db = made_database(tmp / "data")
    with open(db, "r+b") as fh:
        fh.truncate(db.stat().st_size // 2)
    return ["--data-dir", str(tmp / "data")]


def database_is_a_directory(tmp: Path) -> list[str]:
    (tmp / "data" / "server.db").mkdir(parents=True)
    return ["--data-dir", str(tmp / "data")]


def data_dir_is_a_file(tmp: Path) -> list[str]:
    (tmp / "data").write_text("not a directory\n")
    return ["--data-dir", str(tmp / "data")]


def data_dir_under_a_file(tmp: Path) -> list[str]:
    (tmp / "file").write_text("")
    return ["--data-dir", str(tmp / "file" / "data")]


def bad_master_key(tmp: Path) -> list[str]:
    (tmp / "data").mkdir()
    (tmp / "data" / "master.key").write_bytes(b"short")
    return ["--data-dir", str(tmp / "data")]


def bad_certificate(tmp: Path) -> list[str]:
    (tmp / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    (tmp / "key.pem").write_text("garbage\n")
    return ["--data-dir", str(tmp / "data"), "--tls-cert", str(tmp / "cert.pem"), "--tls-key", str(tmp / "key.pem")]


CASES = {
    # case: (how to break it, what the one line must say)
    "corrupt database": (corrupt, "file is not a database"),
    "truncated database": (truncated, "malformed"),
    "database is a directory": (database_is_a_directory, "server.db"),
    "data dir is a file": (data_dir_is_a_file, "data"),
    "data dir under a file": (data_dir_under_a_file, "Not a directory"),
    "bad master key": (bad_master_key, "master.key"),
    "bad TLS certificate": (bad_certificate, "cert.pem"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_server_that_cannot_start_says_why_in_one_line_and_exits(case, tmp_path, import_cost):
    breaks, says = CASES[case]
    args = breaks(tmp_path)
    done, took = run(["serve", "--listen", "127.0.0.1:0", *args])
    assert done is not None, f"{case}: still running after 60 s"
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, (done.returncode, done.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("rm-server: ") and says in lines[0], done.stderr[-3000:]
    assert took < import_cost + 5, f"{case}: exited after {took:.1f} s (importing alone takes {import_cost:.1f} s)"


def test_a_port_in_use_is_one_line_too(tmp_path, import_cost):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done, took = run(["serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "data")])
    assert done is not None and done.returncode == 1, done
    assert done.stderr.strip().splitlines() == [f"rm-server: cannot listen on 127.0.0.1:{port}: Address already in use"]
    assert took < import_cost + 5
