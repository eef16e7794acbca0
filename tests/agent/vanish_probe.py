"""Run inside a fresh network namespace (`unshare -rn`): a real server app and an agent
Session connect over loopback, then loopback goes down — every packet lost, no FIN, no RST,
as when a server's machine loses power. Prints one JSON line: how long the agent took to
notice (null if it did not within the deadline). tests/agent/test_failover.py runs it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from rm_agent.config import AgentConfig
from rm_agent.connection import Session
from rm_agent.outbox import Outbox
from rm_core import protocol as p
from rm_core.version import PROTOCOL_VERSION
from tests.conftest import FakeClock, Server, sign_in_roles, start_server, wait_for

DEADLINE = 20.0


def hello() -> p.Hello:
    return p.Hello(protocol_version=PROTOCOL_VERSION, agent_version="test", hostname="h", os="linux",
                   arch="x86_64", restic_version=None, applied_schedule_version=0, running_jobs=[],
                   outbox_high_seq=0, features=[])


async def probe(tmp: Path, heartbeat: float, unacknowledged: float) -> dict:
    clock = FakeClock()
    runner, url, app = await start_server(tmp, clock)
    try:
        async with aiohttp.ClientSession() as http:
            srv = Server(url, app, http, tmp / "data", clock)
            await sign_in_roles(srv)
            _, token = await srv.enroll("vanish")
        outbox = Outbox(tmp / "state.db")
        ended: list[float] = []
        sess = Session(AgentConfig(server_urls=[url], host_id="H", agent_token=token), outbox, hello=hello,
                       on_message=lambda raw: None, on_online=lambda: None,
                       on_status=lambda state, error: ended.append(time.monotonic()), running_jobs=lambda: [])
        sess.heartbeat_interval = heartbeat
        sess.unacknowledged_timeout = unacknowledged
        task = asyncio.create_task(sess.run())
        await wait_for(lambda: sess.online, 15, "agent online")
        subprocess.run(["ip", "link", "set", "lo", "down"], check=True)
        cut = time.monotonic()
        while not ended and time.monotonic() - cut < DEADLINE:
            await asyncio.sleep(0.05)  # polling against a deadline, in a throwaway process
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        outbox.close()
        return {"noticed_after": round(ended[0] - cut, 2) if ended else None}
    finally:
        await runner.cleanup()


def main() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    heartbeat, unacknowledged = float(sys.argv[1]), float(sys.argv[2])
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(asyncio.run(probe(Path(tmp), heartbeat, unacknowledged))), flush=True)


if __name__ == "__main__":
    main()
