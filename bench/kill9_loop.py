"""The kill -9 loop at length: the server SIGKILLed and restarted N times while agents stream
job logs; every job must end with its whole log, one terminal state, and the database must
pass PRAGMA integrity_check. The test suite runs 20 cycles (tests/reliability/test_kill9_loop.py).

    python bench/kill9_loop.py [--cycles 200] [--hosts 8] [--lines-per-job 500]

Writes bench/results/kill9_loop.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import write_results  # noqa: E402
from tests.reliability.kill9 import run_loop  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--hosts", type=int, default=8)
    ap.add_argument("--lines-per-job", type=int, default=500)
    ap.add_argument("--lines-per-cycle", type=int, default=400)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="rm-kill9-") as tmp:
        figures = asyncio.run(run_loop(Path(tmp), args.cycles, args.hosts, args.lines_per_job, args.lines_per_cycle))
    print(json.dumps(figures, indent=2))
    write_results("kill9_loop", figures)


if __name__ == "__main__":
    main()
