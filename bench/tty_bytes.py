#!/usr/bin/env python3
"""Bytes per keystroke at a real pty: what the console costs over a thin SSH link (issue 23).

The real `rm-tui` runs in a pseudo-terminal of 200x50 (as under `script` or sshd), against a
real `rm-server serve` holding 2,000 hosts (bench/fleet/seed.py writes them into the
server's database). The bench signs in as a person would, then sends keys one at a time
and counts every byte the console writes to the terminal in answer, until it has been
quiet for a moment:

* a full repaint (the terminal resized back to 200x50: every cell drawn again) — the
  yardstick: no keystroke should cost more;
* cursor moves (`j`), page down, `g`;
* the filter: `/`, then each character of `bench-001`, a backspace, `esc`;
* where the filter leaves the view: the first row shown after `bench-001` must be
  bench-00100 (the screen is read back from the bytes: `Screen`, a terminal just big
  enough for what Textual writes).

    .venv/bin/python bench/tty_bytes.py                 # 2,000 hosts at 200x50
    .venv/bin/python bench/tty_bytes.py --hosts 500     # a smaller fleet

The yardstick, one full repaint, is what the console writes when told the terminal changed
(SIGWINCH at the same size): every line of the screen once. A resize to another size costs
several (layout, then each widget at its new size).

Results: a table on stdout and bench/results/tty_bytes.json. The filter box's cursor blinks
(a few dozen bytes every half second while it has focus): the quiet gap is shorter than the
blink, and what a blink writes is measured on its own and reported. tests/e2e/test_tty_bytes.py
runs the same keys on a smaller fleet and holds the console to the targets.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import multiprocessing as mp
import os
import platform
import re
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fleet.driver import ADMIN_PASSWORD, ADMIN_USER, Server, rest_setup  # noqa: E402
from fleet.seed import prepare_in_child  # noqa: E402
from fleet.sizes import size_work_dir  # noqa: E402
from harness import run_doc, write_results  # noqa: E402

COLS, ROWS = 200, 50
KEYS = {"down": "j", "pagedown": "\x1b[6~", "top": "g", "slash": "/", "backspace": "\x7f", "escape": "\x1b",
        "tab": "\t", "enter": "\r"}
TARGETS = {"max_key_bytes": "≤ one full repaint", "filter_key_bytes": "≤ 32 KB at 200x50"}


class Tty:
    """rm-tui in a pty: write keys to the master side, read (and count) what it draws."""

    def __init__(self, argv: list[str], cols: int = COLS, rows: int = ROWS) -> None:
        self.master, slave = os.openpty()
        self.resize(cols, rows, fd=slave)
        # COLUMNS/LINES would override the pty's size (pytest's workers set them)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("TEXTUAL", "RM_")) and k not in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR")}
        env.update(TERM="xterm-256color", COLORTERM="truecolor", LANG="C.UTF-8")
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
                                     cwd=str(ROOT))
        os.close(slave)
        self.screen = Screen(cols, rows)

    def resize(self, cols: int, rows: int, fd: int | None = None) -> None:
        fcntl.ioctl(self.master if fd is None else fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        if fd is None:
            self.proc.send_signal(signal.SIGWINCH)
            self.screen.resize(cols, rows)

    def full_repaint(self) -> int:
        """The terminal says its size changed, and it has not: the console draws every line once."""
        self.proc.send_signal(signal.SIGWINCH)
        return len(self.read(0.5, 10))

    def read(self, quiet: float, limit: float) -> bytes:
        """Everything written until `quiet` seconds pass without a byte (at most `limit` s)."""
        out = bytearray()
        end = time.monotonic() + limit
        while time.monotonic() < end:
            ready, _, _ = select.select([self.master], [], [], quiet)
            if not ready:
                break
            try:
                chunk = os.read(self.master, 1 << 16)
            except OSError:
                break
            out += chunk
        self.screen.feed(bytes(out))
        return bytes(out)

    def press(self, key: str, quiet: float = 0.25, limit: float = 15) -> int:
        """One key (a name of KEYS or the text itself); the bytes written in answer."""
        os.write(self.master, KEYS.get(key, key).encode())
        return len(self.read(quiet, limit))

    def wait_for(self, text: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.read(0.2, 1)
            if self.screen.has(text):
                return True
        return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self.master)


class Screen:
    """The terminal's screen as the bytes leave the console: enough of a terminal for what
    Textual writes (cursor moves `ESC[r;cH`, colours, text, CR/LF), colours dropped."""

    CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")

    def __init__(self, cols: int, rows: int) -> None:
        self.resize(cols, rows)
        self.pending = b""

    def resize(self, cols: int, rows: int) -> None:
        self.cols, self.rows = cols, rows
        self.grid = [[" "] * cols for _ in range(rows)]
        self.y = self.x = 0

    def feed(self, data: bytes) -> None:
        data, self.pending = self.pending + data, b""
        text = data.decode("utf-8", "ignore")
        pos = 0
        for m in self.CSI.finditer(text):
            self.put(text[pos:m.start()])
            pos = m.end()
            if m.group(2) == "H":
                parts = [int(p) if p.isdigit() else 1 for p in (m.group(1) or "1;1").split(";")] + [1]
                self.y, self.x = min(parts[0], self.rows) - 1, min(parts[1], self.cols) - 1
        tail = text[pos:]
        if "\x1b" in tail:  # a sequence cut by the read: keep it for the next chunk
            cut = tail.index("\x1b")
            self.pending = tail[cut:].encode()
            tail = tail[:cut]
        self.put(tail)

    def put(self, text: str) -> None:
        for ch in text:
            if ch == "\r":
                self.x = 0
            elif ch == "\n":
                self.y = min(self.y + 1, self.rows - 1)
            elif ch >= " ":
                if self.x < self.cols:
                    self.grid[self.y][self.x] = ch
                self.x += 1

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines())

    def lines(self) -> list[str]:
        return ["".join(row) for row in self.grid]


def first_host_row(screen: Screen) -> str | None:
    """The hostname on the first line under the fleet table's header (None: no such line)."""
    lines = screen.lines()
    for i, line in enumerate(lines[:-1]):
        if line.split()[:2] == ["Host", "Status"]:
            words = lines[i + 1].split()
            return words[0] if words else None
    return None


