"""Prometheus text metrics, kept in memory and rendered on /metrics."""

from __future__ import annotations

import bisect

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.request_counts = [0] * (len(BUCKETS) + 1)
        self.request_sum = 0.0
        self.request_total = 0

    def observe_request(self, seconds: float) -> None:
        self.request_counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.request_sum += seconds
        self.request_total += 1

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
        out += ["# HELP rm_http_request_duration_seconds HTTP request latency.",
                "# TYPE rm_http_request_duration_seconds histogram"]
        cumulative = 0
        for bound, count in zip(BUCKETS, self.request_counts):
            cumulative += count
            out.append(f'rm_http_request_duration_seconds_bucket{{le="{bound}"}} {cumulative}')
        out.append(f'rm_http_request_duration_seconds_bucket{{le="+Inf"}} {self.request_total}')
        out.append(f"rm_http_request_duration_seconds_sum {self.request_sum:.6f}")
        out.append(f"rm_http_request_duration_seconds_count {self.request_total}")
        return "\n".join(out) + "\n"
