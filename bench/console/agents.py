"""tui_scale's simulated agents: fleet.agents' Swarm, plus jobs that send progress until
told to finish, and dropping every connection on command (the reconnect burst)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from fleet.agents import Swarm
from fleet.wsclient import WSClient
from rm_core import protocol as p


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
