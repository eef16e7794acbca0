"""The fleet benches' phases, each over a `Fleet` (one server, or several replicas of one
PostgreSQL database): connect storm, probe windows, fleet push, log ingest; and one size of
bench/server_scale.py built from them (seed, at rest with and without full host lists,
push, ingest, a crash + restart storm). bench/replicas.py builds its run from the same
phases (fleet/replica_run.py). Each phase writes its figures into the results dict."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fleet.agents import start_swarms
from fleet.driver import Children, Profiler, Server, fan_out, rest_setup, server_ack_check
from fleet.probe import Probes
from fleet.seed import prepare_db, query, target_of
from fleet.sizes import size_log, size_work_dir, tear_down
from fleet.stats import mono, pct, phase_stats, proc_cpu_s, proc_status, procs_cpu_s, rounded

PUSH_BODY = {"includes": ["/etc", "/home"], "excludes": ["*.tmp"], "cron": "0 3 * * *",
             "retention": {"keep_daily": 7, "keep_weekly": 4}}


@dataclass
class Fleet:
    """What the phases drive: the servers' URLs and pids (one, or every replica), an admin
    token, the simulated agents, one probe process per server, the database they share."""
    bases: list[str]
    pids: list[int]
    token: str
    host_ids: list[str]
    children: Children
    probes: Probes
    database: Any  # what fleet.seed.query reads: the SQLite file or the PostgreSQL URL
    args: Any
    log: Callable[..., None]

    def cpu(self) -> float:
        return sum(proc_cpu_s(pid) or 0 for pid in self.pids)

    def each(self, stats: list[dict]) -> Any:
        """Per-server figures: one server's dict, or a list with one per replica."""
        return stats[0] if len(self.pids) == 1 else stats

    def profile(self, name: str) -> list[Profiler]:
        return [Profiler(self.args.profile, pid, name if len(self.pids) == 1 else f"{name}-r{i}")
                for i, pid in enumerate(self.pids)]

    def window(self, seconds: float, full_list: bool = False) -> Any:
        """The probes for `seconds`: per-server phase figures."""
        self.probes.start(full_list)
        time.sleep(seconds)
        return self.each([phase_stats(s) for s in self.probes.stop()])

    def log_rows(self) -> int:
        return query(self.database, "SELECT count(*) FROM job_logs")[0][0]


def connect_storm(fleet: Fleet, res: dict) -> None:
    """Wait until every agent said hello and acked its schedule."""
    n, children = len(fleet.host_ids), fleet.children
    t0, cpu0, acpu0 = mono(), fleet.cpu(), procs_cpu_s(children.procs)
    st = []
    while mono() - t0 < 60 + n / 100:
        time.sleep(0.5)
        st = children.ask(("status",))
        if sum(s["acked"] for s in st) >= n and sum(s["hello_ok"] for s in st) >= n:
            break
    res["connect_s"] = round(mono() - t0, 2)
    res["connected"] = sum(s["connected"] for s in st)
    res["connected_per_server"] = [sum(x) for x in zip(*(s["per_url"] for s in st))]
    res["connect_failures"] = sum(s["connect_failures"] for s in st)
    res["agent_errors"] = [e for s in st for e in s["errors"]][:5]
    res["server_cpu_connect_s"] = rounded(fleet.cpu() - cpu0, 2)
    res["agents_cpu_connect_s"] = rounded(procs_cpu_s(children.procs) - acpu0, 2)
    res["agents_gc_connect_s"] = rounded(sum(s.get("gc_s", 0) for s in st), 2)
    fleet.log(f"{res['connected']}/{n} agents connected and acked in {res['connect_s']}s "
              f"(per server {res['connected_per_server']}; connect failures {res['connect_failures']})")
    if res["connected"] < n:
        fleet.log("not every agent connected:", res["agent_errors"])


