#!/usr/bin/env python3
"""Fleet-scale benchmark of rm-server with simulated, protocol-speaking agents.

For each fleet size N it:

1. makes a fresh temporary data dir and writes N hosts, their agent tokens (sha256 hex)
   and 2 finished historical jobs per host straight into SQLite (after the server's own
   migrations have built the schema) - enrolling 19k hosts over REST would only measure
   bcrypt-free token minting, not what this benchmark is about;
2. starts a real `rm-server serve` on 127.0.0.1 (random port) and bootstraps an admin;
3. starts simulated agents in several processes (aiohttp WebSocket clients on loopback
   only): each sends hello, acks every schedule.set, sends heartbeats, and streams job
   logs when told to;
4. measures, from a separate probe process: GET /healthz every 10 ms (event-loop lag as
   seen from outside: the handler also does one `SELECT 1` on the reader connection),
   GET /api/v1/hosts?limit=100, GET /api/v1/jobs?limit=100 and the full GET /api/v1/hosts,
   at rest and while a fleet-wide schedule change is in flight;
5. fleet push: one `PUT /api/v1/fleet/policies/bench-fleet` (a source group + schedule on
   every host; `--per-host-push` instead POSTs one source group per host, 16 in flight)
   and times from the request until every simulated agent has acked the new version, then checks the
   server recorded all acks (full host list: applied_schedule_version == schedule_version);
6. log ingest: creates `init` jobs on K hosts, the agents answer job.started then job.log
   batches (200 lines, 4 batches in flight per job) and wait for the acks; lines/s is the
   number of acked lines over the time from the first send to the last ack, cross-checked
   against `SELECT count(*) FROM job_logs`;
7. reads server RSS (VmRSS/VmHWM from /proc/PID/status) and stops everything.

Everything is bounded: every wait has a timeout, child processes get a lifetime after
which they exit by themselves, and the server is terminated at the end of each size.

    .venv/bin/python bench/server_scale.py --quick             # 200 agents, < 60 s
    .venv/bin/python bench/server_scale.py --sizes 1000,10000,19000

Results: a table on stdout and bench/results/server_scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing as mp
import os
import platform
import queue as queue_mod
import random
import resource
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from rm_core import protocol as p  # noqa: E402
from rm_core.ids import new_id  # noqa: E402
from rm_server.heap import fix_malloc_thresholds  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "server_scale.json"
ADMIN_USER, ADMIN_PASSWORD = "bench-admin", "bench-password-not-secret-0"
LOG_TEXT = "[0:{:02d}] {:5.2f}%  {} files 123.456 MiB, total 98765 files 4.567 GiB, 0 errors ETA 0:41"

TARGETS = {
    "rss_mb_19k": 600, "push_acked_s": 3.0, "paged_p99_ms": 100, "full_list_p99_ms": 250,
    "loop_lag_p99_ms": 50, "log_lines_per_s": 50_000, "restart_storm_s": 15,
}


# --------------------------------------------------------------------------- helpers

AGENTS_PER_SOURCE = 200  # simulated agents per loopback source address


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def mono() -> float:
    return time.monotonic()  # CLOCK_MONOTONIC: comparable across processes on Linux


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(q / 100 * (len(s) - 1)))))
    return s[k]


def summary_ms(values: list[float]) -> dict:
    return {"n": len(values), "p50_ms": _r(pct(values, 50)), "p99_ms": _r(pct(values, 99)),
            "max_ms": _r(max(values) if values else None)}


def _r(v: float | None, nd: int = 1) -> float | None:
    return None if v is None else round(v, nd)


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


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


# --------------------------------------------------------------------------- database

def prepare_db(data_dir: Path, n: int, jobs_per_host: int = 2) -> list[tuple[str, str]]:
    """Let the server's migrations build the schema, then write hosts, tokens and jobs."""
    import hashlib

    from rm_server.store.db import Database

    db_path = data_dir / "server.db"

    async def migrate() -> None:
        db = await Database.open(db_path)
        await db.close()

    asyncio.run(migrate())
    base = datetime.now(timezone.utc) - timedelta(days=2)
    created = base.isoformat(timespec="microseconds")
    hosts, tokens, jobs, creds = [], [], [], []
    ms0 = int(base.timestamp() * 1000)
    for i in range(n):
        hid = new_id(ms0 + i)  # distinct, sortable ids
        tok = "rma_" + secrets.token_urlsafe(32)
        creds.append((hid, tok))
        hosts.append((hid, f"bench-{i:05d}", "offline", "linux", "x86_64", "bench", created))
        tokens.append((hashlib.sha256(tok.encode()).hexdigest(), hid, created))
    for j in range(n * jobs_per_host):
        hid = creds[j % n][0]
        t = base + timedelta(seconds=j)
        ts = t.isoformat(timespec="microseconds")
        jobs.append((new_id(ms0 + 10_000_000 + j), hid, "backup", "succeeded", "schedule", ts, ts, ts, 0))
    con = sqlite3.connect(db_path)
    with con:
        con.executemany("INSERT INTO hosts (id, hostname, status, os, arch, agent_version, created_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)", hosts)
        con.executemany("INSERT INTO agent_tokens (token_hash, host_id, created_at) VALUES (?, ?, ?)", tokens)
        con.executemany("INSERT INTO jobs (id, host_id, kind, state, actor_kind, created_at, started_at,"
                        " finished_at, exit_code) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", jobs)
    con.close()
    return creds


