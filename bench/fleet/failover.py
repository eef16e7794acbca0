"""bench/replicas.py's kill phase and its final check.

The replica killed (SIGKILL) is the leader, the worst case: its agents must move and its
fleet-wide duties must pass to another replica at once. While it dies, jobs on its agents
are streaming logs. Measured from outside, every 0.5 s, until all of it happened:

* its agents online elsewhere: in a survivor's host list (GET /api/v1/hosts), each of them
  `online` with a last_seen after the kill (the dead replica cannot write one), and the
  agents' own view (hello.ok from another replica);
* its duties resumed: the leader's advisory lock held by a survivor (pg_locks), the offline
  sweeper (a few of its agents are "pinned": they never come back, as agents that knew
  only that replica; their hosts must turn `offline`), and the maintenance ticker (a
  `check` job due every minute on a few hosts: the first one created after the kill, in
  ticks of the server's maintenance interval; never two for one host and minute);
* the interrupted log streams finish through other replicas (the agents' outbox resend).

`lines_check` then compares, job by job, the lines every agent streamed with the rows in
job_logs, and each job's end state."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from datetime import datetime, timezone

import aiohttp

from fleet.driver import Server, fan_out
from fleet.phases import Fleet, start_log_jobs
from fleet.seed import query
from fleet.stats import mono, phase_stats, rounded
from rm_server.config import ServerConfig
from rm_server.store.cluster import LEADER_LOCK

MAINTENANCE_TICK = next(f.default for f in dataclasses.fields(ServerConfig) if f.name == "maintenance_interval")
SWEEP_TICK = next(f.default for f in dataclasses.fields(ServerConfig) if f.name == "sweep_interval")
MAINTENANCE = {"check": {"enabled": True, "cron": "* * * * *"}}


def leader_pid(database: str) -> int | None:
    """The OS pid of the replica holding the leader's advisory lock (its lock session is named
    `rm-server PID cluster REPLICA`, store/postgres.py), or None while nobody leads."""
    rows = query(database, "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                           " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
                           " AND l.classid::bigint = ? AND l.objid::bigint = ?",
                 (LEADER_LOCK >> 32, LEADER_LOCK & 0xFFFFFFFF))
    for (name,) in rows:
        parts = (name or "").split()
        if len(parts) > 1 and parts[1].isdigit():
            return int(parts[1])
    return None


def setup_maintenance(fleet: Fleet, hosts: list[str]) -> int:
    """A repository and a `check` due every minute on `hosts`: the maintenance ticker's work,
    seen as jobs. Their agents run none of it (their hosts never stream)."""
    ok1, e1 = asyncio.run(fan_out(fleet.bases, fleet.token, hosts, lambda h: (
        "PUT", f"/api/v1/hosts/{h}/repo", {"url": f"/srv/restic/{h}", "password": "bench repository"})))
    ok2, e2 = asyncio.run(fan_out(fleet.bases, fleet.token, hosts, lambda h: (
        "PUT", f"/api/v1/hosts/{h}/maintenance", MAINTENANCE)))
    if e1 or e2:
        raise RuntimeError(f"maintenance set-up failed: {(e1 + e2)[:3]}")
    return min(ok1, ok2)


def maintenance_jobs(database: str) -> list[tuple[str, str]]:
    return query(database, "SELECT host_id, created_at FROM jobs WHERE kind = 'check' AND actor_kind = 'system'"
                           " ORDER BY created_at")


def when(text: str | None) -> datetime:
    return datetime.fromisoformat(text) if text else datetime.min.replace(tzinfo=timezone.utc)


async def host_list(base: str, token: str) -> dict[str, tuple[str, datetime]]:
    """A replica's full host list: status and last_seen by host id."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"},
                                     timeout=aiohttp.ClientTimeout(total=30)) as s:
        async with s.get(f"{base}/api/v1/hosts") as r:
            return {h["id"]: (h["status"], when(h["last_seen"])) for h in (await r.json())["hosts"]}


