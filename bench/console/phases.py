"""One fleet size of bench/tui_scale.py: seed the database (in a child), start the server and
the simulated agents, then run the real rm-tui app and measure, phase by phase: sign-in,
keys idle, keys under 100 updates/s, a reconnect burst, filter keystrokes, the console's
RSS. Returns the figures the results JSON holds for that size."""

from __future__ import annotations

import asyncio
import os
import shutil
import time

import aiohttp

from console.agents import TuiSwarm
from console.frames import SIZE, Console, TimedDriver, fleet_screen
from fleet.agents import start_swarms
from fleet.driver import ADMIN_PASSWORD, ADMIN_USER, Children, Server, rest_setup
from fleet.seed import prepare_in_child
from fleet.sizes import size_log, size_work_dir
from fleet.stats import pct, proc_status, rounded, summary_ms


def rss() -> dict:
    return proc_status(os.getpid())


async def in_thread(fn, *a):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *a)


async def ask(children: Children, cmd: tuple) -> list[dict]:
    """Ask every agent process, off the console's loop; a slow box gets a minute."""
    return await in_thread(lambda: children.ask(cmd, timeout=60))


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
    TimedDriver.reset()
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
            res["idle_keys"] = {**summary_ms(keys, 95), "timeouts": lost}
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
            res["load_keys"] = {**summary_ms(keys, 95), "timeouts": lost,
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
            res["burst"] = {"dropped": dropped, **summary_ms(keys, 95), "timeouts": lost,
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
            res["filter"] = summary_ms(times, 95)
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
    log = size_log(n)  # on sys.__stderr__: while the app runs, Textual captures sys.stderr for itself
    res: dict = {"hosts": n, "loadavg_before": os.getloadavg()}
    work, data_dir = size_work_dir(n, "rm-tui-bench")
    creds = prepare_in_child(ctx, data_dir, n)
    n_agents = min(n, args.agents)
    server = Server(data_dir, max_agents=n_agents + 200)
    children = None
    try:
        base = server.wait_ready()
        res["_token"] = asyncio.run(rest_setup(base, data_dir))
        children = start_swarms(ctx, base, creds[:n_agents], args.agent_procs, args.max_seconds, swarm_cls=TuiSwarm)
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