def fleet_push(fleet: Fleet, res: dict, push_base: str, check_base: str) -> None:
    """One PUT /api/v1/fleet/policies/{name} on push_base reaching every host (or one POST per
    host, --per-host-push), timed until every agent acked; then check_base's host list must
    show every ack recorded."""
    args, children, host_ids, n = fleet.args, fleet.children, fleet.host_ids, len(fleet.host_ids)
    version = 1
    fleet.probes.start(full_list=True)
    profs = fleet.profile(f"push-{n}")
    cpu0 = fleet.cpu()
    t_push = mono()
    if args.per_host_push:
        body = {"name": "bench-fleet", **{k: v for k, v in PUSH_BODY.items() if k != "cron"}}
        ok, errs = asyncio.run(fan_out(push_base, fleet.token, host_ids,
                                       lambda h: ("POST", f"/api/v1/hosts/{h}/source-groups", body),
                                       concurrency=args.push_concurrency))
    else:
        ok, errs = asyncio.run(fan_out(push_base, fleet.token, [None],
                                       lambda _: ("PUT", "/api/v1/fleet/policies/bench-fleet", PUSH_BODY),
                                       concurrency=1))
        ok = n if ok else 0
    t_requests = mono() - t_push
    fleet.log(f"push: {ok} mutations accepted in {t_requests:.2f}s ({len(errs)} errors {errs[:3]})")
    acked = last = None
    while mono() - t_push < 60 + n / 50:
        a = children.ask(("acks", version))
        acked = sum(x["count"] for x in a)
        lasts = [x["last"] for x in a if x["last"] is not None]
        last = max(lasts) if lasts else None
        if acked >= ok:
            break
        time.sleep(0.2)
    probes = [phase_stats(s) for s in fleet.probes.stop()]
    for prof in profs:
        prof.stop()
    res["server_cpu_push_s"] = rounded(fleet.cpu() - cpu0, 2)
    push = res["push"] = {"mutations_ok": ok, "mutation_errors": len(errs), "requests_s": round(t_requests, 2),
                          "agents_acked": acked, "acked_s": rounded(last - t_push, 2) if last else None,
                          "acked_after_last_request_s": rounded(last - t_push - t_requests, 2) if last else None,
                          "probes": fleet.each(probes)}
    t_srv = mono()
    srv_acked = 0
    while mono() - t_srv < 60:
        srv_acked = asyncio.run(server_ack_check(check_base, fleet.token, version))
        if srv_acked >= ok:
            break
        time.sleep(1)
    push["server_recorded_acks"] = srv_acked
    push["server_recorded_all_s"] = rounded(mono() - t_push, 2) if srv_acked >= ok else None
    fleet.log(f"push acked by {acked} agents {push['acked_s']}s after the first request; server recorded "
              f"{srv_acked}; probes p99:", json.dumps([{k: s[k]["p99_ms"] for k in ("healthz", "hosts_page",
                                                                                   "jobs_page", "hosts_full")}
                                                      for s in probes]))