# --------------------------------------------------------------------------- simulated agents

class _JobStream:
    __slots__ = ("upto", "event")

    def __init__(self) -> None:
        self.upto = 0
        self.event = asyncio.Event()


class Swarm:
    """Many simulated agents in one process."""

    def __init__(self, idx: int, base: str, creds: list[tuple[str, str]], cmd_q, res_q, lifetime: float,
                 freeze_heap: bool = False, spread_sources: bool = False):
        self.idx, self.base, self.creds = idx, base, creds
        self.freeze_heap, self.spread_sources = freeze_heap, spread_sources
        self.cmd_q, self.res_q, self.lifetime = cmd_q, res_q, lifetime
        self.conns: dict[str, aiohttp.ClientWebSocketResponse] = {}
        self.hello_ok: set[str] = set()
        self.hello_at: dict[str, float] = {}
        self.applied: dict[str, int] = {}
        self.ack_at: dict[str, float] = {}
        self.errors: list[str] = []
        self.connect_failures = 0
        self.disconnects = 0
        self.stopping = False
        self.wake = asyncio.Event()  # set by "wake": agents in a reconnect backoff retry now
        self.woken = 0  # wakes so far
        # log ingest
        self.log_lines_per_job = 0
        self.log_batch = 200
        self.log_window = 4
        self.jobs: dict[str, _JobStream] = {}
        self.jobs_started = 0
        self.jobs_done = 0
        self.lines_acked = 0
        self.first_send: float | None = None
        self.last_ack: float | None = None

    def _gc_timer(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_t0 = time.perf_counter()
        else:
            self.gc_s += time.perf_counter() - self._gc_t0

    async def run(self) -> None:
        self.gc_s = 0.0
        gc.callbacks.append(self._gc_timer)
        if self.freeze_heap:
            # Like the server (rm_server/heap.py): thousands of clients in one process make
            # every full GC pass walk all of their objects, a cost no real agent (one
            # connection per process) has.
            from rm_server.heap import keep_heap_frozen
            self._freezer = asyncio.create_task(keep_heap_frozen())
        timeout = aiohttp.ClientTimeout(total=None, connect=60, sock_connect=60)
        # Real agents come from their own addresses. From one address, Linux picks a loopback
        # connect's source port among the even ports first (~14k here): past that each
        # connect() scanned them all, 4.3 ms of kernel time instead of 0.1 ms (measured with
        # plain sockets: 19k connects 25 s vs 2 s spread over addresses), which made the 19k
        # connect and restart storms measure the kernel's port search.
        sources = [None]
        if self.spread_sources and self.base.startswith("http://127.0.0.1:"):
            sources = [(f"127.{self.idx + 1}.{k // 250}.{k % 250 + 1}", 0)
                       for k in range(max(1, len(self.creds) // AGENTS_PER_SOURCE))]
        self.sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=None,
                                                                              local_addr=src), timeout=timeout)
                         for src in sources]
        loop = asyncio.get_running_loop()
        deadline = mono() + self.lifetime
        sem = asyncio.Semaphore(64)
        agents = [asyncio.create_task(self.agent(hid, tok, sem, self.sessions[i % len(self.sessions)]))
                  for i, (hid, tok) in enumerate(self.creds)]
        hb = asyncio.create_task(self.heartbeats())
        try:
            while mono() < deadline:
                # no wait_for around the read: a timed-out read still takes the next command
                # in its thread, and that command is lost; _get_cmd gives None after 1 s
                cmd = await loop.run_in_executor(None, self._get_cmd)
                if cmd is None:
                    continue
                if cmd[0] == "stop":
                    break
                self.res_q.put((self.idx, self.handle(cmd)))
        finally:
            self.stopping = True
            hb.cancel()
            for t in agents:
                t.cancel()
            await asyncio.gather(*agents, hb, return_exceptions=True)
            for session in self.sessions:
                await session.close()

    def _get_cmd(self):
        try:
            return self.cmd_q.get(timeout=1)
        except queue_mod.Empty:
            return None

    def handle(self, cmd: tuple) -> dict:
        kind = cmd[0]
        if kind == "status":
            return {"connected": len(self.conns), "hello_ok": len(self.hello_ok), "acked": len(self.applied),
                    "gc_s": round(self.gc_s, 2),
                    "connect_failures": self.connect_failures, "disconnects": self.disconnects,
                    "errors": self.errors[-3:], "n_errors": len(self.errors)}
        if kind == "acks":
            v = cmd[1]
            times = [self.ack_at[h] for h, ver in self.applied.items() if ver >= v]
            return {"count": len(times), "last": max(times) if times else None,
                    "first": min(times) if times else None}
        if kind == "wake":
            self.woken += 1
            self.wake.set()
            self.wake = asyncio.Event()
            return {"ok": True}
        if kind == "since":  # hellos and acks after a moment (the reconnect storm after a restart)
            t0 = cmd[1]
            return {"hello_ok": sum(1 for t in self.hello_at.values() if t >= t0),
                    "acked": sum(1 for t in self.ack_at.values() if t >= t0),
                    "last": max([t for t in self.ack_at.values() if t >= t0] or [0]) or None,
                    "hello_last": max([t for t in self.hello_at.values() if t >= t0] or [0]) or None,
                    "gc_s": round(self.gc_s, 2),
                    "hello_times": sorted(t - t0 for t in self.hello_at.values() if t >= t0)
                    if len(cmd) > 2 and cmd[2] else [],
                    "connected": len(self.conns)}
        if kind == "logmode":
            self.log_lines_per_job, self.log_batch, self.log_window = cmd[1], cmd[2], cmd[3]
            return {"ok": True}
        if kind == "logstatus":
            return {"started": self.jobs_started, "done": self.jobs_done, "lines": self.lines_acked,
                    "first_send": self.first_send, "last_ack": self.last_ack}
        return {"error": f"unknown command {kind}"}

    async def agent(self, hid: str, tok: str, sem: asyncio.Semaphore, session: aiohttp.ClientSession) -> None:
        url = f"{self.base}/api/v1/agent/ws"
        headers = {"Authorization": f"Bearer {tok}"}
        backoff = 1.0
        while not self.stopping:
            woken = self.woken
            try:
                async with sem:
                    ws = await session.ws_connect(url, headers=headers, heartbeat=None, autoping=True,
                                                       compress=0, max_msg_size=0)
                    hello = p.Hello(protocol_version=1, agent_version="bench", hostname=f"bench-{hid[-6:]}",
                                    os="linux", arch="x86_64", restic_version="0.17.3",
                                    applied_schedule_version=self.applied.get(hid, 0), running_jobs=[],
                                    outbox_high_seq=0)
                    await ws.send_str(p.encode(p.message(hello)))
                self.conns[hid] = ws
                backoff = 1.0
                await self.read_loop(hid, ws)
                if not self.stopping:
                    self.disconnects += 1
                    self.errors.append(f"closed {ws.close_code}")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep trying, bounded by the process lifetime
                self.connect_failures += 1
                self.errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
            finally:
                ws_ = self.conns.pop(hid, None)
                if ws_ is not None:
                    await ws_.close()
            # A wake during this attempt (a connect refused just before the server listened)
            # means "retry now": waiting for the next wake left such agents in a backoff of
            # up to 15 s, which the storm time then measured.
            if not self.stopping and self.woken == woken:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 10)

    async def read_loop(self, hid: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            env = json.loads(msg.data)
            t, pl = env["type"], env.get("payload") or {}
            if t == "schedule.set":
                v = pl["version"]
                await ws.send_str(p.encode(p.message(p.ScheduleAck(version=v))))
                self.applied[hid] = v
                self.ack_at[hid] = mono()
            elif t == "hello.ok":
                self.hello_ok.add(hid)
                self.hello_at[hid] = mono()
            elif t == "ack":
                st = self.jobs.get(pl.get("job_id"))
                if st is not None:
                    st.upto = max(st.upto, pl["upto_seq"])
                    st.event.set()
            elif t == "command.run":
                self.on_command_run(ws, pl)
            elif t == "error":
                self.errors.append(f"server error {pl.get('code')}: {str(pl.get('message'))[:100]}")

    def on_command_run(self, ws: aiohttp.ClientWebSocketResponse, pl: dict) -> None:
        """A job the server started: stream its log when log ingest is on (subclasses run others)."""
        if self.log_lines_per_job:
            asyncio.create_task(self.stream_job(ws, pl["job_id"], pl["kind"]))

    async def heartbeats(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(1)
            tick += 1
            frame = None
            for i, (hid, ws) in enumerate(list(self.conns.items())):
                if i % 30 == tick % 30:
                    frame = frame or p.encode(p.message(p.Heartbeat()))
                    try:
                        await ws.send_str(frame)
                    except Exception:
                        pass

    async def stream_job(self, ws, job_id: str, kind: str) -> None:
        st = _JobStream()
        self.jobs[job_id] = st
        self.jobs_started += 1
        if self.first_send is None:
            self.first_send = mono()
        total, batch, window = self.log_lines_per_job, self.log_batch, self.log_window
        try:
            started = p.JobStarted(job_id=job_id, started_at=datetime.now(timezone.utc), kind=kind)
            await ws.send_str(p.encode(p.message(started)))
            seq = 1
            sent = 0
            while sent < total:
                n = min(batch, total - sent)
                ts = now_iso()
                lines = [{"seq": seq + k + 1, "ts": ts, "stream": "stdout",
                          "text": LOG_TEXT.format((sent + k) % 60, (sent + k) * 100 / total, sent + k)}
                         for k in range(n)]
                seq += n
                sent += n
                while seq - st.upto > window * batch:
                    st.event.clear()
                    await asyncio.wait_for(st.event.wait(), 60)
                await ws.send_str(json.dumps({"type": "job.log", "id": new_id(), "ref": None, "ts": ts,
                                              "payload": {"job_id": job_id, "lines": lines}}))
            while st.upto < seq:
                st.event.clear()
                await asyncio.wait_for(st.event.wait(), 60)
            self.lines_acked += total
            self.jobs_done += 1
            t = mono()
            self.last_ack = t if self.last_ack is None else max(self.last_ack, t)
        except Exception as exc:
            self.errors.append(f"log stream {job_id}: {type(exc).__name__} {exc}")


def swarm_main(idx, base, creds, cmd_q, res_q, lifetime, freeze_heap=False, spread_sources=False, *,
               swarm_cls: type[Swarm] = Swarm) -> None:
    """A child process's entry: one swarm (or a subclass, e.g. tui_scale's) until stopped."""
    raise_nofile()
    # The server's malloc setting (rm_server/heap.py): without it every socket read of these
    # thousands of clients is an mmap + munmap, CPU the simulated fleet takes from the server.
    fix_malloc_thresholds()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(swarm_cls(idx, base, creds, cmd_q, res_q, lifetime, freeze_heap, spread_sources).run())


# --------------------------------------------------------------------------- probe

class Probe:
    """Latency probes against the server from their own process (own core share, own loop)."""

    def __init__(self, base: str, token: str, host_ids: list[str], cmd_q, res_q, lifetime: float):
        self.base, self.token, self.host_ids = base, token, host_ids
        self.cmd_q, self.res_q, self.lifetime = cmd_q, res_q, lifetime

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        headers = {"Authorization": f"Bearer {self.token}"}
        self.session = aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=0),
                                             timeout=aiohttp.ClientTimeout(total=60))
        deadline = mono() + self.lifetime
        tasks: list[asyncio.Task] = []
        samples: dict[str, list[float]] = {}
        try:
            while mono() < deadline:
                try:
                    cmd = await asyncio.wait_for(loop.run_in_executor(None, self._get), 5)
                except asyncio.TimeoutError:
                    continue
                if cmd is None:
                    continue
                if cmd[0] == "start":
                    opts = cmd[1]
                    samples = {"healthz": [], "hosts_page": [], "jobs_page": [], "hosts_full": [], "errors": [],
                               "lag_before": await self.lag_buckets()}
                    tasks = [asyncio.create_task(self.healthz(samples)),
                             asyncio.create_task(self.paged(samples))]
                    if opts.get("full_list"):
                        tasks.append(asyncio.create_task(self.full(samples)))
                    self.res_q.put(("probe", {"ok": True}))
                elif cmd[0] == "stop":
                    for t in tasks:
                        t.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    tasks = []
                    samples["lag_after"] = await self.lag_buckets()
                    self.res_q.put(("probe", samples))
                elif cmd[0] == "exit":
                    break
        finally:
            for t in tasks:
                t.cancel()
            await self.session.close()

    def _get(self):
        try:
            return self.cmd_q.get(timeout=1)
        except queue_mod.Empty:
            return None

    async def _timed(self, samples, key: str, url: str) -> None:
        t0 = time.perf_counter()
        try:
            async with self.session.get(url) as r:
                await r.read()
                ok = r.status == 200
        except Exception as exc:
            samples["errors"].append(f"{key}: {type(exc).__name__}")
            return
        if ok:
            samples[key].append((time.perf_counter() - t0) * 1000)
        else:
            samples["errors"].append(f"{key}: HTTP {r.status}")

    async def lag_buckets(self) -> dict[str, float]:
        """The server's own loop-lag histogram (rm_loop_lag_seconds on /metrics), cumulative."""
        try:
            async with self.session.get(f"{self.base}/metrics") as r:
                text = await r.text()
        except Exception:
            return {}
        out = {}
        for line in text.splitlines():
            if line.startswith("rm_loop_lag_seconds_bucket"):
                le = line.split('le="', 1)[1].split('"', 1)[0]
                out[le] = float(line.rsplit(" ", 1)[1])
        return out

    async def healthz(self, samples) -> None:
        nxt = mono()
        while True:
            await self._timed(samples, "healthz", f"{self.base}/healthz")
            nxt += 0.010
            delay = nxt - mono()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                nxt = mono()

    async def paged(self, samples) -> None:
        i = 0
        while True:
            if i % 2 == 0:
                after = "" if i % 4 == 0 else f"&after={random.choice(self.host_ids)}"
                await self._timed(samples, "hosts_page", f"{self.base}/api/v1/hosts?limit=100{after}")
            else:
                await self._timed(samples, "jobs_page", f"{self.base}/api/v1/jobs?limit=100")
            i += 1
            await asyncio.sleep(0.025)

    async def full(self, samples) -> None:
        while True:
            await self._timed(samples, "hosts_full", f"{self.base}/api/v1/hosts")
            await asyncio.sleep(2.0)  # a TUI-like refresh; faster polling itself saturates the server


