"""Latency probes against the server from their own process (own core share, own loop):
GET /healthz every 10 ms, paged host and job lists, optionally the full host list, and the
server's own loop-lag histogram before and after each phase."""

from __future__ import annotations

import asyncio
import queue as queue_mod
import random
import time

import aiohttp

from fleet.driver import child_setup
from fleet.stats import mono


class Probe:
    """Latency probes against the server from their own process (own core share, own loop)."""

    def __init__(self, base: str, token: str, host_ids: list[str], cmd_q, res_q, lifetime: float,
                 scrape_every: float = 0.0):
        self.base, self.token, self.host_ids = base, token, host_ids
        self.cmd_q, self.res_q, self.lifetime = cmd_q, res_q, lifetime
        self.scrape_every = scrape_every

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
                    samples = {"healthz": [], "hosts_page": [], "jobs_page": [], "hosts_full": [], "scrape": [],
                               "errors": [], "lag_before": await self.lag_buckets()}
                    tasks = [asyncio.create_task(self.healthz(samples)),
                             asyncio.create_task(self.paged(samples))]
                    if self.scrape_every:
                        tasks.append(asyncio.create_task(self.scrape(samples)))
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

    async def scrape(self, samples) -> None:
        """Prometheus' scrape of /metrics (gzip, as it asks), every scrape_every seconds."""
        while True:
            await self._timed(samples, "scrape", f"{self.base}/metrics")
            await asyncio.sleep(self.scrape_every)

    async def full(self, samples) -> None:
        while True:
            await self._timed(samples, "hosts_full", f"{self.base}/api/v1/hosts")
            await asyncio.sleep(2.0)  # a TUI-like refresh; faster polling itself saturates the server


def probe_main(base, token, host_ids, cmd_q, res_q, lifetime, scrape_every=0.0) -> None:
    """A child process's entry: one probe until told to exit."""
    child_setup()
    asyncio.run(Probe(base, token, host_ids, cmd_q, res_q, lifetime, scrape_every).run())


def probe_cmd(probe_q, probe_res, cmd: tuple, timeout: float = 60):
    """The bench's side: one command to the probe process and its answer."""
    probe_q.put(cmd)
    tag, res = probe_res.get(timeout=timeout)
    return res


class Probes:
    """The bench's side of one probe process per server (each replica measured from its own
    process, so one replica's slowness never delays another's samples)."""

    def __init__(self, ctx, bases: list[str], token: str, host_ids: list[str], lifetime: float,
                 scrape_every: float = 0.0):
        self.queues: list[tuple] = []
        self.procs: list = []
        try:
            for base in bases:
                q, res = ctx.Queue(), ctx.Queue()
                proc = ctx.Process(target=probe_main, args=(base, token, host_ids, q, res, lifetime, scrape_every),
                                   daemon=True)
                proc.start()
                self.queues.append((q, res))
                self.procs.append(proc)
        except BaseException:
            self.close()
            raise

    def start(self, full_list: bool = False) -> None:
        """Probes on; with full_list the first server also serves a full host list every 2 s
        (one console refreshing, whatever the number of replicas: the same load as one server)."""
        for i, (q, res) in enumerate(self.queues):
            probe_cmd(q, res, ("start", {"full_list": full_list and i == 0}))

    def stop(self) -> list[dict]:
        """Each server's samples since start(), in the order of `bases`."""
        return [probe_cmd(q, res, ("stop",)) for q, res in self.queues]

    def close(self) -> None:
        for q, _ in self.queues:
            q.put(("exit",))
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
