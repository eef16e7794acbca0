"""bench/replicas.py's targets (issue 19), the verdicts against them and the table it prints."""

from __future__ import annotations

from fleet.report import g, render

TARGETS = {"push_acked_s": 3.0, "paged_p99_ms": 100, "log_lines_per_s": 50_000, "failover_s": 30,
           "offline_s": 30, "leader_resume_ticks": 2, "lines_lost": 0}


def _each(r: dict, *path) -> list:
    """One figure per replica from a per-replica list of probe figures (None: not measured)."""
    per = g(r, *path[:-2]) if len(path) > 2 else r
    if not isinstance(per, list):
        return []
    return [None if p is None else g(p, *path[-2:]) for p in per]


def _cells(values: list) -> str:
    return "/".join("-" if v in (None, "-") else str(v) for v in values) or "-"


def verdicts(r: dict) -> dict:
    v = {}
    push = r.get("push", {})
    v["push_acked_le_3s"] = push.get("acked_s") is not None and push["acked_s"] <= TARGETS["push_acked_s"]
    probes = push.get("probes") or []
    paged = [p.get(k, {}).get("p99_ms") for p in probes for k in ("hosts_page", "jobs_page")
             if p.get(k, {}).get("n", 0) > 0]
    # every replica measured (a push shorter than one probe period has no sample to judge)
    v["paged_p99_le_100ms_every_replica_during_push"] = (
        None if not paged else all(x is not None and x <= TARGETS["paged_p99_ms"] for x in paged))
    lps = g(r, "log_ingest", "db_lines_per_s")
    v["log_ge_50k_lines_s"] = lps != "-" and lps >= TARGETS["log_lines_per_s"]
    kill = r.get("kill", {})
    v["agents_online_elsewhere_le_30s"] = kill.get("hosts_s") is not None and kill["hosts_s"] <= TARGETS["failover_s"]
    v["pinned_marked_offline_le_30s"] = (kill.get("pinned_offline_s") is not None
                                         and kill["pinned_offline_s"] <= TARGETS["offline_s"])
    v["leader_duties_resume_le_2_ticks"] = (kill.get("maintenance_ticks") is not None
                                            and kill["maintenance_ticks"] <= TARGETS["leader_resume_ticks"]
                                            and kill.get("maintenance_duplicates") == 0)
    lines = r.get("lines", {})
    v["zero_lines_lost"] = (lines.get("lines_lost") == 0 and lines.get("jobs_incomplete") == 0
                            and lines.get("states", {}).get("succeeded") == lines.get("jobs"))
    return v


def table(results: list[dict]) -> str:
    rows = [
        ("replicas", lambda r: r["replicas"]),
        ("agents connected (per replica)", lambda r: f"{r['connected']} ({_cells(r['connected_per_server'])})"),
        ("connect storm (s)", lambda r: g(r, "connect_s")),
        ("replica RSS connected (MB)", lambda r: _cells(r["rss_connected_mb"])),
        ("rest: healthz p99 per replica (ms)", lambda r: _cells(_each(r, "rest", "healthz", "p99_ms"))),
        ("rest: hosts?limit=100 p99 per replica", lambda r: _cells(_each(r, "rest", "hosts_page", "p99_ms"))),
        ("rest: jobs?limit=100 p99 per replica", lambda r: _cells(_each(r, "rest", "jobs_page", "p99_ms"))),
        ("push: acked by all agents (s)", lambda r: g(r, "push", "acked_s")),
        ("push: recorded, seen on another replica (s)", lambda r: g(r, "push", "server_recorded_all_s")),
        ("push: hosts?limit=100 p99 per replica", lambda r: _cells(_each(r, "push", "probes", "hosts_page", "p99_ms"))),
        ("push: jobs?limit=100 p99 per replica", lambda r: _cells(_each(r, "push", "probes", "jobs_page", "p99_ms"))),
        ("push: full hosts p99, first replica", lambda r: g(r["push"]["probes"][0], "hosts_full", "p99_ms")),
        ("log ingest lines/s (acked / rows)", lambda r: f"{g(r, 'log_ingest', 'lines_per_s')}/"
                                                        f"{g(r, 'log_ingest', 'db_lines_per_s')}"),
        ("log ingest: jobs/p99 healthz", lambda r: f"{g(r, 'log_ingest', 'jobs')}/"
                                                   f"{_cells(_each(r, 'log_ingest', 'probes', 'healthz', 'p99_ms'))}"),
        ("kill: leader r#, its agents (pinned)", lambda r: f"r{g(r, 'kill', 'victim')}, {g(r, 'kill', 'victim_agents')} "
                                                          f"({g(r, 'kill', 'pinned')})"),
        ("kill: its agents online elsewhere (s)", lambda r: g(r, "kill", "hosts_s")),
        ("kill: same, agents' own view (s)", lambda r: g(r, "kill", "agents_s")),
        ("kill: pinned hosts marked offline (s)", lambda r: g(r, "kill", "pinned_offline_s")),
        ("kill: leader's lock taken over (s)", lambda r: g(r, "kill", "leader_s")),
        ("kill: first maintenance tick (s/ticks)", lambda r: f"{g(r, 'kill', 'maintenance_s')}/"
                                                             f"{g(r, 'kill', 'maintenance_ticks')}"),
        ("kill: maintenance, old leader's last to new's first (ticks)", lambda r: g(r, "kill", "maintenance_gap_ticks")),
        ("kill: interrupted streams done (s)", lambda r: g(r, "kill", "streams_s")),
        ("kill: survivors' paged p99 (ms)", lambda r: _cells(_each(r, "kill", "probes", "hosts_page", "p99_ms"))),
        ("lines lost / jobs incomplete", lambda r: f"{g(r, 'lines', 'lines_lost')}/{g(r, 'lines', 'jobs_incomplete')}"),
        ("replicas CPU s: connect/push/ingest", lambda r: f"{g(r, 'server_cpu_connect_s')}/"
                                                          f"{g(r, 'server_cpu_push_s')}/{g(r, 'log_ingest', 'server_cpu_s')}"),
    ]
    return render(rows, results, width=24)
