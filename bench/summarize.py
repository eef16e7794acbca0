"""min / median / max of several bench/server_scale.py result files, per fleet size, as a
Markdown table (the box is shared: one run says little, three say how much it varies).

    python bench/summarize.py run1.json run2.json run3.json
"""

from __future__ import annotations

import json
import statistics
import sys

ROWS = [
    ("connect storm, first start (s)", ("connect_s",)),
    ("connect storm after restart: all hello'd + acked (s)", ("restart", "storm_s")),
    ("server RSS, all connected (MB)", ("rss_connected_mb",)),
    ("server RSS peak (MB)", ("rss_peak_mb",)),
    ("rest: healthz p99 (ms)", ("rest", "healthz", "p99_ms")),
    ("rest: server loop lag p99 (ms, bucket bound)", ("rest", "server_loop_lag", "p99_ms")),
    ("rest: hosts?limit=100 p99 (ms)", ("rest", "hosts_page", "p99_ms")),
    ("rest: jobs?limit=100 p99 (ms)", ("rest", "jobs_page", "p99_ms")),
    ("rest: full host list p99 (ms)", ("rest_full_list", "hosts_full", "p99_ms")),
    ("fleet push acked by every agent (s)", ("push", "acked_s")),
    ("push: healthz p99 (ms)", ("push", "probes", "healthz", "p99_ms")),
    ("push: server loop lag p99 (ms, bucket bound)", ("push", "probes", "server_loop_lag", "p99_ms")),
    ("push: hosts?limit=100 p99 (ms)", ("push", "probes", "hosts_page", "p99_ms")),
    ("push: jobs?limit=100 p99 (ms)", ("push", "probes", "jobs_page", "p99_ms")),
    ("log ingest (lines/s)", ("log_ingest", "lines_per_s")),
    ("server CPU: connect / push / ingest / restart (s)", None),
    ("load average before the size", ("loadavg_before",)),
]


def get(r: dict, path: tuple) -> float | None:
    for k in path:
        if not isinstance(r, dict):
            return None
        r = r.get(k)
    if isinstance(r, list):
        return r[0]
    return r


def cell(values: list) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:g}"
    return f"{min(vals):g} / {statistics.median(vals):g} / {max(vals):g}"


def main(paths: list[str]) -> None:
    runs = [json.load(open(p))["results"] for p in paths]
    sizes = sorted({r["agents"] for run in runs for r in run})
    by = {n: [r for run in runs for r in run if r["agents"] == n] for n in sizes}
    print(f"| metric ({len(paths)} runs: min / median / max) | " + " | ".join(f"{n:,}" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for name, path in ROWS:
        if path is None:
            cells = []
            for n in sizes:
                parts = [cell([get(r, p) for r in by[n]]) for p in (("server_cpu_connect_s",), ("server_cpu_push_s",),
                                                                  ("log_ingest", "server_cpu_s"),
                                                                  ("restart", "server_cpu_s"))]
                cells.append(" · ".join(parts))
        else:
            cells = [cell([round(v, 1) if isinstance(v, float) else v for v in (get(r, path) for r in by[n])])
                     for n in sizes]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
