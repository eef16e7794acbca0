#!/usr/bin/env python3
"""rm-tui at fleet scale: the real console against a real rm-server with N hosts (issue 9).

For each fleet size N it:

1. writes N hosts (+ tokens, 2 finished jobs each) straight into SQLite after the server's
   own migrations (bench/fleet/seed.py, in a child process so the console's RSS
   is not inflated by server modules), starts a real `rm-server serve` on 127.0.0.1:0 and
   bootstraps an admin;
2. connects simulated agents (bench/fleet/agents.py, 2 processes) for `--agents` hosts
   (default: all of them up to 5,000) over the real agent WebSocket;
3. runs the real rm-tui app in this process at 200x50 with a driver whose `write` records
   when Textual hands it a frame (the compositor's work and the escape sequences are done
   by then) and discards it — `App.run_test(headless=False)` with that driver, so frames are
   rendered exactly as on a terminal;
4. measures:
   * sign-in: `enter` on the login form → the first frame showing the first host row;
   * key → repaint: `down`/`up` sent through the driver → the first frame that contains
     the newly selected host's name; idle, while agents send 100 updates/s (50 running
     jobs, job.progress twice a second each, then job.finished) and during a reconnect
     burst (every connected agent drops its WebSocket and reconnects: an offline and an
     online host.updated per host);
   * backlog drained: last agent hello'd again → the console's host map shows every
     burst host online again;
   * one filter keystroke at N: a digit typed into `/` filter → the frame whose status
     line shows the new filter;
   * console RSS (VmRSS/VmHWM of this process; the server and agents run elsewhere).

    .venv/bin/python bench/tui_scale.py --sizes 5000,20000
    .venv/bin/python bench/tui_scale.py --quick          # 500 hosts, a smoke run

Results: a table on stdout and bench/results/tui_scale.json.

The parts live in bench/console/: frames.py (the frame-timing driver and the keys sent
through it), agents.py (simulated agents that run jobs and reconnect on command), phases.py
(one size, phase by phase) and report.py (targets, table); the database, agent processes,
server and statistics are bench/fleet/'s.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# bench/ is sys.path[0] when run as a script; also when imported from elsewhere, so that the
# spawned children find their entry functions in fleet.* and console.*
sys.path.insert(0, str(ROOT / "bench"))

from console.phases import run_size  # noqa: E402
from console.report import TARGETS, table  # noqa: E402
from fleet.driver import raise_nofile  # noqa: E402
from fleet.sizes import run_sizes  # noqa: E402
from harness import run_doc, write_results  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="5000,20000", help="comma-separated fleet sizes")
    ap.add_argument("--quick", action="store_true", help="500 hosts, a smoke run")
    ap.add_argument("--agents", type=int, default=5000, help="hosts with a simulated agent (the burst size)")
    ap.add_argument("--agent-procs", type=int, default=2)
    ap.add_argument("--keys", type=int, default=40, help="key presses per phase")
    ap.add_argument("--phases", default="idle,load,burst,filter",
                    help="which measurements after sign-in (comma-separated)")
    ap.add_argument("--signin-timeout", type=float, default=300, help="seconds to wait for the first fleet frame")
    ap.add_argument("--max-seconds", type=float, default=900, help="child processes exit after this long")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dirs")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    args.phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    limit = raise_nofile()
    sizes = [500] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.agents + 300 > limit:
        args.agents = limit - 300
    ctx = mp.get_context("spawn")
    started = time.time()
    results = run_sizes(sizes, lambda n: run_size(n, args, ctx), "hosts", show_traceback=True)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version()}
    write_results("tui_scale", run_doc(started, machine, TARGETS, {**vars(args), "phases": sorted(args.phases)},
                                       results), quick=args.quick, out=args.out, table=table(results))
    return 0 if all("failed" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
