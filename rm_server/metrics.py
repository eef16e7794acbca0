"""Prometheus text metrics, kept in memory and rendered on /metrics."""

from __future__ import annotations

import asyncio
import bisect
from collections import OrderedDict
from collections.abc import Callable

from rm_core.enums import TERMINAL_STATES
from rm_core.jobs import Job

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Event-loop lag: how late a timer fires. Finer at the low end, where the targets are.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
LAG_INTERVAL = 0.02  # seconds between lag samples


class Metrics:
    def __init__(self) -> None:
        self.requests = Histogram(BUCKETS)
        self.lag = Histogram(LAG_BUCKETS)
        # HTTP requests being handled now (not WebSockets): a fleet push stands back for them
        self.in_flight = 0
        # finished jobs by (kind, state) since this process started: rm_job_outcomes_total
        self.outcomes: dict[tuple[str, str], int] = {}
        self._counted: OrderedDict[str, None] = OrderedDict()  # a job announced twice counts once

    def job_changed(self, job: Job) -> None:
        if job.state not in TERMINAL_STATES or job.id in self._counted:
            return
        self._counted[job.id] = None
        if len(self._counted) > 10_000:
            self._counted.popitem(last=False)
        key = (job.kind.value, job.state.value)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1

    def observe_request(self, seconds: float) -> None:
        self.requests.observe(seconds)

    def render(self, *, hosts: dict[str, int], jobs: dict[str, int], agent_ws: int, operator_ws: int,
               queue_depths: dict[str, int]) -> str:
        out = ["# HELP rm_hosts Hosts by status.", "# TYPE rm_hosts gauge"]
        out += [f'rm_hosts{{status="{k}"}} {v}' for k, v in sorted(hosts.items())]
        out += ["# HELP rm_jobs Jobs by state.", "# TYPE rm_jobs gauge"]
        out += [f'rm_jobs{{state="{k}"}} {v}' for k, v in sorted(jobs.items())]
        out += ["# HELP rm_ws_connections Open WebSocket connections.", "# TYPE rm_ws_connections gauge",
                f'rm_ws_connections{{kind="agent"}} {agent_ws}', f'rm_ws_connections{{kind="operator"}} {operator_ws}']
        out += ["# HELP rm_queue_depth Messages waiting in send queues.", "# TYPE rm_queue_depth gauge"]
        out += [f'rm_queue_depth{{queue="{k}"}} {v}' for k, v in sorted(queue_depths.items())]
        out += ["# HELP rm_job_outcomes_total Jobs that ended, by kind and final state, since the server started.",
                "# TYPE rm_job_outcomes_total counter"]
        out += [f'rm_job_outcomes_total{{kind="{k}",state="{s}"}} {v}' for (k, s), v in sorted(self.outcomes.items())]
        out += ["# HELP rm_http_request_duration_seconds HTTP request latency.",
                "# TYPE rm_http_request_duration_seconds histogram"]
        out += self.requests.lines("rm_http_request_duration_seconds")
        out += ["# HELP rm_loop_lag_seconds How late the server's event loop ran a timer (sampled every "
                f"{LAG_INTERVAL * 1000:.0f} ms).", "# TYPE rm_loop_lag_seconds histogram"]
        out += self.lag.lines("rm_loop_lag_seconds")
        return "\n".join(out) + "\n"


class Histogram:
    """A Prometheus histogram: counts per bucket bound, their sum, and the last value seen
    (the fleet push reads the loop lag's last sample to pace itself)."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.total = 0
        self.last = 0.0

    def observe(self, value: float) -> None:
        self.last = value
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.total += 1

    def lines(self, name: str) -> list[str]:
        out: list[str] = []
        cumulative = 0
        for bound, count in zip(self.bounds, self.counts):
            cumulative += count
            out.append(f'{name}_bucket{{le="{bound}"}} {cumulative}')
        out.append(f'{name}_bucket{{le="+Inf"}} {self.total}')
        out += [f"{name}_sum {self.sum:.6f}", f"{name}_count {self.total}"]
        return out


async def watch_loop_lag(lag: Histogram, interval: float = LAG_INTERVAL,
                         on_sample: Callable[[float], None] | None = None) -> None:
    """Sleep `interval`, record how much later than asked the loop woke us, forever.

    Measured inside the server, so operators and the benchmark read the loop's own lag
    rather than a probe's round trip (which adds the reader queue and the client)."""
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(interval)
        late = max(0.0, loop.time() - start - interval)
        lag.observe(late)
        if on_sample is not None:
            on_sample(late)