def probe_main(base, token, host_ids, cmd_q, res_q, lifetime) -> None:
    raise_nofile()
    fix_malloc_thresholds()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(Probe(base, token, host_ids, cmd_q, res_q, lifetime).run())


# --------------------------------------------------------------------------- driver

class Server:
    def __init__(self, data_dir: Path, max_agents: int, listen: str = "127.0.0.1:0", log_name: str = "server.log"):
        self.data_dir = data_dir
        self.log_path = data_dir.parent / log_name
        self.log = open(self.log_path, "wb")
        exe = ROOT / ".venv" / "bin" / "rm-server"
        cmd = [str(exe) if exe.exists() else "rm-server", "serve", "--data-dir", str(data_dir),
               "--listen", listen, "--max-agents", str(max_agents)]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=str(ROOT))
        self.base = None

    def wait_ready(self, timeout: float = 60) -> str:
        end = mono() + timeout
        while mono() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rm-server exited ({self.proc.returncode}): {self.log_path.read_text()[-2000:]}")
            for line in self.log_path.read_text(errors="replace").splitlines():
                if "rm-server listening on " in line:
                    self.base = line.split("rm-server listening on ", 1)[1].strip()
                    return self.base
            time.sleep(0.1)
        raise RuntimeError("rm-server did not become ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


class Children:
    def __init__(self, ctx, n_procs: int):
        self.ctx = ctx
        self.res_q = ctx.Queue()
        self.cmd_qs = [ctx.Queue() for _ in range(n_procs)]
        self.procs: list = []

    def ask(self, cmd: tuple, timeout: float = 30) -> list[dict]:
        for q in self.cmd_qs:
            q.put(cmd)
        out: dict[int, dict] = {}
        end = mono() + timeout
        while len(out) < len(self.cmd_qs) and mono() < end:
            try:
                idx, res = self.res_q.get(timeout=max(0.1, end - mono()))
            except queue_mod.Empty:
                break
            out[idx] = res
        if len(out) < len(self.cmd_qs):
            raise RuntimeError(f"agent processes did not answer {cmd[0]!r} in {timeout}s")
        return [out[i] for i in sorted(out)]

    def stop(self) -> None:
        for q in self.cmd_qs:
            q.put(("stop",))
        for pr in self.procs:
            pr.join(20)
            if pr.is_alive():
                pr.terminate()
                pr.join(5)


def probe_cmd(probe_q, probe_res, cmd: tuple, timeout: float = 60):
    probe_q.put(cmd)
    tag, res = probe_res.get(timeout=timeout)
    return res


class Profiler:
    """Optional py-spy sampling of the server during one phase (collapsed stacks, --profile DIR)."""

    def __init__(self, out_dir: str | None, pid: int, name: str):
        self.proc = None
        exe = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
        if out_dir and Path(exe).exists():
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            self.proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--rate", "200", "--format", "raw",
                                          "--nonblocking", "--threads", "-o", str(Path(out_dir) / f"{name}.txt")]
                                         # --gil: only the thread holding the GIL, i.e. Python CPU, not waits
                                         + (["--gil"] if os.environ.get("BENCH_PYSPY_GIL") else []),
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


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
    out = {k: summary_ms(samples.get(k, [])) for k in ("healthz", "hosts_page", "jobs_page", "hosts_full")}
    out["server_loop_lag"] = lag_stats(samples.get("lag_before") or {}, samples.get("lag_after") or {})
    out["errors"] = len(samples.get("errors", []))
    out["error_examples"] = sorted(set(samples.get("errors", [])))[:5]
    return out


