"""Simulated agents: many protocol-speaking agent WebSocket clients in one process (a
`Swarm`), driven by commands on a queue from the bench (`fleet.driver.Children`). Each
sends hello, acks every schedule.set, sends heartbeats and streams job logs when told to
(fleet.outbox). Given several server URLs (replicas), agent i starts at URL i mod their
number and, like the real agent (rm_agent/connection.py), moves on to the next URL after
every failed attempt or dropped connection.

The connections are fleet.wsclient's minimal WebSocket client, not aiohttp's: the
simulation shares the box with the server it measures, and aiohttp's client took as much
CPU as the server (docs/benchmarks.md). Frames are handled in the connection's
data_received; the agent's coroutine only connects, waits for the close and reconnects."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import json
import os
import queue as queue_mod
import random
import time
from datetime import datetime, timezone

from fleet.driver import Children, child_setup
from fleet.outbox import JobStreams
from fleet.stats import mono
from fleet.wsclient import WSClient, upgrade_request
from rm_core.ids import new_id

AGENTS_PER_SOURCE = 200  # simulated agents per loopback source address


AGENT_WS_PATH = "/api/v1/agent/ws"  # rm_agent/connection.py ws_url(), docs/protocol.md
CONNECT_TIMEOUT = 60  # s, TCP connect + upgrade (what the aiohttp client was given)


def envelope(type_: str, payload_json: str) -> str:
    """The frame rm_core.protocol.encode(message(payload)) makes, with the payload already
    JSON: a pydantic envelope per ack was ~17 us of the simulation's CPU per frame."""
    ts = datetime.now(timezone.utc).isoformat(timespec="microseconds")[:-6] + "Z"
    return f'{{"type":"{type_}","id":"{new_id()}","ref":null,"ts":"{ts}","payload":{payload_json}}}'