def console(base: str) -> Tty:
    exe = ROOT / ".venv" / "bin" / "rm-tui"
    return Tty([str(exe) if exe.exists() else "rm-tui", "--server", base])


def sign_in(tty: Tty, n: int, user: str = ADMIN_USER, password: str = ADMIN_PASSWORD) -> float:
    """Typed as a person would; seconds from enter to the fleet showing all n hosts."""
    if not tty.wait_for("Sign in", 60):
        raise RuntimeError("no sign-in screen")
    for ch in user:
        tty.press(ch, quiet=0.05)
    tty.press("tab", quiet=0.1)
    for ch in password:
        tty.press(ch, quiet=0.05)
    t0 = time.monotonic()
    tty.press("enter", quiet=1.0, limit=120)
    if not tty.wait_for(f"{n:,} hosts", 120):
        raise RuntimeError("the fleet never showed every host")
    tty.read(1.0, 10)  # settled
    return round(time.monotonic() - t0, 2)


def keys(tty: Tty) -> dict:
    """The keys, one at a time, and the bytes each wrote (the console signed in, cursor on top)."""
    res: dict = {"full_repaint": tty.full_repaint()}
    res["down"] = [tty.press("down") for _ in range(10)]
    res["pagedown"] = [tty.press("pagedown") for _ in range(3)]
    tty.press("pagedown")
    res["top"] = [tty.press("top")]
    for _ in range(4):
        tty.press("pagedown")  # the cursor well below the rows the filter keeps
    res["slash"] = [tty.press("slash")]
    res["blink"] = len(tty.read(1.2, 1.2))  # the box's cursor alone, over ~1 s
    res["filter"] = {ch: tty.press(ch) for ch in "bench-001"}
    res["first_row_after_filter"] = first_host_row(tty.screen)
    res["backspace"] = [tty.press("backspace")]
    # a lone ESC waits for the rest of a possible escape sequence before it is a key
    res["escape"] = [tty.press("escape", quiet=0.6), tty.press("escape", quiet=0.6)]
    every = [*res["down"], *res["pagedown"], *res["top"], *res["slash"], *res["filter"].values(),
             *res["backspace"], *res["escape"]]
    res["max_key_bytes"] = max(every)
    res["filter_max_bytes"] = max(res["filter"].values())
    res["filter_median_bytes"] = int(statistics.median(res["filter"].values()))
    return res


def measure(base: str, n: int, log) -> dict:
    tty = console(base)
    res: dict = {"hosts": n, "size": f"{COLS}x{ROWS}"}
    try:
        res["signin_s"] = sign_in(tty, n)
        res.update(keys(tty))
        log(f"full repaint at {COLS}x{ROWS}: {res['full_repaint']:,} B")
        log(f"down {res['down']}")
        log(f"pagedown {res['pagedown']}  top {res['top']}  / {res['slash']}  blink/~1s {res['blink']}")
        log(f"filter {res['filter']}  first row then: {res['first_row_after_filter']}")
        log(f"backspace {res['backspace']}  esc {res['escape']}")
    finally:
        tty.stop()
    return res


def table(r: dict) -> str:
    fr = r["full_repaint"]
    rows = [("full repaint (the yardstick)", fr),
            ("cursor down (j), max", max(r["down"])),
            ("page down, max", max(r["pagedown"])),
            ("g (top)", r["top"][0]),
            ("/ (filter box opens)", r["slash"][0]),
            ("filter keystroke, median", r["filter_median_bytes"]),
            ("filter keystroke, max", r["filter_max_bytes"]),
            ("backspace in the filter", r["backspace"][0]),
            ("esc (clear), esc", max(r["escape"])),
            ("the box's cursor blink, ~1 s", r["blink"])]
    lines = [f"{r['hosts']:,} hosts at {r['size']}", f"{'key':<32} {'bytes':>9} {'x repaint':>10}"]
    lines += [f"{name:<32} {b:>9,} {b / fr:>10.2f}" for name, b in rows]
    lines.append(f"first row after filtering 'bench-001': {r.get('first_row_after_filter')}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=2000)
    ap.add_argument("--out", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    args = ap.parse_args()

    def log(*parts) -> None:
        print(*parts, file=sys.stderr, flush=True)

    started = time.time()
    work, data_dir = size_work_dir(args.hosts, "rm-tty-bench")
    prepare_in_child(mp.get_context("spawn"), data_dir, args.hosts)
    server = Server(data_dir, max_agents=100)
    try:
        base = server.wait_ready()
        asyncio.run(rest_setup(base, data_dir))
        res = measure(base, args.hosts, log)
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version()}
    write_results("tty_bytes", run_doc(started, machine, TARGETS, vars(args), [res]), out=args.out, table=table(res))
    fits = res["max_key_bytes"] <= res["full_repaint"] and res["filter_max_bytes"] <= 32_000
    return 0 if fits else 1


if __name__ == "__main__":
    sys.exit(main())