async def rest_setup(base: str, data_dir: Path) -> str:
    boot = (data_dir / "bootstrap-token").read_text().strip()
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{base}/api/v1/auth/bootstrap",
                          json={"token": boot, "username": ADMIN_USER, "password": ADMIN_PASSWORD}) as r:
            if r.status >= 300:
                raise RuntimeError(f"bootstrap failed: {r.status} {await r.text()}")
        async with s.post(f"{base}/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD}) as r:
            if r.status >= 300:
                raise RuntimeError(f"login failed: {r.status} {await r.text()}")
            return (await r.json())["token"]


async def fan_out(base: str, token: str, items: list, make, concurrency: int = 16) -> tuple[int, list[str]]:
    """Run (method, path, body) requests made by make(item) with bounded concurrency."""
    errors: list[str] = []
    ok = 0
    it = iter(items)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=concurrency),
                                     timeout=aiohttp.ClientTimeout(total=120)) as s:
        async def worker():
            nonlocal ok
            for item in it:
                method, path, body = make(item)
                try:
                    async with s.request(method, f"{base}{path}", json=body) as r:
                        await r.read()
                        if r.status < 300:
                            ok += 1
                        else:
                            errors.append(f"{r.status} {path}: {(await r.text())[:160]}")
                except Exception as exc:
                    errors.append(type(exc).__name__)
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok, errors


