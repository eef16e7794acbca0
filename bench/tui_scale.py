#!/usr/bin/env python3
"""rm-tui at fleet scale: the real console against a real rm-server with N hosts (issue 9).

For each fleet size N it:

1. writes N hosts (+ tokens, 2 finished jobs each) straight into SQLite after the server's
   own migrations (bench/fleet/seed.py, in a child process so the console's RSS
   is not inflated by server modules), starts a real `rm-server serve` on 127.0.0.1:0 and
   bootstraps an admin;
2. connects simulated agents (bench/fleet/agents.py, 2 processes) for `--agents` hosts
   (default: all of them up to 5,000) over the real agent WebSocket;
3. runs the real rm-tui app in this process at 200x50 with a driver whose `write` records
   when Textual hands it a frame (the compositor's work and the escape sequences are done
   by then) and discards it — `App.run_test(headless=False)` with that driver, so frames are
   rendered exactly as on a terminal;
4. measures:
   * sign-in: `enter` on the login form → the first frame showing the first host row;
   * key → repaint: `down`/`up` sent through the driver → the first frame that contains
     the newly selected host's name; idle, while agents send 100 updates/s (50 running
     jobs, job.progress twice a second each, then job.finished) and during a reconnect
     burst (every connected agent drops its WebSocket and reconnects: an offline and an
     online host.updated per host);
   * backlog drained: last agent hello'd again → the console's host map shows every
     burst host online again;
   * one filter keystroke at N: a digit typed into `/` filter → the frame whose status
     line shows the new filter;
   * console RSS (VmRSS/VmHWM of this process; the server and agents run elsewhere).

    .venv/bin/python bench/tui_scale.py --sizes 5000,20000
    .venv/bin/python bench/tui_scale.py --quick          # 500 hosts, a smoke run

Results: a table on stdout and bench/results/tui_scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402
from textual import events  # noqa: E402
from textual.drivers.headless_driver import HeadlessDriver  # noqa: E402

from fleet.agents import Swarm, swarm_main  # noqa: E402
from fleet.driver import ADMIN_PASSWORD, ADMIN_USER, Children, Server, raise_nofile, rest_setup  # noqa: E402
from fleet.seed import prepare_db  # noqa: E402
from fleet.wsclient import WSClient  # noqa: E402
from fleet.stats import pct, proc_status, rounded  # noqa: E402
from harness import run_doc, write_results  # noqa: E402
from rm_core import protocol as p  # noqa: E402

SIZE = (200, 50)
TARGETS = {"signin_5k_s": 0.5, "signin_20k_s": 1.0, "key_p95_ms": 30, "burst_key_p95_ms": 100,
           "burst_drain_s": 2.0, "filter_20k_ms": 50, "rss_20k_mb": 150}


# --------------------------------------------------------------------------- frames at the driver

class TimedDriver(HeadlessDriver):
    """Renders like a terminal driver (not headless) and timestamps every frame it is handed."""

    frames = 0
    bytes = 0
    waiters: list[tuple[str, float, asyncio.Future]] = []
    recent: deque[tuple[float, str]] = deque(maxlen=200)  # a waiter may be registered after its frame

    @property
    def is_headless(self) -> bool:
        return False  # App._display only builds frames for a non-headless driver

    def write(self, data: str) -> None:
        now = time.perf_counter()
        cls = type(self)
        cls.frames += 1
        cls.bytes += len(data)
        cls.recent.append((now, data))
        if cls.waiters:
            keep = []
            for marker, after, fut in cls.waiters:
                if not fut.done() and now >= after and marker in data:
                    fut.set_result(now)
                elif not fut.done():
                    keep.append((marker, after, fut))
            cls.waiters = keep

    @classmethod
    def expect(cls, marker: str, after: float) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        for t, data in cls.recent:
            if t >= after and marker in data:
                fut.set_result(t)
                return fut
        cls.waiters.append((marker, after, fut))
        return fut


# --------------------------------------------------------------------------- agents

class TuiSwarm(Swarm):
    """The fleet benches' simulated agents, plus: run jobs with progress, drop and reconnect."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.progress_interval = 0.5
        self.running: dict[str, asyncio.Task] = {}
        self.finish_now = asyncio.Event()

    def handle(self, cmd: tuple) -> dict:
        if cmd[0] == "finish":
            self.finish_now.set()
            return {"ok": True, "running": len(self.running)}
        if cmd[0] == "drop":
            n = 0
            for ws in list(self.conns.values()):
                asyncio.create_task(ws.close())
                n += 1
            self.hello_ok.clear()
            return {"dropped": n}
        out = super().handle(cmd)
        if cmd[0] == "status":
            out["last_hello"] = max(self.hello_at.values(), default=None)
        return out

    def on_command_run(self, ws: WSClient, pl: dict) -> None:
        self.finish_now.clear()
        self.running[pl["job_id"]] = asyncio.create_task(self.run_job(ws, pl["job_id"], pl["kind"]))

    async def run_job(self, ws, job_id: str, kind: str) -> None:
        try:
            started = p.JobStarted(job_id=job_id, started_at=datetime.now(timezone.utc), kind=kind)
            await ws.send_str(p.encode(p.message(started)))
            pct = 0.0
            while not self.finish_now.is_set():
                pct = min(99.0, pct + 0.5)
                prog = p.JobProgress(job_id=job_id, percent=pct, bytes_done=int(pct * 1e7), bytes_total=int(1e9),
                                     files_done=int(pct * 100), files_total=10_000, eta_seconds=100 - pct)
                await ws.send_str(p.encode(p.message(prog)))
                try:
                    await asyncio.wait_for(self.finish_now.wait(), self.progress_interval)
                except asyncio.TimeoutError:
                    pass
            fin = p.JobFinished(job_id=job_id, seq=2, state="succeeded", exit_code=0,
                                finished_at=datetime.now(timezone.utc))
            await ws.send_str(p.encode(p.message(fin)))
        except Exception as exc:
            self.errors.append(f"job {job_id}: {type(exc).__name__} {exc}")
        finally:
            self.running.pop(job_id, None)


