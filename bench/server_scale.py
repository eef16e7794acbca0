#!/usr/bin/env python3
"""Fleet-scale benchmark of rm-server with simulated, protocol-speaking agents.

For each fleet size N it:

1. makes a fresh temporary data dir and writes N hosts, their agent tokens (sha256 hex)
   and 2 finished historical jobs per host straight into SQLite (after the server's own
   migrations have built the schema) - enrolling 19k hosts over REST would only measure
   bcrypt-free token minting, not what this benchmark is about;
2. starts a real `rm-server serve` on 127.0.0.1 (random port) and bootstraps an admin;
3. starts simulated agents in several processes (a minimal WebSocket client on a raw
   asyncio Protocol, bench/fleet/wsclient.py, on loopback only): each sends hello, acks
   every schedule.set, sends heartbeats, and streams job logs when told to;
4. measures, from a separate probe process: GET /healthz every 10 ms (event-loop lag as
   seen from outside: the handler also does one `SELECT 1` on the reader connection),
   GET /api/v1/hosts?limit=100, GET /api/v1/jobs?limit=100 and the full GET /api/v1/hosts,
   at rest and while a fleet-wide schedule change is in flight;
5. fleet push: one `PUT /api/v1/fleet/policies/bench-fleet` (a source group + schedule on
   every host; `--per-host-push` instead POSTs one source group per host, 16 in flight)
   and times from the request until every simulated agent has acked the new version, then checks the
   server recorded all acks (full host list: applied_schedule_version == schedule_version);
6. log ingest: creates `init` jobs on K hosts, the agents answer job.started then job.log
   batches (200 lines, 4 batches in flight per job) and wait for the acks; lines/s is the
   number of acked lines over the time from the first send to the last ack, cross-checked
   against `SELECT count(*) FROM job_logs`;
7. reads server RSS (VmRSS/VmHWM from /proc/PID/status) and stops everything.

Everything is bounded: every wait has a timeout, child processes get a lifetime after
which they exit by themselves, and the server is terminated at the end of each size.

    .venv/bin/python bench/server_scale.py --quick             # 200 agents, < 60 s
    .venv/bin/python bench/server_scale.py --sizes 1000,10000,19000

Results: a table on stdout and bench/results/server_scale.json.

The parts live in bench/fleet/: seed.py (the database), agents.py (the simulated agents),
wsclient.py (their WebSocket client), probe.py, driver.py (server, child processes, REST set-up), stats.py, sizes.py
(the loop over sizes, each size's log and work dir), phases.py (one size, phase by phase) and report.py (targets,
verdicts, table).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# bench/ is sys.path[0] when run as a script; also when imported from elsewhere, so that the
# spawned children find their entry functions in fleet.*
sys.path.insert(0, str(ROOT / "bench"))

from fleet.driver import raise_nofile  # noqa: E402
from fleet.phases import run_size  # noqa: E402
from fleet.report import TARGETS, table, verdicts  # noqa: E402
from fleet.sizes import fleet_args, run_bench  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000,19000", help="comma-separated fleet sizes")
    ap.add_argument("--quick", action="store_true", help="200 agents, short windows (< 60 s)")
    fleet_args(ap, "server_scale")
    args = ap.parse_args()
    limit = raise_nofile()
    sizes = [200] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
    runnable = []
    for n in sizes:
        # server: one fd per agent + sqlite, listen socket, probes; agents split over processes
        if n + 300 > limit:
            fitted = limit - 300
            print(f"open-file limit {limit}: {n} agents do not fit in one server process; running {fitted}",
                  file=sys.stderr)
            n = fitted
        runnable.append(n)
    return run_bench("server_scale", runnable, run_size, args, limit, TARGETS, verdicts, table)

if __name__ == "__main__":
    sys.exit(main())
