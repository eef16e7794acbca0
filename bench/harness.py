"""What the benches share: bare restic in a throwaway repository, a real rm-server and
rm-agent started as processes, the timing loop that compares a bare restic run with the
same work done through the product, and the one place results are written.

Used by agent_overhead.py, restore_browse.py and restore_drill.py, and for writing results
by server_scale.py, tui_scale.py and kill9_loop.py (run as `.venv/bin/python
bench/<name>.py`, so this directory is on sys.path).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from datetime import datetime, timezone
from typing import Callable

BIN = Path(sys.executable).parent
# RM_BENCH_RESTIC=/path/to/restic benches another restic (bare runs and the agent alike)
RESTIC = os.environ.get("RM_BENCH_RESTIC") or shutil.which("restic") or "/usr/bin/restic"
PASSWORD = "bench password"
RESULTS = Path(__file__).parent / "results"
ADMIN_PASSWORD = "bench password 123"


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


def restic_version() -> str:
    return subprocess.run([RESTIC, "version"], capture_output=True, text=True).stdout.strip()


def password_file(work: Path) -> Path:
    pw = work / "pw"
    pw.write_text(PASSWORD)
    pw.chmod(0o600)
    return pw


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

    def job_done(self, job_id: str, timeout: float, what: str, poll: float = 0.05) -> dict:
        """Poll until the job ended. A bench that times the job by its own timestamps can poll
        slowly (`poll`): each poll costs the server and this client CPU the job competes for."""
        return wait(lambda: (j := self.call("GET", f"/jobs/{job_id}")[1])["state"] in
                    ("succeeded", "failed", "warning", "cancelled") and j, timeout, what, poll)


def wait(pred, timeout: float, what: str, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(poll)
    raise SystemExit(f"timed out waiting for {what}")


class Rig:
    """A real rm-server on a free port and one enrolled rm-agent on `repo`, as processes.
    Use as a context manager: both are stopped on exit, whatever happened."""

    def __init__(self, work: Path, repo: Path, agent_env: dict[str, str] | None = None) -> None:
        self.work, self.repo = work, repo
        self.agent_env = {**(agent_env or os.environ), "XDG_CACHE_HOME": str(work / "agent-cache")}
        self.procs: list[subprocess.Popen] = []
        self.api = Api("")
        self.host_id = ""
        self.agent: subprocess.Popen | None = None

    def __enter__(self) -> "Rig":
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _start(self) -> None:
        work = self.work
        port = free_port()
        server_log = work / "server.log"
        self.procs.append(subprocess.Popen(
            [str(BIN / "rm-server"), "serve", "--data-dir", str(work / "server"), "--listen", f"127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(server_log, "w")))
        api = self.api = Api(f"http://127.0.0.1:{port}")
        wait(lambda: (work / "server" / "bootstrap-token").exists() and "listening" in server_log.read_text(),
             30, "server")
        token = (work / "server" / "bootstrap-token").read_text().strip()
        api.call("POST", "/auth/bootstrap", {"token": token, "username": "admin", "password": ADMIN_PASSWORD})
        api.token = api.call("POST", "/auth/login", {"username": "admin", "password": ADMIN_PASSWORD})[1]["token"]
        _, tok = api.call("POST", "/enrollment-tokens", {"repo": {"url": str(self.repo), "password": PASSWORD}})
        cfg = work / "agent" / "agent.json"
        subprocess.run([str(BIN / "rm-agent"), "enroll", "--server", api.url, "--token", tok["token"],
                        "--config", str(cfg)], check=True, capture_output=True)
        config = json.loads(cfg.read_text())
        self.host_id = config["host_id"]
        config["restic_binary"] = RESTIC  # the agent runs the same restic as the bare runs (RM_BENCH_RESTIC)
        cfg.write_text(json.dumps(config))
        self.agent = subprocess.Popen([str(BIN / "rm-agent"), "run", "--config", str(cfg)], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=open(work / "agent.log", "w"),
                                      env=self.agent_env)
        self.procs.append(self.agent)
        wait(lambda: api.call("GET", f"/hosts/{self.host_id}")[1].get("status") == "online", 30, "agent online")

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs.clear()


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(rounds: int, *runs: Callable[[int], float]) -> list[list[float]]:
    """Run each of `runs` once per round, rotating which goes first: load drifts on a shared
    box and whoever always ran first (or last) would pay for it. Each callable gets the
    round number and returns the seconds it measured (wall clock via `timed`, or from the
    product's own timestamps). Returns one list of seconds per callable."""
    seconds: list[list[float]] = [[] for _ in runs]
    for r in range(rounds):
        for i in range(len(runs)):
            k = (i + r) % len(runs)
            seconds[k].append(runs[k](r))
    return seconds


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def machine(nofile_limit: int) -> dict:
    """The machine a fleet bench ran on, for its results document."""
    import aiohttp
    import platform

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "nofile_limit": nofile_limit, "aiohttp": aiohttp.__version__,
            "cpu_model": next((ln.split(":", 1)[1].strip() for ln in
                               Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")), "?"),
            "mem_total_mb": int(next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
                                     if ln.startswith("MemTotal"))) // 1024}


def run_doc(started: float, machine: dict, targets: dict, args: dict, results: list[dict]) -> dict:
    """The results document of a bench run over several sizes (server_scale, tui_scale): the
    keys bench/summarize.py and docs/benchmarks.md read. `started` is time.time() at the start."""
    return {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "duration_s": round(time.time() - started), "machine": machine, "targets": targets,
            "args": args, "results": results}


def write_results(name: str, doc: dict, *, quick: bool = False, out: str | Path | None = None,
                  table: str | None = None) -> Path:
    """Write a bench's results as indented JSON: to `out` if given, else bench/results/<name>.json
    (<name>.quick.json for a quick run, so a smoke run never overwrites the real figures). With
    `table`, print it and where the results went."""
    path = Path(out) if out else RESULTS / (f"{name}.quick.json" if quick else f"{name}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    if table is not None:
        print(table)
        print(f"\nresults written to {path}")
    return path
