"""/metrics: Prometheus text with hosts by status, jobs by state, connections, queue depths, latency."""

from __future__ import annotations

import re
import time

from rm_server.keys import METRICS
from tests.server.server_helpers import online_host


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        out[name] = float(value)
    return out


async def test_metrics_text(server):
    await server.enroll("pending-1")
    host_id, agent = await online_host(server, "web-2")
    status, _ = await server.call("POST", f"/hosts/{host_id}/jobs", role="operator", json={"kind": "check"})
    ev = await server.http.ws_connect(server.api("/events"), headers=server.auth("viewer"))
    scraper = {"Authorization": f"Bearer {(server.data_dir / 'metrics-token').read_text().strip()}"}
    status, text = await server.call("GET", f"{server.url}/metrics", role=None, headers=scraper)
    assert status == 200 and isinstance(text, str)
    for line in text.splitlines():
        assert line.startswith("#") or re.match(r'^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [0-9.e+-]+$', line), line
    m = samples(text)
    assert m['rm_hosts{status="online"}'] == 1 and m['rm_hosts{status="pending"}'] == 1
    assert m['rm_hosts{status="offline"}'] == 0
    assert m['rm_jobs{state="dispatched"}'] == 1
    assert m['rm_ws_connections{kind="agent"}'] == 1 and m['rm_ws_connections{kind="operator"}'] == 1
    assert 'rm_queue_depth{queue="agent_send"}' in m and 'rm_queue_depth{queue="operator_send"}' in m
    assert "# TYPE rm_http_request_duration_seconds histogram" in text
    count = m["rm_http_request_duration_seconds_count"]
    assert count >= 5 and m['rm_http_request_duration_seconds_bucket{le="+Inf"}'] == count
    buckets = [v for k, v in m.items() if k.startswith("rm_http_request_duration_seconds_bucket")]
    assert buckets == sorted(buckets)
    await ev.close()
    await agent.close()


async def test_loop_lag_histogram_sees_a_blocked_loop(server):
    """The server measures its own loop lag: a 120 ms block shows up in the >= 0.1 s buckets."""
    def lag_samples(text):
        m = samples(text)
        return m["rm_loop_lag_seconds_count"], m['rm_loop_lag_seconds_bucket{le="0.1"}']

    scraper = {"Authorization": f"Bearer {(server.data_dir / 'metrics-token').read_text().strip()}"}
    _, text = await server.call("GET", f"{server.url}/metrics", role=None, headers=scraper)
    assert "# TYPE rm_loop_lag_seconds histogram" in text
    count0, under0 = lag_samples(text)
    time.sleep(0.12)  # blocks the loop the server shares with this test: that is the lag to see
    for _ in range(1000):  # the next sample is due within the 20 ms interval
        _, text = await server.call("GET", f"{server.url}/metrics", role=None, headers=scraper)
        count, under = lag_samples(text)
        if count > count0:
            break
    else:
        raise AssertionError("no loop-lag sample after the block")
    assert count - under >= 1  # at least one sample above 100 ms
    assert samples(text)["rm_loop_lag_seconds_sum"] >= 0.1


def test_histogram_buckets_are_cumulative():
    from rm_server.metrics import Histogram
    h = Histogram((0.01, 0.1))
    for v in (0.005, 0.05, 0.5, 0.01):
        h.observe(v)
    assert h.lines("x") == ['x_bucket{le="0.01"} 2', 'x_bucket{le="0.1"} 3', 'x_bucket{le="+Inf"} 4',
                            "x_sum 0.565000", "x_count 4"]


async def test_requests_in_flight_count_requests_not_sockets(server, monkeypatch):
    # A fleet push stands back while operators' requests are in flight (services/pacing.py);
    # the agents' and consoles' WebSockets, open for hours, must not count as waiting.
    metrics = server.app[METRICS]
    host_id, agent = await online_host(server, "web-1")
    ev = await server.http.ws_connect(server.api("/events"), headers=server.auth("viewer"))
    seen = []
    real = server.store.hosts.list_json

    async def watched(**kw):
        seen.append(metrics.in_flight)
        return await real(**kw)

    monkeypatch.setattr(server.store.hosts, "list_json", watched)
    status, _ = await server.call("GET", "/hosts")
    assert status == 200 and seen == [1]
    assert metrics.in_flight == 0
    status, _ = await server.call("GET", "/hosts/nope")  # an error reply is counted out too
    assert status == 404 and metrics.in_flight == 0
    await ev.close()
    await agent.close()