async def server_ack_check(base: str, token: str, version: int) -> int:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"},
                                     timeout=aiohttp.ClientTimeout(total=120)) as s:
        async with s.get(f"{base}/api/v1/hosts") as r:
            hosts = (await r.json())["hosts"]
    return sum(1 for h in hosts if h["applied_schedule_version"] >= version)


def run_size(n: int, args, ctx) -> dict:
    log = lambda *a: print(f"[{n:>6}] " + " ".join(str(x) for x in a), file=sys.stderr, flush=True)  # noqa: E731
    res: dict = {"agents": n, "loadavg_before": os.getloadavg()}
    work = Path(tempfile.mkdtemp(prefix=f"rm-bench-{n}-"))
    data_dir = work / "data"
    data_dir.mkdir(mode=0o700)
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
        n_procs = max(1, min(args.agent_procs, (n + 499) // 500))
        children = Children(ctx, n_procs)
        lifetime = args.max_seconds
        for i in range(n_procs):
            part = creds[i::n_procs]
            pr = ctx.Process(target=swarm_main, args=(i, base, part, children.cmd_qs[i], children.res_q, lifetime,
                                                      args.agents_freeze_heap, args.agents_spread_sources),
                             daemon=True)
            pr.start()
            children.procs.append(pr)
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
        res["server_cpu_connect_s"] = _r((proc_cpu_s(pid) or 0) - (cpu0 or 0), 2)
        res["agents_cpu_connect_s"] = _r(procs_cpu_s(children.procs) - acpu0, 2)
        res["agents_gc_connect_s"] = _r(sum(s.get("gc_s", 0) for s in st), 2)
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
        res["server_cpu_push_s"] = _r((proc_cpu_s(pid) or 0) - (cpu0 or 0), 2)
        res["push"] = {"mutations_ok": ok, "mutation_errors": len(errs), "requests_s": round(t_requests, 2),
                       "agents_acked": acked, "acked_s": _r(last - t_push, 2) if last else None,
                       "acked_after_last_request_s": _r(last - t_push - t_requests, 2) if last else None,
                       "probes": push}
        t_srv = mono()
        srv_acked = 0
        while mono() - t_srv < 60:
            srv_acked = asyncio.run(server_ack_check(base, token, version))
            if srv_acked >= ok:
                break
            time.sleep(1)
        res["push"]["server_recorded_acks"] = srv_acked
        res["push"]["server_recorded_all_s"] = _r(mono() - t_push, 2) if srv_acked >= ok else None
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
                             "lines_in_db": stored, "seconds": _r(dur, 2),
                             "lines_per_s": int(lines / dur) if dur else None,
                             "server_cpu_s": _r((proc_cpu_s(pid) or 0) - (cpu0 or 0), 2),
                             "agents_cpu_s": _r(procs_cpu_s(children.procs) - acpu0, 2),
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
        hello_pcts = {f"p{q}": _r(pct(hello_times, q), 2) for q in (50, 90, 99)}
        done = sum(s["acked"] for s in st) >= n and sum(s["hello_ok"] for s in st) >= n
        res["restart"] = {"down_s": _r(t_up - t_stop, 2), "hello_ok": sum(s["hello_ok"] for s in st),
                          "acked": sum(s["acked"] for s in st),
                          "storm_s": _r(max(lasts) - t_up, 2) if done and lasts else None,
                          "last_hello_s": _r(max(hello_lasts) - t_up, 2) if hello_lasts else None,
                          "hello_s_after_wake": hello_pcts,
                          "server_cpu_s": _r((proc_cpu_s(pid) or 0) - (cpu0 or 0), 2),
                          "agents_cpu_s": _r(procs_cpu_s(children.procs) - acpu0, 2),
                          "agents_gc_s": _r(sum(s.get("gc_s", 0) for s in st) - agc0, 2),
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


def verdicts(r: dict) -> dict:
    """Pass/fail against the targets of issue 5 (RSS target applies to 19k agents)."""
    v = {}
    push = r.get("push", {})
    v["push_acked_le_3s"] = push.get("acked_s") is not None and push["acked_s"] <= TARGETS["push_acked_s"]
    paged = [r.get(ph, {}).get(k, {}).get("p99_ms") for ph in ("rest",) for k in ("hosts_page", "jobs_page")]
    paged += [push.get("probes", {}).get(k, {}).get("p99_ms") for k in ("hosts_page", "jobs_page")]
    v["paged_p99_le_100ms"] = all(x is not None and x <= TARGETS["paged_p99_ms"] for x in paged)
    full = r.get("rest_full_list", {}).get("hosts_full", {}).get("p99_ms")
    v["full_list_p99_le_250ms"] = full is not None and full <= TARGETS["full_list_p99_ms"]
    lag = r.get("rest", {}).get("healthz", {}).get("p99_ms")
    v["loop_lag_p99_le_50ms_at_rest"] = lag is not None and lag <= TARGETS["loop_lag_p99_ms"]
    lag_push = push.get("probes", {}).get("healthz", {}).get("p99_ms")
    v["loop_lag_p99_le_50ms_during_push"] = lag_push is not None and lag_push <= TARGETS["loop_lag_p99_ms"]
    lps = r.get("log_ingest", {}).get("lines_per_s")
    v["log_ge_50k_lines_s"] = lps is not None and lps >= TARGETS["log_lines_per_s"]
    storm = r.get("restart", {}).get("storm_s")
    v["restart_storm_le_15s"] = storm is not None and storm <= TARGETS["restart_storm_s"]
    rss = r.get("rss_peak_mb")
    v["rss_le_600mb"] = rss is not None and rss <= TARGETS["rss_mb_19k"]
    return v


def table(results: list[dict]) -> str:
    def g(r, *path):
        for k in path:
            r = r.get(k, {}) if isinstance(r, dict) else {}
        return "-" if r in ({}, None) else r

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
    w0 = max(len(a) for a, _ in rows) + 2
    out = ["metric".ljust(w0) + "".join(f"{r['agents']:>16}" for r in results)]
    for name, fn in rows:
        cells = []
        for r in results:
            try:
                cells.append(f"{fn(r)!s:>16}")
            except Exception:
                cells.append(f"{'-':>16}")
        out.append(name.ljust(w0) + "".join(cells))
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000,19000", help="comma-separated fleet sizes")
    ap.add_argument("--quick", action="store_true", help="200 agents, short windows (< 60 s)")
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
    ap.add_argument("--window", type=float, default=10, help="seconds per at-rest probe window")
    ap.add_argument("--push-concurrency", type=int, default=16, help="mutation requests in flight during the push")
    ap.add_argument("--per-host-push", action="store_true", help="push with one source-group POST per host instead of the fleet endpoint")
    ap.add_argument("--log-jobs", type=int, default=64, help="jobs streaming logs at once")
    ap.add_argument("--log-lines", type=int, default=200_000, help="log lines in total for the ingest test")
    ap.add_argument("--max-seconds", type=float, default=900, help="child processes exit after this long")
    ap.add_argument("--profile", metavar="DIR", help="sample the server with py-spy during push and ingest")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dirs")
    ap.add_argument("--out", default=None, help=f"JSON file (default {RESULTS.relative_to(ROOT)}; "
                    "--quick writes server_scale.quick.json next to it)")
    args = ap.parse_args()
    limit = raise_nofile()
    sizes = [200] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
    runnable = []
    for n in sizes:
        # server: one fd per agent + sqlite, listen socket, probes; agents split over processes
        if n + 300 > limit:
            fitted = limit - 300
            print(f"open-file limit {limit}: {n} agents do not fit in one server process; running {fitted}",
                  file=sys.stderr)
            n = fitted
        runnable.append(n)
    ctx = mp.get_context("spawn")
    started = time.time()
    results = []
    for n in runnable:
        try:
            results.append(run_size(n, args, ctx))
        except Exception as exc:
            print(f"[{n:>6}] FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
            results.append({"agents": n, "failed": f"{type(exc).__name__}: {exc}"})
        results[-1]["verdicts"] = verdicts(results[-1])
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
               "nofile_limit": limit, "aiohttp": aiohttp.__version__,
               "cpu_model": next((ln.split(":", 1)[1].strip() for ln in
                                  Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")), "?"),
               "mem_total_mb": int(next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
                                        if ln.startswith("MemTotal"))) // 1024}
    doc = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "duration_s": round(time.time() - started),
           "machine": machine, "targets": TARGETS, "args": vars(args), "results": results}
    out = Path(args.out) if args.out else (RESULTS.with_name("server_scale.quick.json") if args.quick else RESULTS)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))
    print(table(results))
    print(f"\nresults written to {out}")
    return 0 if all("failed" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
