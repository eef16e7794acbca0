"""One fleet size of bench/replicas.py: PostgreSQL (a throwaway cluster, or --database),
the fleet seeded into it, R replicas of `rm-server serve --database URL --master-key-file F`
on their own ports, simulated agents spread over them (each knowing every replica's URL),
one probe process per replica; then the phases of fleet/phases.py, the kill of the leader
and the final lines check (fleet/failover.py)."""

from __future__ import annotations

import asyncio
import os
import time

from fleet.agents import start_swarms
from fleet.driver import Server, rest_setup
from fleet.failover import kill_leader, lines_check, setup_maintenance
from fleet.phases import Fleet, connect_storm, fleet_push, log_ingest
from fleet.probe import Probes
from fleet.seed import prepare_db, query
from fleet.sizes import size_log, size_work_dir, tear_down
from fleet.stats import mono, proc_status

# PostgreSQL's own durability defaults, over the test clusters' (tests/pgcluster.py turns
# fsync off): the replicas are measured on a database that keeps what it acknowledges.
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
MAINTENANCE_HOSTS = 3


def database_for(args, log) -> tuple[str, object | None]:
    """--database (an empty database), or a new throwaway cluster and a database in it."""
    if args.database:
        if query(args.database, "SELECT to_regclass('public.hosts') IS NOT NULL")[0][0] and \
                query(args.database, "SELECT count(*) FROM hosts")[0][0]:
            raise RuntimeError("--database must name an empty database: the bench seeds its own fleet")
        return args.database, None
    from tests.pgcluster import PgCluster

    settings = dict(DURABLE)
    for item in args.pg_setting:
        name, _, value = item.partition("=")
        settings[name] = value
    cluster = PgCluster(settings=settings).start()
    log(f"PostgreSQL cluster on port {cluster.port} with {settings}")
    try:
        return cluster.create_database("rm_bench"), cluster
    except BaseException:
        cluster.stop()
        raise


def run_replicas(n: int, args, ctx) -> dict:
    log = size_log(n)
    replicas = args.replicas
    res: dict = {"agents": n, "replicas": replicas, "loadavg_before": os.getloadavg()}
    work, data_dir = size_work_dir(n, "rm-replicas")
    servers: list[Server] = []
    children = probes = cluster = None
    try:
        url, cluster = database_for(args, log)
        res["postgresql"] = query(url, "SELECT version()")[0][0]
        res["pg_settings"] = dict(query(url, "SELECT name, setting FROM pg_settings WHERE name IN"
                                             " ('fsync', 'synchronous_commit', 'full_page_writes', 'shared_buffers',"
                                             " 'max_connections')"))
        t = mono()
        creds = prepare_db(data_dir, n, database=url)
        log(f"wrote {n} hosts + tokens + {2 * n} jobs into PostgreSQL in {mono() - t:.1f}s")
        key = work / "master.key"

        def replica(i: int) -> Server:
            return Server(work / f"r{i}", max_agents=n + 200, log_name=f"r{i}.log", database=url, master_key_file=key)

        # the first alone: it makes the master key and the bootstrap token the others then share
        servers.append(replica(0))
        bases = [servers[0].wait_ready()]
        token = asyncio.run(rest_setup(bases[0], servers[0].data_dir))
        servers += [replica(i) for i in range(1, replicas)]
        bases += [s.wait_ready() for s in servers[1:]]
        log(f"{replicas} replicas listening: {bases}")
        pids = [s.proc.pid for s in servers]
        res["rss_idle_mb"] = [proc_status(pid).get("VmRSS") for pid in pids]
        children = start_swarms(ctx, bases, creds, args.agent_procs, args.max_seconds, nice=args.agents_nice,
                                freeze_heap=args.agents_freeze_heap, spread_sources=args.agents_spread_sources)
        host_ids = [h for h, _ in creds]
        probes = Probes(ctx, bases, token, host_ids, args.max_seconds, getattr(args, "scrape_every", 0))
        fleet = Fleet(bases, pids, token, host_ids, children, probes, url, args, log)
        connect_storm(fleet, res)
        maint_hosts = host_ids[-MAINTENANCE_HOSTS:]
        res["maintenance_hosts"] = setup_maintenance(fleet, maint_hosts)
        time.sleep(2)
        res["rss_connected_mb"] = [proc_status(pid).get("VmRSS") for pid in pids]

        res["rest"] = fleet.window(5 if args.quick else args.window)
        fleet_push(fleet, res, bases[0], bases[-1])
        ingest = log_ingest(fleet, host_ids[:min(n - MAINTENANCE_HOSTS, args.log_jobs)],
                            50_000 if args.quick else args.log_lines, bases)
        job_ids = ingest.pop("job_ids")
        res["log_ingest"] = ingest
        res["rss_peak_mb"] = [proc_status(pid).get("VmHWM") for pid in pids]
        res["kill"], kill_jobs = kill_leader(fleet, servers, maint_hosts, args)
        res["lines"] = lines_check(fleet, job_ids + kill_jobs)
        final = children.ask(("status",))
        res["connected_end_per_server"] = [sum(x) for x in zip(*(s["per_url"] for s in final))]
        res["agent_errors_end"] = [e for s in final for e in s["errors"]][:5]
        res["loadavg_after"] = os.getloadavg()
    finally:
        tear_down(work, args.keep, log, probes, children, *servers, cluster)
    return res