class Swarm:
    """Many simulated agents in one process."""

    def __init__(self, idx: int, base: str | list[str], creds: list[tuple[str, str]], cmd_q, res_q, lifetime: float,
                 freeze_heap: bool = False, spread_sources: bool = False):
        self.idx, self.creds = idx, creds
        self.bases = [base] if isinstance(base, str) else list(base)
        self.freeze_heap, self.spread_sources = freeze_heap, spread_sources
        self.cmd_q, self.res_q, self.lifetime = cmd_q, res_q, lifetime
        self.conns: dict[str, WSClient] = {}
        self.at: dict[str, int] = {}  # host -> index of the URL (replica) its connection is to
        self.ready: dict[str, WSClient] = {}  # connections that got hello.ok: job events go there
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
        # a replica about to be killed: the agents it holds, and those of them that will not
        # come back anywhere (their hosts must be marked offline by the leader's sweep)
        self.victims: set[str] = set()
        self.victim_at = -1
        self.pinned: set[str] = set()
        self.streams = JobStreams(self._send_job_frame, self.errors)

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
            # and between two freezes a storm makes ~1,500 connections' objects: with the
            # default 700-allocation young generation that was dozens of collections each
            # walking all of them (0.3 s of the 5k storm's 1.3 CPU-s)
            gc.set_threshold(20_000, 10, 10)
        # Real agents come from their own addresses. From one address, Linux picks a loopback
        # connect's source port among the even ports first (~14k here): past that each
        # connect() scanned them all, 4.3 ms of kernel time instead of 0.1 ms (measured with
        # plain sockets: 19k connects 25 s vs 2 s spread over addresses), which made the 19k
        # connect and restart storms measure the kernel's port search.
        sources: list[tuple[str, int] | None] = [None]
        if self.spread_sources and all(b.startswith("http://127.0.0.1:") for b in self.bases):
            sources = [(f"127.{self.idx + 1}.{k // 250}.{k % 250 + 1}", 0)
                       for k in range(max(1, len(self.creds) // AGENTS_PER_SOURCE))]
        self.targets = []  # (host:port, host, port) per URL
        for base in self.bases:
            if not base.startswith("http://"):
                raise ValueError(f"simulated agents speak plain ws:// only, not {base}")
            hostport = base[len("http://"):].split("/", 1)[0]
            host, _, port = hostport.rpartition(":")
            self.targets.append((hostport, host.strip("[]"), int(port)))
        loop = asyncio.get_running_loop()
        deadline = mono() + self.lifetime
        sem = asyncio.Semaphore(64)
        agents = [asyncio.create_task(self.agent(hid, tok, sem, sources[i % len(sources)], i % len(self.targets)))
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

    def _get_cmd(self):
        try:
            return self.cmd_q.get(timeout=1)
        except queue_mod.Empty:
            return None

    def handle(self, cmd: tuple) -> dict:
        kind = cmd[0]
        if kind == "status":
            per_url = collections.Counter(self.at.values())
            return {"connected": len(self.conns), "hello_ok": len(self.hello_ok), "acked": len(self.applied),
                    "per_url": [per_url.get(i, 0) for i in range(len(self.bases))],
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
                    "connected": len(self.conns), **self.victims_since(t0)}
        if kind == "victim":  # ("victim", url index, how many of its agents never come back)
            self.victim_at = cmd[1]
            held = sorted(h for h, i in self.at.items() if i == cmd[1])
            self.victims = set(held)
            self.pinned = set(held[:cmd[2]])
            return {"held": held, "pinned": sorted(self.pinned)}
        if kind == "logmode":  # (lines per job, batch, window[, hosts]): a new ingest phase
            st = self.streams
            st.lines_per_job, st.batch, st.window = cmd[1], cmd[2], cmd[3]
            st.hosts = set(cmd[4]) if len(cmd) > 4 and cmd[4] is not None else None
            st.new_phase()
            return {"ok": True}
        if kind == "logstatus":
            return self.streams.status()
        if kind == "jobs":
            return self.streams.report()
        return {"error": f"unknown command {kind}"}

    def victims_since(self, t0: float) -> dict:
        """The victim's agents (less the pinned) that said hello to another replica since t0."""
        back = [self.hello_at[h] for h in self.victims - self.pinned
                if self.hello_at.get(h, 0) >= t0 and self.at.get(h, self.victim_at) != self.victim_at]
        return {"victims_back": len(back), "victims_last": max(back, default=None)}

    def hello_frame(self, hid: str) -> str:
        """hello with the fields the swarm always sent (rm_core.protocol.Hello)."""
        return envelope("hello", json.dumps(
            {"protocol_version": 1, "agent_version": "bench", "hostname": f"bench-{hid[-6:]}", "os": "linux",
             "arch": "x86_64", "restic_version": "0.17.3", "applied_schedule_version": self.applied.get(hid, 0),
             "running_jobs": self.streams.running(hid), "outbox_high_seq": 0, "features": []},
            separators=(",", ":")))

    def _send_job_frame(self, hid: str, frame: str) -> bool:
        ws = self.ready.get(hid)
        if ws is None:
            return False
        try:
            ws.send_text(frame)
        except ConnectionResetError:  # dropping: the frame stays pending, resent after the next hello.ok
            return False
        return True

    async def agent(self, hid: str, tok: str, sem: asyncio.Semaphore, local_addr: tuple[str, int] | None,
                    url: int = 0) -> None:
        loop = asyncio.get_running_loop()
        backoff = 1.0
        while not self.stopping:
            woken = self.woken
            ws = None
            hostport, host, port = self.targets[url]
            try:
                async with sem:
                    request, accept = upgrade_request(hostport, AGENT_WS_PATH, tok)
                    ws = WSClient(loop, request, accept, self.on_text, hid)
                    async with asyncio.timeout(CONNECT_TIMEOUT):
                        await loop.create_connection(lambda: ws, host, port, local_addr=local_addr)
                        await ws.ready  # a 401 or 503 instead of the 101 raises HandshakeError
                    ws.send_text(self.hello_frame(hid))
                self.conns[hid] = ws
                self.at[hid] = url
                backoff = 1.0
                await ws.closed
                if not self.stopping:
                    self.disconnects += 1
                    self.errors.append(f"closed {ws.close_code}")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep trying, bounded by the process lifetime
                self.connect_failures += 1
                self.errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
            finally:
                self.conns.pop(hid, None)
                self.at.pop(hid, None)
                if self.ready.get(hid) is ws:
                    del self.ready[hid]
                if ws is not None:
                    await ws.close()
            if hid in self.pinned:
                return  # an agent that knew only the killed replica: away until someone acts
            url = (url + 1) % len(self.targets)  # the next replica, as rm_agent/connection.py does
            # A wake during this attempt (a connect refused just before the server listened)
            # means "retry now": waiting for the next wake left such agents in a backoff of
            # up to 15 s, which the storm time then measured.
            if not self.stopping and self.woken == woken:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 10)

    def on_text(self, ws: WSClient, data: bytes) -> None:
        """One text frame from the server (called from the connection's data_received)."""
        hid = ws.tag
        try:
            env = json.loads(data)
            t, pl = env["type"], env.get("payload") or {}
            if t == "schedule.set":
                v = pl["version"]
                ws.send_text(envelope("schedule.ack", f'{{"version":{int(v)}}}'))
                self.applied[hid] = v
                self.ack_at[hid] = mono()
            elif t == "hello.ok":
                self.hello_ok.add(hid)
                self.hello_at[hid] = mono()
                self.ready[hid] = ws
                self.streams.resend(hid)  # the outbox: what the last connection left unacked
            elif t == "ack":
                self.streams.acked(pl.get("job_id"), pl["upto_seq"])
            elif t == "command.run":
                self.on_command_run(ws, pl)
            elif t == "error":
                self.errors.append(f"server error {pl.get('code')}: {str(pl.get('message'))[:100]}")
        except Exception as exc:  # like an exception in a read loop: this connection ends
            self.errors.append(f"{hid} frame: {type(exc).__name__}: {str(exc)[:120]}")
            ws.abort()

    def on_command_run(self, ws: WSClient, pl: dict) -> None:
        """A job the server started: stream its log when log ingest is on for its host
        (subclasses run others); a job already streaming (sent again after a failover) goes on."""
        if self.streams.wants(ws.tag, pl["job_id"]):
            asyncio.create_task(self.streams.stream(ws.tag, pl["job_id"], pl["kind"]))

    async def heartbeats(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(1)
            tick += 1
            frame = None
            for i, ws in enumerate(list(self.conns.values())):
                if i % 30 == tick % 30:
                    frame = frame or envelope("heartbeat", '{"running_jobs":[]}')
                    try:
                        ws.send_text(frame)
                    except Exception:
                        pass


def swarm_main(idx, base, creds, cmd_q, res_q, lifetime, freeze_heap=False, spread_sources=False, *,
               swarm_cls: type[Swarm] = Swarm) -> None:
    """A child process's entry: one swarm (or a subclass, e.g. tui_scale's) until stopped."""
    child_setup()
    asyncio.run(swarm_cls(idx, base, creds, cmd_q, res_q, lifetime, freeze_heap, spread_sources).run())


def start_swarms(ctx, base: str, creds: list[tuple[str, str]], procs: int, lifetime: float, nice: int = 0,
                 **swarm_kw) -> Children:
    """Simulated agents for `creds` in up to `procs` child processes (no more than one per 500
    agents), at niceness `nice`; swarm_kw go to swarm_main (freeze_heap, spread_sources, swarm_cls)."""
    n_procs = max(1, min(procs, (len(creds) + 499) // 500))
    children = Children(ctx, n_procs)
    try:
        for i in range(n_procs):
            pr = ctx.Process(target=swarm_main, args=(i, base, creds[i::n_procs], children.cmd_qs[i], children.res_q,
                                                      lifetime), kwargs=swarm_kw, daemon=True)
            pr.start()
            if nice:  # the simulated fleet runs on the server's cores: see server_scale's --agents-nice
                os.setpriority(os.PRIO_PROCESS, pr.pid, nice)
            children.procs.append(pr)
    except BaseException:
        children.stop()
        raise
    return children
