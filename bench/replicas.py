#!/usr/bin/env python3
"""rm-server as several replicas of one PostgreSQL database, at fleet scale (issue 19).

For each fleet size N it:

1. starts a throwaway PostgreSQL cluster (initdb/pg_ctl on a temp dir, tests/pgcluster.py,
   with PostgreSQL's own durability: fsync, synchronous_commit and full_page_writes on;
   `--pg-setting NAME=VALUE` overrides) or uses `--database URL` (an empty database), and
   writes N hosts, their agent tokens and 2 finished jobs per host into it through the
   store's own backend-neutral Database, after the server's migrations;
2. starts R replicas, `rm-server serve --database URL --master-key-file F` on ports of
   their own (the first alone: it makes the master key and the bootstrap token);
3. starts the simulated agents (bench/fleet/agents.py, as bench/server_scale.py's), each
   knowing every replica's URL: agent i starts at replica i mod R and, like rm-agent,
   moves to the next URL whenever a connection fails or drops; and one probe process per
   replica (healthz every 10 ms, paged host and job lists; full host lists during the push);
4. connect storm; at rest; fleet push: one PUT /api/v1/fleet/policies/bench-fleet on the
   first replica, timed until every agent acked wherever it is, then the acks must show in
   the last replica's host list; log ingest: `init` jobs created round robin on the
   replicas, lines/s from the agents' acks and from the rows job_logs gained;
5. kill -9 of the replica that leads (holds the leader's advisory lock) while jobs on its
   agents stream logs: time until all its agents are online in another replica's host
   list, until a few "pinned" agents (which never come back) are marked offline by the
   new leader's sweep, until the leader's lock is taken over, and until the maintenance
   ticker creates its next job (a check due every minute on 3 hosts), in ticks;
6. the final check: every job's every line is in job_logs and the job `succeeded`.

Do not run the full size on a shared machine: it takes the whole box for ~5 minutes.

    .venv/bin/python bench/replicas.py --quick                  # 300 agents, 3 replicas, ~2-3 min
    .venv/bin/python bench/replicas.py                          # 19,000 agents, 3 replicas

Results: a table on stdout and bench/results/replicas.json (--quick: replicas.quick.json).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # rm_server, and tests.pgcluster for the throwaway cluster
sys.path.insert(0, str(ROOT / "bench"))  # the spawned children find fleet.* by that name

from fleet.driver import raise_nofile  # noqa: E402
from fleet.replica_report import TARGETS, table, verdicts  # noqa: E402
from fleet.replica_run import run_replicas  # noqa: E402
from fleet.sizes import fleet_args, run_bench  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="19000", help="comma-separated fleet sizes (agents over all replicas)")
    ap.add_argument("--replicas", type=int, default=3, help="rm-server replicas (at least 2: one is killed)")
    ap.add_argument("--quick", action="store_true", help="300 agents, short windows")
    ap.add_argument("--database", metavar="URL", help="an empty PostgreSQL database to use instead of a throwaway "
                                                      "cluster (postgresql://USER@HOST:PORT/DB)")
    ap.add_argument("--pg-setting", action="append", default=[], metavar="NAME=VALUE",
                    help="a setting of the throwaway cluster (repeatable), e.g. synchronous_commit=off")
    ap.add_argument("--pinned", type=int, default=10,
                    help="agents of the killed replica that never come back (their hosts must go offline)")
    ap.add_argument("--kill-log-jobs", type=int, default=16, help="jobs on the killed replica's agents streaming "
                                                                  "logs as it dies")
    ap.add_argument("--kill-log-lines", type=int, default=64_000, help="log lines those jobs stream in all")
    ap.add_argument("--failover-timeout", type=float, default=150, help="seconds to wait for the kill's outcomes")
    fleet_args(ap, "replicas")
    args = ap.parse_args()
    if args.replicas < 2:
        ap.error("--replicas must be at least 2: the bench kills one")
    limit = raise_nofile()
    sizes = [300] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
    # after the kill the survivors hold every agent: one replica may hold them all (R = 2)
    runnable = [min(n, limit - 300) for n in sizes]
    for n, fitted in zip(sizes, runnable):
        if fitted < n:
            print(f"open-file limit {limit}: {n} agents do not fit; running {fitted}", file=sys.stderr)
    return run_bench("replicas", runnable, run_replicas, args, limit, TARGETS, verdicts, table,
                     show_traceback=True)

if __name__ == "__main__":
    sys.exit(main())