def kill_leader(fleet: Fleet, servers: list[Server], maint_hosts: list[str], args) -> tuple[dict, list[str]]:
    """The kill phase (module doc). Returns its figures and the ids of the jobs it streamed."""
    log, children = fleet.log, fleet.children
    pids = [s.proc.pid for s in servers]
    t0 = mono()
    while not maintenance_jobs(fleet.database) and mono() - t0 < MAINTENANCE_TICK + 30:
        time.sleep(1)  # the leader ticked at least once: what resumes after the kill is seen to stop
    leader = None
    t0 = mono()
    while mono() - t0 < 2 * SWEEP_TICK + 10 and leader not in pids:
        leader = leader_pid(fleet.database)
        if leader not in pids:
            time.sleep(0.5)
    if leader not in pids:
        raise RuntimeError(f"no replica holds the leader's lock (holder pid {leader}, replicas {pids})")
    v = pids.index(leader)
    survivors = [b for i, b in enumerate(fleet.bases) if i != v]
    per_proc = -(-args.pinned // len(children.procs))
    held = children.ask(("victim", v, per_proc))
    victims = [h for x in held for h in x["held"]]
    pinned = {h for x in held for h in x["pinned"]}
    movers = [h for h in victims if h not in pinned]
    log_hosts = [h for h in movers if h not in maint_hosts][:args.kill_log_jobs]
    res: dict = {"victim": v, "victim_was_leader": True, "victim_agents": len(victims), "pinned": len(pinned)}
    before = maintenance_jobs(fleet.database)
    res["maintenance_jobs_before"] = len(before)

    # The kill at a random moment of the survivors' sweep ticks: the bench's own pace (the
    # maintenance wait above ends on the leader's tick) must not pick a lucky one.
    res["random_delay_s"] = round(random.uniform(0, SWEEP_TICK), 2)
    time.sleep(res["random_delay_s"])
    # log streams on the victim's agents, killed a quarter of the way through
    ok_jobs, errs, job_ids = start_log_jobs(fleet, log_hosts, args.kill_log_lines, survivors)
    res.update(log_jobs=ok_jobs, log_job_errors=len(errs))
    while mono() - t0 < 120:
        acked = sum(x["lines"] for x in children.ask(("logstatus",)))
        if acked >= args.kill_log_lines // 4:
            break
        time.sleep(0.05)
    res["lines_acked_before_kill"] = acked
    fleet.probes.start()
    t_kill, wall_kill = mono(), datetime.now(timezone.utc)
    servers[v].proc.kill()
    servers[v].proc.wait(10)
    log(f"killed replica r{v} (the leader, pid {leader}) holding {len(victims)} agents ({len(pinned)} pinned), "
        f"{acked} of {args.kill_log_lines} lines of {ok_jobs} jobs acked")

    got: dict[str, float | None] = dict.fromkeys(("hosts", "agents", "pinned_offline", "leader", "maintenance",
                                                  "streams"))
    listed = i = 0
    deadline = t_kill + max(args.failover_timeout, 2 * MAINTENANCE_TICK + 20)
    while mono() < deadline and any(x is None for x in got.values()):
        now = mono() - t_kill
        if got["leader"] is None and leader_pid(fleet.database) in [p for p in pids if p != leader]:
            got["leader"] = now
        st = children.ask(("since", t_kill))
        if got["agents"] is None and sum(x["victims_back"] for x in st) >= len(movers):
            got["agents"] = max(x["victims_last"] or t_kill for x in st) - t_kill
        if got["hosts"] is None or got["pinned_offline"] is None:
            hosts = asyncio.run(host_list(survivors[i % len(survivors)], fleet.token))
            i += 1
            listed = sum(1 for h in movers if hosts[h][0] == "online" and hosts[h][1] > wall_kill)
            if got["hosts"] is None and listed >= len(movers):
                got["hosts"] = mono() - t_kill
            if got["pinned_offline"] is None and all(hosts[h][0] == "offline" for h in pinned):
                got["pinned_offline"] = mono() - t_kill
        if got["maintenance"] is None:
            after = [when(c) for _, c in maintenance_jobs(fleet.database) if when(c) > wall_kill]
            if after:
                got["maintenance"] = (min(after) - wall_kill).total_seconds()
        if got["streams"] is None and sum(x["done"] for x in children.ask(("logstatus",))) >= ok_jobs:
            got["streams"] = mono() - t_kill
        time.sleep(0.5)
    probes = fleet.probes.stop()
    res["probes"] = [None if i == v else phase_stats(s) for i, s in enumerate(probes)]
    res.update({f"{k}_s": rounded(x, 2) for k, x in got.items()})
    res["victim_agents_listed_back"] = listed
    res["maintenance_tick_s"] = MAINTENANCE_TICK
    res["maintenance_ticks"] = rounded(got["maintenance"] / MAINTENANCE_TICK, 2) if got["maintenance"] else None
    res["sweep_tick_s"] = SWEEP_TICK
    last_before = when(before[-1][1]) if before else None
    res["maintenance_last_before_kill_s"] = rounded((last_before - wall_kill).total_seconds(), 1) \
        if last_before else None
    # ticks from the dead leader's last maintenance job to the new leader's first
    res["maintenance_gap_ticks"] = rounded((got["maintenance"] - (last_before - wall_kill).total_seconds())
                                           / MAINTENANCE_TICK, 2) if last_before and got["maintenance"] else None
    res["maintenance_duplicates"] = query(
        fleet.database, "SELECT count(*) FROM (SELECT host_id, substr(created_at, 1, 16) AS minute FROM jobs"
                        " WHERE kind = 'check' AND actor_kind = 'system' GROUP BY host_id, minute"
                        " HAVING count(*) > 1) d")[0][0]
    log(f"after the kill: agents online elsewhere in the host list {res['hosts_s']}s (agents' view "
        f"{res['agents_s']}s); pinned hosts offline {res['pinned_offline_s']}s; leader's lock taken "
        f"{res['leader_s']}s; first maintenance job {res['maintenance_s']}s ({res['maintenance_ticks']} ticks); "
        f"streams done {res['streams_s']}s")
    return res, job_ids


def lines_check(fleet: Fleet, job_ids: list[str]) -> dict:
    """Every job the bench made that streamed: its lines all in job_logs, its state succeeded."""
    streamed: dict[str, list] = {}
    for report in fleet.children.ask(("jobs",)):
        streamed.update(report)
    marks = ",".join("?" * len(job_ids))
    stored = dict(query(fleet.database, f"SELECT job_id, count(*) FROM job_logs WHERE job_id IN ({marks})"
                                        " GROUP BY job_id", job_ids)) if job_ids else {}
    states = dict(query(fleet.database, f"SELECT id, state FROM jobs WHERE id IN ({marks})", job_ids)) if job_ids else {}
    expected = {j: streamed[j][1] if j in streamed else None for j in job_ids}
    lost = sum(max(0, (n or 0) - stored.get(j, 0)) for j, n in expected.items())
    incomplete = sorted(j for j, n in expected.items() if n is None or stored.get(j, 0) != n)
    by_state: dict[str, int] = {}
    for j in job_ids:
        by_state[states.get(j, "missing")] = by_state.get(states.get(j, "missing"), 0) + 1
    out = {"jobs": len(job_ids), "never_streamed": sum(1 for n in expected.values() if n is None),
           "lines_expected": sum(n or 0 for n in expected.values()), "lines_stored": sum(stored.values()),
           "lines_lost": lost, "jobs_incomplete": len(incomplete), "incomplete_examples": incomplete[:5],
           "states": by_state}
    fleet.log(f"final check: {out['lines_stored']} of {out['lines_expected']} lines of {len(job_ids)} jobs stored "
              f"(lost {lost}; incomplete jobs {len(incomplete)}); states {by_state}")
    return out
