"""The bench's side of the processes: a real `rm-server serve`, the child processes of
simulated agents and their command queues, optional py-spy sampling, and the REST calls
that set the server up and fan mutations out."""

from __future__ import annotations

import asyncio
import os
import queue as queue_mod
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path

import aiohttp

from fleet.stats import mono
from rm_server.heap import fix_malloc_thresholds

ROOT = Path(__file__).resolve().parents[2]
ADMIN_USER, ADMIN_PASSWORD = "bench-admin", "bench-password-not-secret-0"


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def child_setup() -> None:
    """What every child process (simulated agents, probe) does first."""
    raise_nofile()
    # The server's malloc setting (rm_server/heap.py): without it every socket read of these
    # thousands of clients is an mmap + munmap, CPU the simulated fleet takes from the server.
    fix_malloc_thresholds()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Server:
    """A real `rm-server serve`: on SQLite in data_dir, or a replica of the PostgreSQL database
    `database` (each replica its own data dir, all of them one `master_key_file`)."""

    def __init__(self, data_dir: Path, max_agents: int, listen: str = "127.0.0.1:0", log_name: str = "server.log",
                 database: str | None = None, master_key_file: Path | None = None):
        self.data_dir = data_dir
        self.log_path = data_dir.parent / log_name
        self.log = open(self.log_path, "wb")
        exe = ROOT / ".venv" / "bin" / "rm-server"
        cmd = [str(exe) if exe.exists() else "rm-server", "serve", "--data-dir", str(data_dir),
               "--listen", listen, "--max-agents", str(max_agents)]
        if database:
            cmd += ["--database", database]
        if master_key_file:
            cmd += ["--master-key-file", str(master_key_file)]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=str(ROOT))
        self.base = None

    def wait_ready(self, timeout: float = 60) -> str:
        end = mono() + timeout
        while mono() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rm-server exited ({self.proc.returncode}): {self.log_path.read_text()[-2000:]}")
            for line in self.log_path.read_text(errors="replace").splitlines():
                if "rm-server listening on " in line:
                    self.base = line.split("rm-server listening on ", 1)[1].strip()
                    return self.base
            time.sleep(0.1)
        raise RuntimeError("rm-server did not become ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


class Children:
    def __init__(self, ctx, n_procs: int):
        self.ctx = ctx
        self.res_q = ctx.Queue()
        self.cmd_qs = [ctx.Queue() for _ in range(n_procs)]
        self.procs: list = []

    def ask(self, cmd: tuple, timeout: float = 30) -> list[dict]:
        for q in self.cmd_qs:
            q.put(cmd)
        out: dict[int, dict] = {}
        end = mono() + timeout
        while len(out) < len(self.cmd_qs) and mono() < end:
            try:
                idx, res = self.res_q.get(timeout=max(0.1, end - mono()))
            except queue_mod.Empty:
                break
            out[idx] = res
        if len(out) < len(self.cmd_qs):
            raise RuntimeError(f"agent processes did not answer {cmd[0]!r} in {timeout}s")
        return [out[i] for i in sorted(out)]

    def stop(self) -> None:
        for q in self.cmd_qs:
            q.put(("stop",))
        for pr in self.procs:
            pr.join(20)
            if pr.is_alive():
                pr.terminate()
                pr.join(5)
class Profiler:
    """Optional py-spy sampling of the server during one phase (collapsed stacks, --profile DIR)."""

    def __init__(self, out_dir: str | None, pid: int, name: str):
        self.proc = None
        exe = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
        if out_dir and Path(exe).exists():
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            self.proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--rate", "200", "--format", "raw",
                                          "--nonblocking", "--threads", "-o", str(Path(out_dir) / f"{name}.txt")]
                                         # --gil: only the thread holding the GIL, i.e. Python CPU, not waits
                                         + (["--gil"] if os.environ.get("BENCH_PYSPY_GIL") else []),
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def rest_setup(base: str, data_dir: Path) -> str:
    boot = (data_dir / "bootstrap-token").read_text().strip()
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{base}/api/v1/auth/bootstrap",
                          json={"token": boot, "username": ADMIN_USER, "password": ADMIN_PASSWORD}) as r:
            if r.status >= 300:
                raise RuntimeError(f"bootstrap failed: {r.status} {await r.text()}")
        async with s.post(f"{base}/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD}) as r:
            if r.status >= 300:
                raise RuntimeError(f"login failed: {r.status} {await r.text()}")
            return (await r.json())["token"]


async def fan_out(base: str | list[str], token: str, items: list, make, concurrency: int = 16,
                  replies: list | None = None) -> tuple[int, list[str]]:
    """Run (method, path, body) requests made by make(item) with bounded concurrency; with
    several bases (replicas) item i goes to base i mod their number. Successful replies'
    JSON bodies are appended to `replies` when given."""
    bases = [base] if isinstance(base, str) else base
    errors: list[str] = []
    ok = 0
    it = iter(enumerate(items))
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=concurrency),
                                     timeout=aiohttp.ClientTimeout(total=120)) as s:
        async def worker():
            nonlocal ok
            for i, item in it:
                method, path, body = make(item)
                try:
                    async with s.request(method, f"{bases[i % len(bases)]}{path}", json=body) as r:
                        await r.read()
                        if r.status < 300:
                            ok += 1
                            if replies is not None:
                                replies.append(await r.json())
                        else:
                            errors.append(f"{r.status} {path}: {(await r.text())[:160]}")
                except Exception as exc:
                    errors.append(type(exc).__name__)
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok, errors


async def server_ack_check(base: str, token: str, version: int) -> int:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"},
                                     timeout=aiohttp.ClientTimeout(total=120)) as s:
        async with s.get(f"{base}/api/v1/hosts") as r:
            hosts = (await r.json())["hosts"]
    return sum(1 for h in hosts if h["applied_schedule_version"] >= version)
