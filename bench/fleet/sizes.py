"""A fleet bench run over several sizes (server_scale, tui_scale): the size's log lines, its
temporary work directory, and the loop that runs each size and records one that failed
so that the next size still runs."""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable


def size_log(n: int) -> Callable[..., None]:
    """print() for one size: `[   500] …` on stderr. sys.__stderr__, not sys.stderr: while
    tui_scale's app runs, Textual captures sys.stderr for itself."""
    return lambda *a: print(f"[{n:>6}] " + " ".join(str(x) for x in a), file=sys.__stderr__, flush=True)


def size_work_dir(n: int, prefix: str) -> tuple[Path, Path]:
    """A fresh temporary directory for size n and the server's data dir inside it."""
    work = Path(tempfile.mkdtemp(prefix=f"{prefix}-{n}-"))
    data_dir = work / "data"
    data_dir.mkdir(mode=0o700)
    return work, data_dir


def run_sizes(sizes: list[int], run: Callable[[int], dict], key: str, *, show_traceback: bool = False) -> list[dict]:
    """run(n) for each size; a size that raises is recorded as {key: n, "failed": "Type: message"}
    and said on stderr (the traceback, or one FAILED line)."""
    results = []
    for n in sizes:
        try:
            results.append(run(n))
        except Exception as exc:
            if show_traceback:
                traceback.print_exc()
            else:
                size_log(n)(f"FAILED: {type(exc).__name__}: {exc}")
            results.append({key: n, "failed": f"{type(exc).__name__}: {exc}"})
    return results


def fleet_args(ap: argparse.ArgumentParser, name: str) -> None:
    """The flags the server benches share (server_scale, replicas); `name` is the results file's."""
    from fleet.agents import AGENTS_PER_SOURCE

    ap.add_argument("--agent-procs", type=int, default=2, help="processes for the simulated agents")
    ap.add_argument("--agents-freeze-heap", action=argparse.BooleanOptionalAction, default=True,
                    help="simulated agents freeze their heap like the server does (default; docs/benchmarks.md, "
                         "issue 13 round 2): thousands of clients in one process made their GC a cost no real "
                         "agent has")
    ap.add_argument("--agents-spread-sources", action=argparse.BooleanOptionalAction, default=True,
                    help=f"simulated agents connect from many loopback addresses, {AGENTS_PER_SOURCE} each "
                         "(docs/benchmarks.md, issue 13 round 2): from one address the kernel's source-port "
                         "search dominates storms above ~14k connections; real agents come from their own "
                         "addresses (default; --no-agents-spread-sources for one address)")
    ap.add_argument("--agents-nice", type=int, default=10,
                    help="niceness of the simulated agents' processes (default 10; docs/benchmarks.md, issue 13 "
                         "round 3): they stand for machines of their own, and at the same priority the kernel "
                         "preempted the server's event loop for them mid-callback; 0 for the old arrangement")
    ap.add_argument("--window", type=float, default=10, help="seconds per at-rest probe window")
    ap.add_argument("--push-concurrency", type=int, default=16, help="mutation requests in flight during the push")
    ap.add_argument("--per-host-push", action="store_true",
                    help="push with one source-group POST per host instead of the fleet endpoint")
    ap.add_argument("--log-jobs", type=int, default=64, help="jobs streaming logs at once")
    ap.add_argument("--log-lines", type=int, default=200_000, help="log lines in total for the ingest test")
    ap.add_argument("--max-seconds", type=float, default=900, help="child processes exit after this long")
    ap.add_argument("--scrape-every", type=float, default=0, metavar="SECONDS",
                    help="the probes also scrape /metrics as Prometheus does, every SECONDS during every phase "
                         "(0: not at all; issue 20: a scrape must not move the push or paged p99s)")
    ap.add_argument("--profile", metavar="DIR", help="sample the server with py-spy during push and ingest")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dirs")
    ap.add_argument("--out", default=None, help=f"JSON file (default bench/results/{name}.json; "
                    f"--quick writes {name}.quick.json next to it)")


def run_bench(name: str, sizes: list[int], run: Callable, args, nofile_limit: int, targets: dict,
              verdicts: Callable[[dict], dict], table: Callable[[list[dict]], str], **kw) -> int:
    """run(n, args, ctx) for each size in spawned children's context, each result judged by
    verdicts(), the table printed and the results written (bench/harness.py); the exit code."""
    from harness import machine, run_doc, write_results

    ctx = mp.get_context("spawn")
    started = time.time()
    results = run_sizes(sizes, lambda n: run(n, args, ctx), "agents", **kw)
    for r in results:
        r["verdicts"] = verdicts(r)
    write_results(name, run_doc(started, machine(nofile_limit), targets, vars(args), results),
                  quick=args.quick, out=args.out, table=table(results))
    return 0 if all("failed" not in r for r in results) else 1


def tear_down(work: Path, keep: bool, log: Callable[..., None], *parts) -> None:
    """Stop a size's parts in order (probes, agents, servers, a database: anything with
    close() or stop(); None skipped), then remove its work dir unless kept."""
    for part in parts:
        if part is not None:
            (getattr(part, "close", None) or part.stop)()
    if keep:
        log(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
