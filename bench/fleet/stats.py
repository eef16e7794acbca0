"""Numbers the fleet benches report: percentiles of samples, the server's loop-lag histogram
per phase, and a process's memory and CPU read from /proc."""

from __future__ import annotations

import os
import time
from pathlib import Path


def mono() -> float:
    return time.monotonic()  # CLOCK_MONOTONIC: comparable across processes on Linux


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(q / 100 * (len(s) - 1)))))
    return s[k]


def rounded(v: float | None, nd: int = 1) -> float | None:
    return None if v is None else round(v, nd)


def summary_ms(values: list[float], high: int = 99) -> dict:
    """n, p50, p<high> (99 for the server's probes, 95 for the console's keys) and max, in ms."""
    return {"n": len(values), "p50_ms": rounded(pct(values, 50)), f"p{high}_ms": rounded(pct(values, high)),
            "max_ms": rounded(max(values) if values else None)}


def lag_stats(before: dict, after: dict) -> dict:
    """p50/p99 of the server's loop lag in one phase, from its histogram: the upper bound of
    the bucket the quantile falls in (so 'p99 <= X ms')."""
    keys = [k for k in after if k != "+Inf"]
    if not keys or "+Inf" not in after:
        return {"n": 0, "p50_ms": None, "p99_ms": None}
    keys.sort(key=float)
    total = after["+Inf"] - before.get("+Inf", 0)
    out: dict = {"n": int(total)}
    for name, q in (("p50_ms", 0.5), ("p99_ms", 0.99)):
        out[name] = None
        for k in keys + ["+Inf"]:
            if total and after[k] - before.get(k, 0) >= q * total:
                out[name] = float(k) * 1000 if k != "+Inf" else float("inf")
                break
    return out


def phase_stats(samples: dict) -> dict:
    """One phase's probe samples (fleet.probe.Probe) as the figures the results JSON holds."""
    out = {k: summary_ms(samples.get(k, [])) for k in ("healthz", "hosts_page", "jobs_page", "hosts_full", "scrape")}
    out["server_loop_lag"] = lag_stats(samples.get("lag_before") or {}, samples.get("lag_after") or {})
    out["errors"] = len(samples.get("errors", []))
    out["error_examples"] = sorted(set(samples.get("errors", [])))[:5]
    return out


def proc_status(pid: int) -> dict:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, val = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = round(int(val.split()[0]) / 1024, 1)  # MB
    except OSError:
        pass
    return out


def proc_cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def procs_cpu_s(procs) -> float:
    """CPU seconds of the simulated agents' processes: on 2 shared cores they compete with the server."""
    return sum(proc_cpu_s(pr.pid) or 0 for pr in procs)
