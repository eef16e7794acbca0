"""/metrics' per-host series, checked by Prometheus' own promtool, and the shipped alert rules
and Grafana dashboard (packaging/prometheus/) checked against what the server exposes."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from rm_core import protocol as p
from rm_server.keys import HOST_METRICS
from tests.conftest import wait_for
from tests.server.server_helpers import finished, make_group, online_host, started

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging" / "prometheus"
PROMTOOL = os.environ.get("RM_PROMTOOL") or shutil.which("promtool")
needs_promtool = pytest.mark.skipif(not PROMTOOL, reason="promtool missing (scripts/test fetches it: "
                                                         "Debian's prometheus package)")


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


async def scrape(server, **headers: str) -> tuple[int, str, dict]:
    token = (server.data_dir / "metrics-token").read_text().strip()
    async with server.http.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {token}", **headers},
                               auto_decompress=False) as resp:
        raw = await resp.read()
        if resp.headers.get("Content-Encoding") == "gzip":
            # One member, read as curl --compressed reads it: a reader that stops after the
            # first member would show only part of the text.
            one = zlib.decompressobj(16 + zlib.MAX_WBITS)
            raw = one.decompress(raw)
            assert one.eof and not one.unused_data, "the reply is not exactly one gzip member"
            assert gzip.decompress(await resp.read()) == raw  # as Prometheus' Go reader reads it
        return resp.status, raw.decode(), dict(resp.headers)


async def fleet(server) -> dict[str, str]:
    """Three hosts: one with a good backup, repository stats, a failed check and a good
    drill; one whose backup failed; one never connected."""
    good, agent = await online_host(server, "db-1")
    group = await make_group(server, good)
    for kind, state, summary in (("backup", "succeeded", {"data_added": 5_000_000, "total_duration": 42.5,
                                                          "snapshot_id": "ab" * 32}),
                                 ("check", "failed", None), ("drill", "succeeded", {"files": 3})):
        body = {"kind": kind, **({"source_group_id": group["id"]} if kind in ("backup", "drill") else {})}
        status, job = await server.call("POST", f"/hosts/{good}/jobs", role="operator", json=body)
        assert status == 202, job
        await agent.expect("command.run")
        await agent.send(started(job["id"], kind=kind))
        await agent.send(finished(job["id"], 2, state=state, exit_code=0 if state == "succeeded" else 1,
                                  summary=summary))
    await agent.send(p.RepoStats(total_size=123_456_789, snapshots_count=4))
    bad, agent2 = await online_host(server, 'odd "name"\\x')
    group2 = await make_group(server, bad)
    status, job = await server.call("POST", f"/hosts/{bad}/jobs", role="operator",
                                    json={"kind": "backup", "source_group_id": group2["id"]})
    await agent2.expect("command.run")
    await agent2.send(started(job["id"]))
    # what an agent reports is not trusted: a number Prometheus cannot read must not break the scrape
    await agent2.send(finished(job["id"], 2, state="failed", exit_code=1, error="boom",
                               summary={"total_duration": "1e+", "data_added": 10**30}))
    pending, _ = await server.enroll("never")

    async def settled() -> bool:
        _, jobs = await server.call("GET", "/jobs?limit=100")
        ended = [j for j in jobs["jobs"] if j["state"] in ("succeeded", "failed")]
        return len(ended) == 4 and (await server.store.reports.stats(good) or {}).get("total_size") == 123_456_789

    await wait_for(settled, what="the agents' reports stored")
    await agent.close()
    await agent2.close()
    return {"good": good, "bad": bad, "pending": pending}


async def test_per_host_series(server):
    server.app[HOST_METRICS].ttl = 0  # each scrape reads afresh here
    hosts = await fleet(server)
    status, text, headers = await scrape(server)
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4"), headers
    m = samples(text)
    good, bad, pending = (f'{{host_id="{hosts[k]}"}}' for k in ("good", "bad", "pending"))
    assert m[f'rm_host_info{{host_id="{hosts["good"]}",hostname="db-1"}}'] == 1
    assert m[f'rm_host_info{{host_id="{hosts["bad"]}",hostname="odd \\"name\\"\\\\x"}}'] == 1  # escaped
    assert m[f"rm_host_last_backup_added_bytes{good}"] == 5_000_000
    assert m[f"rm_host_last_backup_duration_seconds{good}"] == 42.5
    assert m[f"rm_host_repository_size_bytes{good}"] == 123_456_789
    assert m[f"rm_host_last_backup_success_timestamp_seconds{good}"] > 1.7e9
    assert f"rm_host_last_backup_success_timestamp_seconds{bad}" not in m
    assert f"rm_host_last_backup_added_bytes{bad}" not in m and f"rm_host_last_backup_duration_seconds{bad}" in m
    assert f"rm_host_last_backup_success_timestamp_seconds{pending}" not in m
    assert m[f"rm_host_created_timestamp_seconds{pending}"] > 1.7e9
    assert m[f"rm_host_online{pending}"] == 0
    outcome = 'rm_host_last_job_success{{host_id="{}",kind="{}"}}'
    assert m[outcome.format(hosts["good"], "backup")] == 1 and m[outcome.format(hosts["good"], "check")] == 0
    assert m[outcome.format(hosts["good"], "drill")] == 1 and m[outcome.format(hosts["bad"], "backup")] == 0
    assert outcome.format(hosts["pending"], "backup") not in m
    assert m['rm_job_outcomes_total{kind="backup",state="succeeded"}'] == 1
    assert m['rm_job_outcomes_total{kind="backup",state="failed"}'] == 1
    assert m['rm_job_outcomes_total{kind="check",state="failed"}'] == 1


async def test_gzip_when_asked_is_the_same_text(server):
    await server.enroll("h1")
    _, plain, _ = await scrape(server)
    status, unpacked, headers = await scrape(server, **{"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    drop = re.compile(r"^rm_(http_request|loop_lag).*$", re.M)  # these move between two scrapes
    assert drop.sub("", unpacked) == drop.sub("", plain)
    assert "rm_host_info{" in plain and "rm_hosts{" in plain


@pytest.mark.skipif(not shutil.which("curl"), reason="curl missing")
async def test_curl_compressed_shows_the_whole_text(server):
    """curl --compressed reads one gzip member only: it must get the per-host series too."""
    await server.enroll("h1")
    token = (server.data_dir / "metrics-token").read_text().strip()
    curl = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--compressed", "-H", "@-", f"{server.url}/metrics",
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # the token via stdin, not argv
    out, err = await curl.communicate(f"Authorization: Bearer {token}\n".encode())
    assert curl.returncode == 0, err
    text = out.decode()
    assert "rm_hosts{" in text and "rm_host_info{" in text and text.endswith("\n"), text[-300:]


@needs_promtool
async def test_promtool_check_metrics_passes(server):
    await fleet(server)
    _, text, _ = await scrape(server)
    res = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and not res.stdout.strip() and not res.stderr.strip(), res.stdout + res.stderr


@needs_promtool
def test_promtool_check_metrics_would_catch_a_bad_name():
    bad = "# HELP rm_x_total A counter without _total.\n# TYPE rm_x_total gauge\nrm_x_total 1\n"
    res = subprocess.run([PROMTOOL, "check", "metrics"], input=bad, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0, res.stdout + res.stderr


@needs_promtool
def test_alert_rules_pass_promtool_and_fire_as_intended():
    res = subprocess.run([PROMTOOL, "check", "rules", str(PACKAGING / "restic-manager.rules.yml")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    res = subprocess.run([PROMTOOL, "test", "rules", str(ROOT / "tests/server/prometheus_rules_test.yml")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\brm_[a-z0-9_]+\b", expr))


async def test_rules_and_dashboard_use_only_metrics_that_exist(server):
    await fleet(server)
    _, text, _ = await scrape(server)
    exposed = {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines() if line and line[0] != "#"}
    dashboard = json.loads((PACKAGING / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) >= 10
    rules = (PACKAGING / "restic-manager.rules.yml").read_text()
    used = set().union(*map(metric_names, exprs)) | metric_names(rules)
    assert used and used <= exposed, used - exposed
    assert {"rm_host_last_backup_success_timestamp_seconds", "rm_host_online",
            "rm_host_last_job_success"} <= metric_names(rules)
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}" and panel["targets"], panel["title"]
