"""One fleet size of bench/server_scale.py, phase by phase: seed the database, start the
server, the simulated agents and the probe; connect storm, at rest (with and without full
host lists), fleet push, log ingest, and a crash + restart storm. Returns the figures the
results JSON holds for that size."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import time

from fleet.agents import start_swarms
from fleet.driver import Profiler, Server, fan_out, rest_setup, server_ack_check
from fleet.probe import probe_cmd, probe_main
from fleet.seed import prepare_db
from fleet.sizes import size_log, size_work_dir
from fleet.stats import mono, pct, phase_stats, proc_cpu_s, proc_status, procs_cpu_s, rounded


def run_size(n: int, args, ctx) -> dict:
    log = size_log(n)
    res: dict = {"agents": n, "loadavg_before": os.getloadavg()}
    work, data_dir = size_work_dir(n, "rm-bench")
    t = mono()
    creds = prepare_db(data_dir, n)
    log(f"wrote {n} hosts + tokens + {2 * n} jobs into SQLite in {mono() - t:.1f}s")
    server = Server(data_dir, max_agents=n + 200)
    children = probe_q = probe_res = probe_proc = None
    quick = args.quick
    try:
        base = server.wait_ready()
        pid = server.proc.pid
        res["rss_idle_mb"] = proc_status(pid).get("VmRSS")
        token = asyncio.run(rest_setup(base, data_dir))
        lifetime = args.max_seconds
        children = start_swarms(ctx, base, creds, args.agent_procs, lifetime, nice=getattr(args, "agents_nice", 0),
                                freeze_heap=args.agents_freeze_heap, spread_sources=args.agents_spread_sources)
        probe_q, probe_res = ctx.Queue(), ctx.Queue()
        probe_proc = ctx.Process(target=probe_main, args=(base, token, [h for h, _ in creds], probe_q, probe_res,
                                                          lifetime), daemon=True)
        probe_proc.start()

        # ---- connect storm
        t0 = mono()
        cpu0 = proc_cpu_s(pid)
        acpu0 = procs_cpu_s(children.procs)
        connect_timeout = 60 + n / 100
        st = []
        while mono() - t0 < connect_timeout:
            time.sleep(0.5)
            st = children.ask(("status",))
            if sum(s["acked"] for s in st) >= n and sum(s["hello_ok"] for s in st) >= n:
                break
        res["connect_s"] = round(mono() - t0, 2)
        res["connected"] = sum(s["connected"] for s in st)
        res["connect_failures"] = sum(s["connect_failures"] for s in st)
        res["agent_errors"] = [e for s in st for e in s["errors"]][:5]
        res["server_cpu_connect_s"] = rounded((proc_cpu_s(pid) or 0) - (cpu0 or 0), 2)
        res["agents_cpu_connect_s"] = rounded(procs_cpu_s(children.procs) - acpu0, 2)
        res["agents_gc_connect_s"] = rounded(sum(s.get("gc_s", 0) for s in st), 2)
        log(f"{res['connected']}/{n} agents connected and acked in {res['connect_s']}s "
            f"(connect failures {res['connect_failures']})")
        if res["connected"] < n:
            log("not every agent connected:", res["agent_errors"])
        time.sleep(2)
        res["rss_connected_mb"] = proc_status(pid).get("VmRSS")
        log(f"server RSS with {res['connected']} agents: {res['rss_connected_mb']} MB")

        win = 5 if quick else args.window

        # ---- at rest: paged + healthz only
        probe_cmd(probe_q, probe_res, ("start", {"full_list": False}))
        time.sleep(win)
        rest = phase_stats(probe_cmd(probe_q, probe_res, ("stop",)))
        res["rest"] = rest
        log("at rest:", json.dumps({k: rest[k]["p99_ms"] for k in ("healthz", "hosts_page", "jobs_page")}))

        # ---- at rest with full host lists
        prof = Profiler(args.profile, pid, f"full-list-{n}")
        probe_cmd(probe_q, probe_res, ("start", {"full_list": True}))
        time.sleep(win)
        rest_full = phase_stats(probe_cmd(probe_q, probe_res, ("stop",)))
        prof.stop()
        res["rest_full_list"] = rest_full
        log("at rest + full lists:", json.dumps({k: rest_full[k]["p99_ms"] for k in
                                                  ("healthz", "hosts_page", "jobs_page", "hosts_full")}))

        # ---- fleet push: one PUT /api/v1/fleet/policies/{name} reaching every host
        version = 1
        host_ids = [h for h, _ in creds]
        probe_cmd(probe_q, probe_res, ("start", {"full_list": True}))
        prof = Profiler(args.profile, pid, f"push-{n}")
        cpu0 = proc_cpu_s(pid)
        t_push = mono()
        body = {"includes": ["/etc", "/home"], "excludes": ["*.tmp"], "cron": "0 3 * * *",
                "retention": {"keep_daily": 7, "keep_weekly": 4}}
        if args.per_host_push:
            ok, errs = asyncio.run(fan_out(base, token, host_ids,
                                           lambda h: ("POST", f"/api/v1/hosts/{h}/source-groups",
                                                      {"name": "bench-fleet", **{k: v for k, v in body.items()
                                                                                 if k != "cron"}}),
                                           concurrency=args.push_concurrency))
        else:
            ok, errs = asyncio.run(fan_out(base, token, [None],
                                           lambda _: ("PUT", "/api/v1/fleet/policies/bench-fleet", body),
                                           concurrency=1))
            ok = len(host_ids) if ok else 0
        t_requests = mono() - t_push
        log(f"push: {ok} mutations accepted in {t_requests:.2f}s ({len(errs)} errors {errs[:3]})")
        acked = last = None
        push_timeout = 60 + n / 50
        while mono() - t_push < push_timeout:
            a = children.ask(("acks", version))
            acked = sum(x["count"] for x in a)
            lasts = [x["last"] for x in a if x["last"] is not None]
            last = max(lasts) if lasts else None
            if acked >= ok:
                break
            time.sleep(0.2)
        push = phase_stats(probe_cmd(probe_q, probe_res, ("stop",)))
        prof.stop()
        res["server_cpu_push_s"] = rounded((proc_cpu_s(pid) or 0) - (cpu0 or 0), 2)
        res["push"] = {"mutations_ok": ok, "mutation_errors": len(errs), "requests_s": round(t_requests, 2),
                       "agents_acked": acked, "acked_s": rounded(last - t_push, 2) if last else None,
                       "acked_after_last_request_s": rounded(last - t_push - t_requests, 2) if last else None,
                       "probes": push}
        t_srv = mono()
        srv_acked = 0
        while mono() - t_srv < 60:
            srv_acked = asyncio.run(server_ack_check(base, token, version))
            if srv_acked >= ok:
                break
            time.sleep(1)
        res["push"]["server_recorded_acks"] = srv_acked
        res["push"]["server_recorded_all_s"] = rounded(mono() - t_push, 2) if srv_acked >= ok else None
        log(f"push acked by {acked} agents {res['push']['acked_s']}s after the first request; "
            f"server recorded {srv_acked}; probes p99:",
            json.dumps({k: push[k]["p99_ms"] for k in ("healthz", "hosts_page", "jobs_page", "hosts_full")}))
        res["rss_after_push_mb"] = proc_status(pid).get("VmRSS")

        # ---- log ingest
        k = min(n, args.log_jobs)
        total = 50_000 if quick else args.log_lines
        per_job = max(1, total // k)
        children.ask(("logmode", per_job, 200, 4))
        probe_cmd(probe_q, probe_res, ("start", {"full_list": False}))
        prof = Profiler(args.profile, pid, f"ingest-{n}")
        cpu0 = proc_cpu_s(pid)
        acpu0 = procs_cpu_s(children.procs)
        log_hosts = host_ids[:k]
        ok_jobs, jerrs = asyncio.run(fan_out(base, token, log_hosts,
                                             lambda h: ("POST", f"/api/v1/hosts/{h}/jobs", {"kind": "init"}),
                                             concurrency=8))
        t_log = mono()
        ls = []
        while mono() - t_log < 120:
            ls = children.ask(("logstatus",))
            if sum(x["done"] for x in ls) >= ok_jobs:
                break
            time.sleep(0.2)
        ingest_probes = phase_stats(probe_cmd(probe_q, probe_res, ("stop",)))
        prof.stop()
        firsts = [x["first_send"] for x in ls if x["first_send"]]
        lasts = [x["last_ack"] for x in ls if x["last_ack"]]
        lines = sum(x["lines"] for x in ls)
        dur = (max(lasts) - min(firsts)) if firsts and lasts else None
        con = sqlite3.connect(f"file:{data_dir / 'server.db'}?mode=ro", uri=True)
        stored = con.execute("SELECT count(*) FROM job_logs").fetchone()[0]
        con.close()
        res["log_ingest"] = {"jobs": ok_jobs, "job_errors": len(jerrs), "lines_acked": lines,
                             "lines_in_db": stored, "seconds": rounded(dur, 2),
                             "lines_per_s": int(lines / dur) if dur else None,
                             "server_cpu_s": rounded((proc_cpu_s(pid) or 0) - (cpu0 or 0), 2),
                             "agents_cpu_s": rounded(procs_cpu_s(children.procs) - acpu0, 2),
                             "probes": ingest_probes}
        log(f"log ingest: {lines} lines from {ok_jobs} jobs in {res['log_ingest']['seconds']}s = "
            f"{res['log_ingest']['lines_per_s']} lines/s (rows in job_logs: {stored}); healthz p99 "
            f"{ingest_probes['healthz']['p99_ms']} ms")

        server_status = proc_status(pid)
        res["rss_end_mb"] = server_status.get("VmRSS")
        res["rss_peak_mb"] = server_status.get("VmHWM")

        final = children.ask(("status",))
        res["disconnects"] = sum(s["disconnects"] for s in final)
        res["still_connected"] = sum(s["connected"] for s in final)

        # ---- restart: the same data dir and port; every agent reconnects at once
        listen = base.split("//", 1)[1].split("/", 1)[0]
        # A crash (SIGKILL), then the new server; agents waiting in their reconnect backoff are
        # woken the moment it listens, so the storm is every agent at once and the time is the
        # server's, not the simulated backoff's.
        t_stop = mono()
        server.proc.kill()
        server.proc.wait(10)
        server.stop()
        server = Server(data_dir, max_agents=n + 200, listen=listen, log_name="server-restarted.log")
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
        while mono() - t_up < connect_timeout:
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
        res["restart"] = {"down_s": rounded(t_up - t_stop, 2), "hello_ok": sum(s["hello_ok"] for s in st),
                          "acked": sum(s["acked"] for s in st),
                          "storm_s": rounded(max(lasts) - t_up, 2) if done and lasts else None,
                          "last_hello_s": rounded(max(hello_lasts) - t_up, 2) if hello_lasts else None,
                          "hello_s_after_wake": hello_pcts,
                          "server_cpu_s": rounded((proc_cpu_s(pid) or 0) - (cpu0 or 0), 2),
                          "agents_cpu_s": rounded(procs_cpu_s(children.procs) - acpu0, 2),
                          "agents_gc_s": rounded(sum(s.get("gc_s", 0) for s in st) - agc0, 2),
                          "rss_mb": proc_status(pid).get("VmRSS")}
        log(f"restart: server down {res['restart']['down_s']}s; {res['restart']['hello_ok']} hellos, "
            f"{res['restart']['acked']} acks; all hello'd and acked {res['restart']['storm_s']}s after it listened "
            f"(last hello.ok {res['restart']['last_hello_s']}s; {hello_pcts}); CPU s server {res['restart']['server_cpu_s']}, "
            f"agents {res['restart']['agents_cpu_s']} (GC {res['restart']['agents_gc_s']})")
        res["loadavg_after"] = os.getloadavg()
    finally:
        if probe_q is not None:
            probe_q.put(("exit",))
            probe_proc.join(10)
            if probe_proc.is_alive():
                probe_proc.terminate()
        if children is not None:
            children.stop()
        server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work}")
    return res
