"""Child processes in tests: a free loopback port, and a program whose stderr is read as it runs."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any


def free_port() -> int:
    """A loopback port nothing listens on now (for a program that must be given one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """`check()`'s first truthy answer, asked every 0.1 s; fails naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while not (got := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)  # polling processes or their output against a deadline
    return got


class Proc:
    """A child in its own session whose stderr a thread collects (so it never blocks on a full pipe)."""

    def __init__(self, argv: list[str], **popen: Any) -> None:
        self.argv = argv
        self.lines: list[str] = []
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True, start_new_session=True, **popen)
        self._t = threading.Thread(target=self._pump, daemon=True)
        self._t.start()

    def _pump(self) -> None:
        assert self.p.stderr
        for line in self.p.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, pattern: str, timeout: float = 60) -> re.Match:
        """The first stderr line matching `pattern`; fails with the last lines when the child
        exits or the deadline passes first."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := rx.search(line):
                    return m
            if self.p.poll() is not None and not self._t.is_alive():
                break
            time.sleep(0.02)  # polling a child's output against a deadline
        raise AssertionError(f"{self.argv[:3]}: no line matching {pattern!r}:\n" + "\n".join(self.lines[-30:]))

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Send `sig` to the child's whole session (SIGKILL for a crash); SIGKILL after 30 s."""
        if self.p.poll() is None:
            os.killpg(self.p.pid, sig)
        try:
            self.p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait(10)
        self._t.join(5)
        if self.p.stderr:
            self.p.stderr.close()
