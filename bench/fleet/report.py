"""bench/server_scale.py's targets (issue 5), the pass/fail verdicts against them and the
table it prints."""

from __future__ import annotations

TARGETS = {
    "rss_mb_19k": 600, "push_acked_s": 3.0, "paged_p99_ms": 100, "full_list_p99_ms": 250,
    "loop_lag_p99_ms": 50, "log_lines_per_s": 50_000, "restart_storm_s": 15,
}


def verdicts(r: dict) -> dict:
    """Pass/fail against the targets of issue 5 (RSS target applies to 19k agents)."""
    v = {}
    push = r.get("push", {})
    v["push_acked_le_3s"] = push.get("acked_s") is not None and push["acked_s"] <= TARGETS["push_acked_s"]
    probes = push.get("probes", {})
    # A push shorter than one probe period (--quick: 200 agents in ~0.03 s) has no sample to judge
    sampled = {k: v for k, v in probes.items() if not isinstance(v, dict) or v.get("n", 1) > 0}
    paged = [r.get(ph, {}).get(k, {}).get("p99_ms") for ph in ("rest",) for k in ("hosts_page", "jobs_page")]
    paged += [probes[k].get("p99_ms") for k in ("hosts_page", "jobs_page") if k in sampled]
    v["paged_p99_le_100ms"] = all(x is not None and x <= TARGETS["paged_p99_ms"] for x in paged)
    full = r.get("rest_full_list", {}).get("hosts_full", {}).get("p99_ms")
    v["full_list_p99_le_250ms"] = full is not None and full <= TARGETS["full_list_p99_ms"]
    lag = r.get("rest", {}).get("healthz", {}).get("p99_ms")
    v["loop_lag_p99_le_50ms_at_rest"] = lag is not None and lag <= TARGETS["loop_lag_p99_ms"]
    lag_push = probes.get("healthz", {}).get("p99_ms")
    v["loop_lag_p99_le_50ms_during_push"] = (
        None if "healthz" in probes and "healthz" not in sampled  # not measured
        else lag_push is not None and lag_push <= TARGETS["loop_lag_p99_ms"])
    lps = r.get("log_ingest", {}).get("lines_per_s")
    v["log_ge_50k_lines_s"] = lps is not None and lps >= TARGETS["log_lines_per_s"]
    storm = r.get("restart", {}).get("storm_s")
    v["restart_storm_le_15s"] = storm is not None and storm <= TARGETS["restart_storm_s"]
    rss = r.get("rss_peak_mb")
    v["rss_le_600mb"] = rss is not None and rss <= TARGETS["rss_mb_19k"]
    return v


def g(r, *path):
    """r[path[0]][path[1]]…, or "-" where any of it is missing."""
    for k in path:
        r = r.get(k, {}) if isinstance(r, dict) else {}
    return "-" if r in ({}, None) else r


def render(rows: list, results: list[dict], head: str = "agents", width: int = 16) -> str:
    """A table of (metric name, fn(result)) rows, one column per result headed by its `head`."""
    w0 = max(len(a) for a, _ in rows) + 2
    out = ["metric".ljust(w0) + "".join(f"{r[head]:>{width}}" for r in results)]
    for name, fn in rows:
        cells = []
        for r in results:
            try:
                cells.append(f"{fn(r)!s:>{width}}")
            except Exception:
                cells.append(f"{'-':>{width}}")
        out.append(name.ljust(w0) + "".join(cells))
    return "\n".join(out)


def table(results: list[dict]) -> str:
    rows = [
        ("agents connected", lambda r: f"{r.get('connected')}/{r['agents']}"),
        ("connect storm, first start (s)", lambda r: g(r, "connect_s")),
        ("connect storm after restart (s)", lambda r: g(r, "restart", "storm_s")),
        ("server RSS connected (MB)", lambda r: g(r, "rss_connected_mb")),
        ("server RSS peak (MB)", lambda r: g(r, "rss_peak_mb")),
        ("rest: healthz p50/p99 (ms)", lambda r: f"{g(r, 'rest', 'healthz', 'p50_ms')}/{g(r, 'rest', 'healthz', 'p99_ms')}"),
        ("rest: hosts?limit=100 p50/p99", lambda r: f"{g(r, 'rest', 'hosts_page', 'p50_ms')}/{g(r, 'rest', 'hosts_page', 'p99_ms')}"),
        ("rest: jobs?limit=100 p50/p99", lambda r: f"{g(r, 'rest', 'jobs_page', 'p50_ms')}/{g(r, 'rest', 'jobs_page', 'p99_ms')}"),
        ("rest: full hosts p50/p99", lambda r: f"{g(r, 'rest_full_list', 'hosts_full', 'p50_ms')}/{g(r, 'rest_full_list', 'hosts_full', 'p99_ms')}"),
        ("rest: server loop lag p99 (<=)", lambda r: g(r, "rest", "server_loop_lag", "p99_ms")),
        ("rest+full: healthz p99", lambda r: g(r, "rest_full_list", "healthz", "p99_ms")),
        ("rest+full: paged p99 hosts/jobs", lambda r: f"{g(r, 'rest_full_list', 'hosts_page', 'p99_ms')}/{g(r, 'rest_full_list', 'jobs_page', 'p99_ms')}"),
        ("push: mutations sent in (s)", lambda r: g(r, "push", "requests_s")),
        ("push: acked by all agents (s)", lambda r: g(r, "push", "acked_s")),
        ("push: healthz p50/p99", lambda r: f"{g(r, 'push', 'probes', 'healthz', 'p50_ms')}/{g(r, 'push', 'probes', 'healthz', 'p99_ms')}"),
        ("push: server loop lag p50/p99 (<=)", lambda r: f"{g(r, 'push', 'probes', 'server_loop_lag', 'p50_ms')}/{g(r, 'push', 'probes', 'server_loop_lag', 'p99_ms')}"),
        ("push: hosts?limit=100 p50/p99", lambda r: f"{g(r, 'push', 'probes', 'hosts_page', 'p50_ms')}/{g(r, 'push', 'probes', 'hosts_page', 'p99_ms')}"),
        ("push: jobs?limit=100 p50/p99", lambda r: f"{g(r, 'push', 'probes', 'jobs_page', 'p50_ms')}/{g(r, 'push', 'probes', 'jobs_page', 'p99_ms')}"),
        ("push: full hosts p50/p99", lambda r: f"{g(r, 'push', 'probes', 'hosts_full', 'p50_ms')}/{g(r, 'push', 'probes', 'hosts_full', 'p99_ms')}"),
        ("log ingest lines/s", lambda r: g(r, "log_ingest", "lines_per_s")),
        ("log ingest: healthz p99", lambda r: g(r, "log_ingest", "probes", "healthz", "p99_ms")),
        ("log ingest: server loop lag p99 (<=)", lambda r: g(r, "log_ingest", "probes", "server_loop_lag", "p99_ms")),
        ("server CPU s: connect/push/ingest", lambda r: f"{g(r, 'server_cpu_connect_s')}/{g(r, 'server_cpu_push_s')}/{g(r, 'log_ingest', 'server_cpu_s')}"),
        ("server CPU s: restart", lambda r: g(r, "restart", "server_cpu_s")),
        ("agents CPU s: connect/ingest/restart", lambda r: f"{g(r, 'agents_cpu_connect_s')}/{g(r, 'log_ingest', 'agents_cpu_s')}/{g(r, 'restart', 'agents_cpu_s')}"),
    ]
    return render(rows, results)
