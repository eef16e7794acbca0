"""Agent overhead: an agent-driven backup vs a bare `restic backup` of the same data.

Starts a real rm-server and rm-agent, then for each round backs up the same data set
into two fresh repositories: once with bare restic, once as an rm-agent job (timed from
the job's start to the "snapshot saved" line the agent logs, i.e. the agent's restic
run with its output parsing, redaction and outbox writes). Prints a table with the
median ratio (target <= 1.03) and the agent's idle RSS (target <= 45 MB), and writes
bench/results/agent_overhead.json.

    python bench/agent_overhead.py [--size-mb 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

BIN = Path(sys.executable).parent
RESTIC = shutil.which("restic") or "/usr/bin/restic"
PASSWORD = "bench password"
RESULTS = Path(__file__).parent / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def restic_env(repo: Path, pwfile: Path, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
    env.update(RESTIC_REPOSITORY=str(repo), RESTIC_PASSWORD_FILE=str(pwfile), RESTIC_CACHE_DIR=str(cache),
               RESTIC_PROGRESS_FPS="1")
    return env


def init_repo(repo: Path, pwfile: Path, cache: Path) -> None:
    subprocess.run([RESTIC, "init"], env=restic_env(repo, pwfile, cache), stdin=subprocess.DEVNULL,
                   capture_output=True, check=True)


class Api:
    def __init__(self, url: str) -> None:
        self.url = url
        self.token = ""

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(f"{self.url}/api/v1{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {self.token}"} if self.token else {})})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


def wait(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def private_kb(pid: int) -> int:
    """USS: memory only this process holds (RSS minus shared library pages)."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rm-bench-"))
    procs: list[subprocess.Popen] = []
    try:
        data = work / "data"
        data.mkdir()
        files = max(1, args.size_mb // 4)
        for i in range(files):
            (data / f"f{i:04d}.bin").write_bytes(os.urandom(4 << 20))
        pw = work / "pw"
        pw.write_text(PASSWORD)
        pw.chmod(0o600)

        port = free_port()
        server_log = open(work / "server.log", "w")
        procs.append(subprocess.Popen([str(BIN / "rm-server"), "serve", "--data-dir", str(work / "server"),
                                       "--listen", f"127.0.0.1:{port}"], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=server_log))
        api = Api(f"http://127.0.0.1:{port}")
        wait(lambda: (work / "server" / "bootstrap-token").exists() and
             "listening" in (work / "server.log").read_text(), 30, "server")
        token = (work / "server" / "bootstrap-token").read_text().strip()
        api.call("POST", "/auth/bootstrap", {"token": token, "username": "admin", "password": "bench password 123"})
        api.token = api.call("POST", "/auth/login", {"username": "admin", "password": "bench password 123"})[1]["token"]
        first = work / "agent-repo-0"
        init_repo(first, pw, work / "cache-agent-0")
        _, tok = api.call("POST", "/enrollment-tokens", {"repo": {"url": str(first), "password": PASSWORD}})
        cfg = work / "agent" / "agent.json"
        subprocess.run([str(BIN / "rm-agent"), "enroll", "--server", api.url, "--token", tok["token"],
                        "--config", str(cfg)], check=True, capture_output=True)
        host_id = json.loads(cfg.read_text())["host_id"]
        agent_env = dict(os.environ, XDG_CACHE_HOME=str(work / "agent-cache"))
        agent_log = open(work / "agent.log", "w")
        agent = subprocess.Popen([str(BIN / "rm-agent"), "run", "--config", str(cfg)], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=agent_log, env=agent_env)
        procs.append(agent)
        wait(lambda: api.call("GET", f"/hosts/{host_id}")[1].get("status") == "online", 30, "agent online")
        wait(lambda: any(j["state"] == "succeeded" for j in api.call("GET", f"/jobs?host_id={host_id}&kind=init")[1]["jobs"]),
             60, "init job")
        # idle: connected, nothing running; let start-up garbage settle
        time.sleep(2)  # measurement settle time, not synchronisation
        idle_rss_mb = rss_kb(agent.pid) / 1024
        idle_uss_mb = private_kb(agent.pid) / 1024
        status, group = api.call("POST", f"/hosts/{host_id}/source-groups",
                                 {"name": "bench", "includes": [str(data)], "tag": "bench", "retention": {"keep_last": 1}})
        assert status == 201, group

        rows = []
        for r in range(args.rounds):
            bare_repo, agent_repo = work / f"bare-repo-{r}", work / f"agent-repo-{r + 1}"
            init_repo(bare_repo, pw, work / f"cache-bare-{r}")
            init_repo(agent_repo, pw, work / f"cache-agent-{r + 1}")
            # bare restic
            t0 = time.monotonic()
            subprocess.run([RESTIC, "backup", "--json", "--tag", "bench", str(data)],
                           env=restic_env(bare_repo, pw, work / f"cache-bare-{r}"), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            bare = time.monotonic() - t0
            # agent-driven: point the host at the fresh repository, run the group
            api.call("PUT", f"/hosts/{host_id}/repo", {"url": str(agent_repo), "password": PASSWORD})
            _, body = api.call("POST", f"/hosts/{host_id}/source-groups/{group['id']}/run")
            job_id = body["job"]["id"]
            job = wait(lambda: (j := api.call("GET", f"/jobs/{job_id}")[1])["state"] in
                       ("succeeded", "failed", "warning") and j, 600, "agent backup")
            assert job["state"] == "succeeded", job
            lines = api.call("GET", f"/jobs/{job_id}/logs?limit=10000")[1]["lines"]
            saved = next(ln for ln in lines if " saved: " in ln["text"])
            agent_s = (datetime.fromisoformat(saved["ts"]) - datetime.fromisoformat(job["started_at"])).total_seconds()
            total_s = (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])).total_seconds()
            rows.append({"round": r + 1, "bare_s": bare, "agent_backup_s": agent_s, "agent_job_s": total_s,
                         "ratio": agent_s / bare})
        ratio = statistics.median(r["ratio"] for r in rows)
        print(f"{'round':>5} {'bare restic s':>14} {'agent backup s':>15} {'ratio':>7} {'whole job s':>12}")
        for r in rows:
            print(f"{r['round']:>5} {r['bare_s']:>14.2f} {r['agent_backup_s']:>15.2f} {r['ratio']:>7.3f} {r['agent_job_s']:>12.2f}")
        print(f"median ratio {ratio:.3f} (target <= 1.03)   agent idle RSS {idle_rss_mb:.1f} MB "
              f"(target <= 45 MB; private/USS {idle_uss_mb:.1f} MB)")
        print("whole job = backup plus the snapshots/stats refresh the agent runs afterwards")
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "agent_overhead.json").write_text(json.dumps({
            "size_mb": files * 4, "rounds": rows, "median_ratio": ratio, "ratio_target": 1.03,
            "idle_rss_mb": idle_rss_mb, "idle_uss_mb": idle_uss_mb, "rss_target_mb": 45,
            "restic": subprocess.run([RESTIC, "version"], capture_output=True, text=True).stdout.strip(),
        }, indent=2))
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