def prepare_main(data_dir: str, n: int, out_q) -> None:
    out_q.put(prepare_db(Path(data_dir), n))


# --------------------------------------------------------------------------- helpers

def rss() -> dict:
    return proc_status(os.getpid())


def pcts(values: list[float]) -> dict:
    return {"n": len(values), "p50_ms": rounded(pct(values, 50)), "p95_ms": rounded(pct(values, 95)),
            "max_ms": rounded(max(values) if values else None)}


async def in_thread(fn, *a):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *a)


async def ask(children: Children, cmd: tuple) -> list[dict]:
    """Ask every agent process, off the console's loop; a slow box gets a minute."""
    return await in_thread(lambda: children.ask(cmd, timeout=60))


def fleet_screen(app):
    from rm_tui.screens.fleet import FleetScreen

    return app.screen if isinstance(app.screen, FleetScreen) else None


def selected_hostname(app) -> str | None:
    fleet = fleet_screen(app)
    hid = fleet.selected_host_id() if fleet else None
    return fleet.hosts[hid].hostname if hid else None


class Console:
    """Keys in through the driver, frames out of it."""

    def __init__(self, app) -> None:
        self.app = app

    def send(self, key: str, char: str | None = None) -> None:
        ev = events.Key(key, char)
        ev.set_sender(self.app)
        self.app._driver.send_message(ev)

    async def key_to_frame(self, key: str, expect, timeout: float) -> float | None:
        """Send `key`; ms until a frame holding expect() (computed once the key is handled)."""
        t0 = time.perf_counter()
        before = selected_hostname(self.app)
        self.send(key)
        end = time.monotonic() + timeout
        # which host the key selects is known once the app handled it; the frame comes after
        while time.monotonic() < end:
            now_sel = selected_hostname(self.app)
            if now_sel != before:
                break
            await asyncio.sleep(0.0005)
        else:
            return None
        fut = TimedDriver.expect(expect(), t0)
        try:
            t1 = await asyncio.wait_for(fut, max(0.01, end - time.monotonic()))
        except asyncio.TimeoutError:
            return None
        return (t1 - t0) * 1000

    async def keys(self, n: int, timeout: float, budget: float) -> tuple[list[float], int]:
        """n down/up presses (down to row ~n/2, back up), paced; timeouts counted."""
        out, lost = [], 0
        end = time.monotonic() + budget
        for i in range(n):
            if time.monotonic() > end:
                break
            key = "down" if (i // 20) % 2 == 0 else "up"
            ms = await self.key_to_frame(key, lambda: selected_hostname(self.app) or "\0", timeout)
            if ms is None:
                lost += 1
            else:
                out.append(ms)
            await asyncio.sleep(0.05)
        return out, lost


# --------------------------------------------------------------------------- one size

async def drive(n: int, base: str, creds, children: Children, n_agents: int, args, res: dict, log) -> None:
    from textual.widgets import Input

    from rm_tui.app import make_app
    from rm_tui.screens.fleet import FleetScreen
    from rm_tui.screens.login import LoginScreen

    import rm_tui.app as rm_app
    import rm_tui.messages as rm_messages

    counts = {"progress": 0, "host_updated": 0, "reconnects": 0}
    lags: list[float] = []  # server published host.updated → the fleet applied it (s)
    orig_apply = FleetScreen.apply
    orig_connected, orig_to_message = FleetScreen.on_events_connected, rm_app.to_message

    def stamped(event):
        message = orig_to_message(event)
        if message is not None and event.ts is not None:
            message.bench_ts = event.ts.timestamp()
        return message

    lost_reasons: list[str] = []
    orig_lost = FleetScreen.on_events_lost

    def noted_lost(self, message):
        lost_reasons.append(message.reason)
        return orig_lost(self, message)

    def counted_connected(self, message):
        counts["reconnects"] += 1
        return orig_connected(self, message)

    def counted_apply(self, message):
        if isinstance(message, rm_messages.JobProgress):
            counts["progress"] += 1
        elif isinstance(message, rm_messages.HostUpdated):
            counts["host_updated"] += 1
            if hasattr(message, "bench_ts"):
                lags.append(time.time() - message.bench_ts)
        return orig_apply(self, message)

    async def phase(name: str, fn) -> None:
        """One measurement; a failure is recorded and the next phase still runs."""
        try:
            await fn()
        except Exception as exc:  # noqa: BLE001 - a benchmark reports, it does not stop
            res.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
            log(f"{name} failed: {type(exc).__name__}: {exc}")

    FleetScreen.apply = counted_apply
    FleetScreen.on_events_lost = noted_lost
    FleetScreen.on_events_connected, rm_app.to_message = counted_connected, stamped
    TimedDriver.frames = TimedDriver.bytes = 0
    TimedDriver.recent.clear()
    TimedDriver.waiters = []
    app = make_app(base)
    app.animation_level = "none"
    app.driver_class = TimedDriver
    res["rss_before_app_mb"] = rss().get("VmRSS")
    async with app.run_test(headless=False, size=SIZE) as pilot:
        con = Console(app)
        while not isinstance(app.screen, LoginScreen):
            await asyncio.sleep(0.01)
        await pilot.pause()
        app.screen.query_one("#username", Input).value = ADMIN_USER
        app.screen.query_one("#password", Input).value = ADMIN_PASSWORD
        t0 = time.perf_counter()
        fut = TimedDriver.expect("bench-00000", t0)  # the first row: hostnames sort like the ids
        con.send("enter")
        try:
            t1 = await asyncio.wait_for(fut, args.signin_timeout)
            res["signin_s"] = round(t1 - t0, 3)
        except asyncio.TimeoutError:
            res["signin_s"] = None
            res.setdefault("errors", {})["signin"] = f"no fleet frame within {args.signin_timeout}s"
        log(f"sign-in → first fleet frame {res['signin_s']} s")
        end = time.monotonic() + 600
        while not (fleet_screen(app) and app.events_connected and len(fleet_screen(app).hosts) >= n):
            if time.monotonic() > end:
                raise RuntimeError("the fleet never held every host")
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        res["rss_signed_in_mb"] = rss().get("VmRSS")

        async def idle() -> None:
            keys, lost = await con.keys(args.keys, timeout=10, budget=60)
            res["idle_keys"] = {**pcts(keys), "timeouts": lost}
            log("idle keys:", res["idle_keys"])

        async def load() -> None:
            # 50 running jobs spread over the fleet, away from the rows the cursor walks
            # over (their hostnames are the frame markers); progress twice a second each
            job_hosts = [h for h, _ in creds[60:n_agents]][:: max(1, (n_agents - 60) // 50)][:50]
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {res['_token']}"}) as s:
                for h in job_hosts:
                    async with s.post(f"{base}/api/v1/hosts/{h}/jobs", json={"kind": "init"}) as r:
                        await r.read()
            prog0, t_load = counts["progress"], time.monotonic()
            await asyncio.sleep(2)
            keys, lost = await con.keys(args.keys, timeout=20, budget=90)
            dt = time.monotonic() - t_load
            res["load_keys"] = {**pcts(keys), "timeouts": lost,
                                "progress_applied_per_s": round((counts["progress"] - prog0) / dt, 1)}
            log("keys under 100 updates/s:", res["load_keys"])
            await ask(children, ("finish",))
            await asyncio.sleep(3)

        async def burst() -> None:
            hu0, rc0 = counts["host_updated"], counts["reconnects"]
            lags.clear()
            t_drop = time.monotonic()
            dropped = sum(x["dropped"] for x in await ask(children, ("drop",)))
            burst_task = asyncio.create_task(con.keys(args.keys, timeout=30, budget=60))
            t_back = None
            while time.monotonic() - t_drop < 180:
                st = await ask(children, ("status",))
                if sum(x["hello_ok"] for x in st) >= dropped:
                    t_back = max(x["last_hello"] for x in st if x["last_hello"])  # CLOCK_MONOTONIC, any process
                    break
                await asyncio.sleep(0.2)
            agent_ids = {h for h, _ in creds[:n_agents]}
            t_drained = None
            while time.monotonic() - t_drop < 240:
                fleet = fleet_screen(app)
                # the model's running count, not a pass over 5,000 hosts every 50 ms: that pass,
                # in the console's own process, cost about as much as applying the events (only
                # hosts with a simulated agent can be online)
                if fleet and fleet.model.counts().get("online", 0) >= len(agent_ids):
                    t_drained = time.monotonic()
                    break
                await asyncio.sleep(0.05)
            keys, lost = await burst_task
            res["burst"] = {"dropped": dropped, **pcts(keys), "timeouts": lost,
                            "agents_back_s": rounded(t_back - t_drop, 2) if t_back else None,
                            "drained_after_back_s": rounded(max(0.0, t_drained - t_back), 2)
                            if t_drained and t_back else None,
                            "host_updated_applied": counts["host_updated"] - hu0,
                            "event_lag_p50_s": rounded(pct(lags, 50), 2), "event_lag_max_s": rounded(max(lags), 2)
                            if lags else None, "stream_reconnects": counts["reconnects"] - rc0,
                            "stream_lost": sorted(set(lost_reasons))}
            log("reconnect burst:", res["burst"])

        async def filter_keys() -> None:
            con.send("slash", "/")
            await asyncio.sleep(0.5)  # not pilot.pause(): a console behind on events is never idle
            typed, times = "", []
            for ch in "9999":
                typed += ch
                t0 = time.perf_counter()
                fut = TimedDriver.expect(f"filter: '{typed}'", t0)  # the status line names the filter
                con.send(ch, ch)
                try:
                    times.append((await asyncio.wait_for(fut, 30) - t0) * 1000)
                except asyncio.TimeoutError:
                    pass
                await asyncio.sleep(0.2)
            res["filter"] = pcts(times)
            log("filter keystrokes:", res["filter"])

        for name, fn in (("idle", idle), ("load", load), ("burst", burst), ("filter", filter_keys)):
            if name in args.phases:
                await phase(name, fn)
        st = rss()
        res["rss_end_mb"], res["rss_peak_mb"] = st.get("VmRSS"), st.get("VmHWM")
        res["frames"], res["frame_bytes"] = TimedDriver.frames, TimedDriver.bytes
        log(f"console RSS {res['rss_end_mb']} MB (peak {res['rss_peak_mb']} MB)")
    FleetScreen.apply = orig_apply
    FleetScreen.on_events_lost = orig_lost
    FleetScreen.on_events_connected, rm_app.to_message = orig_connected, orig_to_message


def run_size(n: int, args, ctx) -> dict:
    # sys.__stderr__: while the app runs, Textual captures sys.stderr for itself
    log = lambda *a: print(f"[{n:>6}] " + " ".join(str(x) for x in a), file=sys.__stderr__, flush=True)  # noqa: E731
    res: dict = {"hosts": n, "loadavg_before": os.getloadavg()}
    work = Path(tempfile.mkdtemp(prefix=f"rm-tui-bench-{n}-"))
    data_dir = work / "data"
    data_dir.mkdir(mode=0o700)
    q = ctx.Queue()
    pr = ctx.Process(target=prepare_main, args=(str(data_dir), n, q))
    pr.start()
    creds = q.get(timeout=600)
    pr.join()
    n_agents = min(n, args.agents)
    server = Server(data_dir, max_agents=n_agents + 200)
    children = None
    try:
        base = server.wait_ready()
        res["_token"] = asyncio.run(rest_setup(base, data_dir))
        n_procs = max(1, min(args.agent_procs, (n_agents + 499) // 500))
        children = Children(ctx, n_procs)
        agent_creds = creds[:n_agents]
        for i in range(n_procs):
            cp = ctx.Process(target=swarm_main, args=(i, base, agent_creds[i::n_procs], children.cmd_qs[i],
                                                         children.res_q, args.max_seconds),
                             kwargs={"swarm_cls": TuiSwarm}, daemon=True)
            cp.start()
            children.procs.append(cp)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60 + n_agents / 50:
            time.sleep(0.5)
            st = children.ask(("status",))
            if sum(s["hello_ok"] for s in st) >= n_agents:
                break
        log(f"{sum(s['hello_ok'] for s in st)}/{n_agents} agents connected in {time.monotonic() - t0:.1f}s")
        time.sleep(2)
        try:
            asyncio.run(drive(n, base, creds, children, n_agents, args, res, log))
        except Exception as exc:  # keep what was measured before it broke
            res["failed"] = f"{type(exc).__name__}: {exc}"
            log("FAILED:", res["failed"])
        res["server_rss_mb"] = proc_status(server.proc.pid).get("VmRSS")
        res["loadavg_after"] = os.getloadavg()
    finally:
        res.pop("_token", None)
        if children is not None:
            children.stop()
        server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return res


def table(results: list[dict]) -> str:
    def g(r, *path):
        for k in path:
            r = r.get(k) if isinstance(r, dict) else None
        return "–" if r is None else r

    rows = [
        ("sign-in → full fleet frame (s)", lambda r: g(r, "signin_s")),
        ("key → repaint idle p50 / p95 (ms)", lambda r: f"{g(r, 'idle_keys', 'p50_ms')} / {g(r, 'idle_keys', 'p95_ms')}"),
        ("key → repaint, 100 updates/s p50 / p95 (ms)",
         lambda r: f"{g(r, 'load_keys', 'p50_ms')} / {g(r, 'load_keys', 'p95_ms')} ({g(r, 'load_keys', 'timeouts')} timeouts)"),
        ("progress events applied /s", lambda r: g(r, "load_keys", "progress_applied_per_s")),
        ("key → repaint, reconnect burst p50 / p95 (ms)",
         lambda r: f"{g(r, 'burst', 'p50_ms')} / {g(r, 'burst', 'p95_ms')} ({g(r, 'burst', 'timeouts')} timeouts)"),
        ("burst: agents back (s) / all online in the console after (s)",
         lambda r: f"{g(r, 'burst', 'agents_back_s')} / {g(r, 'burst', 'drained_after_back_s')}"),
        ("burst: event published → applied p50 / max (s), stream reconnects",
         lambda r: f"{g(r, 'burst', 'event_lag_p50_s')} / {g(r, 'burst', 'event_lag_max_s')}, "
                   f"{g(r, 'burst', 'stream_reconnects')}"),
        ("filter keystroke p50 / max (ms)", lambda r: f"{g(r, 'filter', 'p50_ms')} / {g(r, 'filter', 'max_ms')}"),
        ("console RSS end / peak (MB)", lambda r: f"{g(r, 'rss_end_mb')} / {g(r, 'rss_peak_mb')}"),
    ]
    head = "| metric | " + " | ".join(f"{r['hosts']:,}" for r in results) + " |"
    lines = [head, "|---" * (len(results) + 1) + "|"]
    for name, f in rows:
        lines.append(f"| {name} | " + " | ".join(str(f(r)) for r in results) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="5000,20000", help="comma-separated fleet sizes")
    ap.add_argument("--quick", action="store_true", help="500 hosts, a smoke run")
    ap.add_argument("--agents", type=int, default=5000, help="hosts with a simulated agent (the burst size)")
    ap.add_argument("--agent-procs", type=int, default=2)
    ap.add_argument("--keys", type=int, default=40, help="key presses per phase")
    ap.add_argument("--phases", default="idle,load,burst,filter",
                    help="which measurements after sign-in (comma-separated)")
    ap.add_argument("--signin-timeout", type=float, default=300, help="seconds to wait for the first fleet frame")
    ap.add_argument("--max-seconds", type=float, default=900, help="child processes exit after this long")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dirs")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    args.phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    limit = raise_nofile()
    sizes = [500] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.agents + 300 > limit:
        args.agents = limit - 300
    ctx = mp.get_context("spawn")
    started = time.time()
    results = []
    for n in sizes:
        try:
            results.append(run_size(n, args, ctx))
        except Exception as exc:
            import traceback

            traceback.print_exc()
            results.append({"hosts": n, "failed": f"{type(exc).__name__}: {exc}"})
    machine = {"cpus": os.cpu_count(), "python": platform.python_version()}
    write_results("tui_scale", run_doc(started, machine, TARGETS, {**vars(args), "phases": sorted(args.phases)},
                                       results), quick=args.quick, out=args.out, table=table(results))
    return 0 if all("failed" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