def start_log_jobs(fleet: Fleet, hosts: list[str], total: int, job_bases: list[str]) -> tuple[int, list[str], list[str]]:
    """Log mode on for `hosts` (a new ingest phase in the agents' counters), then an `init` job
    on each, created round robin on job_bases. Returns (jobs made, errors, their ids)."""
    fleet.children.ask(("logmode", max(1, total // len(hosts)), 200, 4, hosts))
    jobs: list[dict] = []
    ok, errors = asyncio.run(fan_out(job_bases, fleet.token, hosts,
                                     lambda h: ("POST", f"/api/v1/hosts/{h}/jobs", {"kind": "init"}),
                                     concurrency=8, replies=jobs))
    return ok, errors, [j["id"] for j in jobs]


def log_ingest(fleet: Fleet, hosts: list[str], total: int, job_bases: list[str], timeout: float = 120) -> dict:
    """An `init` job on each of `hosts` (created round robin on job_bases); their agents stream
    `total` lines between them (200 a batch, 4 batches unacked at most) and finish the job.
    lines/s: lines acked over the time from the first send to the last ack, cross-checked
    against the rows job_logs gained. Returns the figures, with the jobs' ids."""
    children = fleet.children
    fleet.probes.start()
    profs = fleet.profile(f"ingest-{len(fleet.host_ids)}")
    cpu0, acpu0, rows0 = fleet.cpu(), procs_cpu_s(children.procs), fleet.log_rows()
    ok_jobs, jerrs, job_ids = start_log_jobs(fleet, hosts, total, job_bases)
    t_log = mono()
    ls = []
    while mono() - t_log < timeout:
        ls = children.ask(("logstatus",))
        if sum(x["done"] for x in ls) >= ok_jobs:
            break
        time.sleep(0.2)
    probes = [phase_stats(s) for s in fleet.probes.stop()]
    for prof in profs:
        prof.stop()
    firsts = [x["first_send"] for x in ls if x["first_send"]]
    lasts = [x["last_ack"] for x in ls if x["last_ack"]]
    lines = sum(x["lines"] for x in ls)
    dur = (max(lasts) - min(firsts)) if firsts and lasts else None
    stored = fleet.log_rows() - rows0
    out = {"jobs": ok_jobs, "job_errors": len(jerrs), "jobs_done": sum(x["done"] for x in ls),
           "lines_acked": lines, "lines_in_db": stored, "seconds": rounded(dur, 2),
           "lines_per_s": int(lines / dur) if dur else None,
           "db_lines_per_s": int(stored / dur) if dur else None,
           "server_cpu_s": rounded(fleet.cpu() - cpu0, 2),
           "agents_cpu_s": rounded(procs_cpu_s(children.procs) - acpu0, 2),
           "probes": fleet.each(probes), "job_ids": job_ids}
    fleet.log(f"log ingest: {lines} lines from {ok_jobs} jobs in {out['seconds']}s = {out['lines_per_s']} lines/s "
              f"(rows job_logs gained: {stored}); healthz p99 {[s['healthz']['p99_ms'] for s in probes]} ms")
    return out


def run_size(n: int, args, ctx) -> dict:
    """One size of bench/server_scale.py: one server on SQLite."""
    log = size_log(n)
    res: dict = {"agents": n, "loadavg_before": os.getloadavg()}
    work, data_dir = size_work_dir(n, "rm-bench")
    t = mono()
    creds = prepare_db(data_dir, n)
    log(f"wrote {n} hosts + tokens + {2 * n} jobs into SQLite in {mono() - t:.1f}s")
    server = Server(data_dir, max_agents=n + 200)
    children = probes = None
    quick = args.quick
    try:
        base = server.wait_ready()
        pid = server.proc.pid
        res["rss_idle_mb"] = proc_status(pid).get("VmRSS")
        token = asyncio.run(rest_setup(base, data_dir))
        children = start_swarms(ctx, base, creds, args.agent_procs, args.max_seconds,
                                nice=getattr(args, "agents_nice", 0), freeze_heap=args.agents_freeze_heap,
                                spread_sources=args.agents_spread_sources)
        host_ids = [h for h, _ in creds]
        probes = Probes(ctx, [base], token, host_ids, args.max_seconds, args.scrape_every)
        fleet = Fleet([base], [pid], token, host_ids, children, probes, target_of(data_dir), args, log)
        connect_storm(fleet, res)
        time.sleep(2)
        res["rss_connected_mb"] = proc_status(pid).get("VmRSS")
        log(f"server RSS with {res['connected']} agents: {res['rss_connected_mb']} MB")

        win = 5 if quick else args.window
        rest = res["rest"] = fleet.window(win)
        log("at rest:", json.dumps({k: rest[k]["p99_ms"] for k in ("healthz", "hosts_page", "jobs_page")}))
        res["rss_after_rest_mb"] = proc_status(pid).get("VmRSS")
        prof = Profiler(args.profile, pid, f"full-list-{n}")
        rest_full = res["rest_full_list"] = fleet.window(win, full_list=True)
        prof.stop()
        log("at rest + full lists:", json.dumps({k: rest_full[k]["p99_ms"] for k in
                                                  ("healthz", "hosts_page", "jobs_page", "hosts_full")}))
        # where the peak comes from: RSS and its high-water mark before and after the push
        status = proc_status(pid)
        res["rss_after_full_lists_mb"], res["rss_peak_before_push_mb"] = status.get("VmRSS"), status.get("VmHWM")
        fleet_push(fleet, res, base, base)
        res["rss_after_push_mb"] = proc_status(pid).get("VmRSS")
        res["log_ingest"] = log_ingest(fleet, host_ids[:min(n, args.log_jobs)],
                                       50_000 if quick else args.log_lines, [base])
        del res["log_ingest"]["job_ids"]
        server_status = proc_status(pid)
        res["rss_end_mb"] = server_status.get("VmRSS")
        res["rss_peak_mb"] = server_status.get("VmHWM")
        final = children.ask(("status",))
        res["disconnects"] = sum(s["disconnects"] for s in final)
        res["still_connected"] = sum(s["connected"] for s in final)
        server = restart_storm(server, data_dir, base, children, n, args, res, log)
        res["loadavg_after"] = os.getloadavg()
    finally:
        tear_down(work, args.keep, log, probes, children, server)
    return res


def restart_storm(server: Server, data_dir, base: str, children: Children, n: int, args, res: dict, log) -> Server:
    """A crash (SIGKILL), then a new server on the same data dir and port; agents waiting in
    their reconnect backoff are woken the moment it listens, so the storm is every agent at
    once and the time is the server's, not the simulated backoff's. Returns the new server."""
    listen = base.split("//", 1)[1].split("/", 1)[0]
    t_stop = mono()
    server.proc.kill()
    server.proc.wait(10)
    server.stop()
    server = Server(data_dir, max_agents=n + 200, listen=listen, log_name="server-restarted.log")
    try:
        measure_restart(server, t_stop, children, n, args, res, log)
    except BaseException:
        server.stop()
        raise
    return server


def measure_restart(server: Server, t_stop: float, children: Children, n: int, args, res: dict, log) -> None:
    server.wait_ready()
    t_up = mono()
    pid = server.proc.pid
    prof = Profiler(args.profile, pid, f"restart-{n}")
    agent_profs = [Profiler(args.profile, pr.pid, f"restart-{n}-agents{i}") for i, pr in enumerate(children.procs)]
    acpu0 = procs_cpu_s(children.procs)
    agc0 = sum(s.get("gc_s", 0) for s in children.ask(("status",)))
    children.ask(("wake",))
    cpu0 = proc_cpu_s(pid)
    st = []
    while mono() - t_up < 60 + n / 100:
        time.sleep(0.25)
        # Hellos since the kill, not since t_up: an agent whose own backoff retry lands
        # between the new server's bind and the bench reading its "listening" line is
        # back before t_up, and counting from t_up waited for it until the timeout
        # (the "13 of 200 agents had not reconnected" of the first round).
        st = children.ask(("since", t_stop))
        if sum(s["acked"] for s in st) >= n and sum(s["hello_ok"] for s in st) >= n:
            break
    prof.stop()
    for ap in agent_profs:
        ap.stop()
    lasts = [s["last"] for s in st if s["last"]]
    hello_lasts = [s["hello_last"] for s in st if s.get("hello_last")]
    hello_times = sorted(t - (t_up - t_stop) for s in children.ask(("since", t_stop, True))
                         for t in s["hello_times"])
    hello_pcts = {f"p{q}": rounded(pct(hello_times, q), 2) for q in (50, 90, 99)}
    done = sum(s["acked"] for s in st) >= n and sum(s["hello_ok"] for s in st) >= n
    r = res["restart"] = {"down_s": rounded(t_up - t_stop, 2), "hello_ok": sum(s["hello_ok"] for s in st),
                          "acked": sum(s["acked"] for s in st),
                          "storm_s": rounded(max(lasts) - t_up, 2) if done and lasts else None,
                          "last_hello_s": rounded(max(hello_lasts) - t_up, 2) if hello_lasts else None,
                          "hello_s_after_wake": hello_pcts,
                          "server_cpu_s": rounded((proc_cpu_s(pid) or 0) - (cpu0 or 0), 2),
                          "agents_cpu_s": rounded(procs_cpu_s(children.procs) - acpu0, 2),
                          "agents_gc_s": rounded(sum(s.get("gc_s", 0) for s in st) - agc0, 2),
                          "rss_mb": proc_status(pid).get("VmRSS")}
    log(f"restart: server down {r['down_s']}s; {r['hello_ok']} hellos, {r['acked']} acks; all hello'd and acked "
        f"{r['storm_s']}s after it listened (last hello.ok {r['last_hello_s']}s; {hello_pcts}); CPU s server "
        f"{r['server_cpu_s']}, agents {r['agents_cpu_s']} (GC {r['agents_gc_s']})")
