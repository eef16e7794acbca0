"""`rm-server serve --workers N`: N replicas on one machine, one port (PostgreSQL only).

The parent reserves the port (a socket bound with SO_REUSEPORT, never listening, so the
kernel hands it no connection), starts N copies of its own command with `--workers 1` and
that port, and says it listens once every child does. Each child binds its own SO_REUSEPORT
socket, so the kernel spreads new connections over them and one machine's cores all serve;
each child is a full replica (services/relay.py), so which one a client reaches never
matters. A child that dies is started again (after 1 s, doubling to 30 s while it keeps
dying); SIGTERM or SIGINT stops them all.

The database URL reaches the children in their environment (RM_DATABASE_URL), never in
argv: another user on the machine can read every process's argv."""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

log = logging.getLogger("rm_server.workers")

READY_FD = "RM_WORKER_READY_FD"  # a child writes one line here once it listens


def child_argv(argv: Sequence[str], listen: str) -> list[str]:
    """This process's own command for one child: --workers 1, --listen HOST:PORT (the port
    resolved), --database left out (it goes by environment)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--workers", "--listen", "--database"):
            skip = True
            continue
        if arg.startswith(("--workers=", "--listen=", "--database=")):
            continue
        out.append(arg)
    return [*out, "--workers", "1", "--listen", listen]


def signal_ready() -> None:
    """Tell the parent this child listens (a no-op when not started by one)."""
    fd = os.environ.get(READY_FD)
    if fd:
        try:
            os.write(int(fd), b"ready\n")
        except OSError:
            pass


class Workers:
    def __init__(self, command: list[str], count: int, database_url: str) -> None:
        self.command = command
        self.count = count
        self.env = {**os.environ, "RM_DATABASE_URL": database_url}
        self.children: list[subprocess.Popen[bytes] | None] = [None] * count
        self.stopping = False

    def _start(self, i: int, ready_w: int) -> subprocess.Popen[bytes]:
        env = {**self.env, READY_FD: str(ready_w)}
        return subprocess.Popen(self.command, env=env, pass_fds=(ready_w,), stdin=subprocess.DEVNULL)

    def run(self, announce: str) -> int:
        """Start the children, print `announce` once all listen, supervise until stopped."""
        ready_r, ready_w = os.pipe()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop())
        try:
            self.children = [self._start(i, ready_w) for i in range(self.count)]
            if not self._wait_ready(ready_r, self.count, timeout=120):
                self._stop()
                return 1
            print(announce, file=sys.stderr, flush=True)
            delays = [1.0] * self.count
            started = [time.monotonic()] * self.count
            while not self.stopping:
                time.sleep(0.5)
                for i, child in enumerate(self.children):
                    if self.stopping or child is None or child.poll() is None:
                        continue
                    log.warning("worker %d exited with %s; starting it again in %.0f s", i, child.returncode, delays[i])
                    time.sleep(delays[i])
                    # a worker that ran a while before dying starts again at once next time
                    delays[i] = 1.0 if time.monotonic() - started[i] > 60 else min(delays[i] * 2, 30.0)
                    if not self.stopping:
                        self.children[i] = self._start(i, ready_w)
                        started[i] = time.monotonic()
            return 0
        finally:
            self._stop()
            os.close(ready_r)
            os.close(ready_w)

    def _wait_ready(self, fd: int, count: int, timeout: float) -> bool:
        seen = 0
        deadline = time.monotonic() + timeout
        while seen < count:
            left = deadline - time.monotonic()
            if left <= 0 or self.stopping:
                return False
            if any(c is not None and c.poll() is not None for c in self.children):
                return False  # a child that could not start said why on stderr
            readable, _, _ = select.select([fd], [], [], min(left, 0.5))
            if readable:
                seen += os.read(fd, 4096).count(b"ready\n")
        return True

    def _stop(self) -> None:
        if self.stopping and all(c is None or c.poll() is not None for c in self.children):
            return
        self.stopping = True
        for child in self.children:
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in self.children:
            if child is None:
                continue
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
