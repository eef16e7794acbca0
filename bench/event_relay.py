#!/usr/bin/env python3
"""What relaying operators' events between replicas costs (services/event_forwarding.py).

Two real replicas (the server app, in this process, on port 0) of one throwaway PostgreSQL
cluster (tests/pgcluster.py). Replica A publishes N `schedule.updated` events, as a fleet
push's acks do, and the bench measures this process's CPU until B has them all:

* `always`: every event relayed, as before the gate (forwarding with nothing held);
* `gated`: nobody watches on B, so A holds them instead (what a push costs today);
* `watched`: an operator's events socket is open on B, so A relays and B's operator gets all.

Both replicas are in this process, so the CPU is the sender's and one receiver's together
(PostgreSQL's own is not counted). Run:

    .venv/bin/python bench/event_relay.py            # 19,000 events, 3 rounds
    .venv/bin/python bench/event_relay.py --events 5000 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # rm_server, and tests' cluster and server helpers

import aiohttp  # noqa: E402

from rm_server.keys import EVENTS, FORWARDING, RELAY  # noqa: E402
from tests.conftest import FakeClock, Server, sign_in_roles, start_server  # noqa: E402
from tests.pgcluster import PgCluster  # noqa: E402


async def until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def one_round(url: str, mode: str, events: int) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="rm-event-relay-"))
    key = base / "master.key"
    runner_a, url_a, a = await start_server(base / "a", FakeClock(), database_url=url, master_key_file=key)
    runner_b, url_b, b = await start_server(base / "b", FakeClock(), database_url=url, master_key_file=key)
    http = aiohttp.ClientSession()
    ws = None
    try:
        if mode == "always":
            a[EVENTS].hold = None
        delivered = 0
        deliver = b[EVENTS].deliver

        def counting(frame: bytes, coalesce: str | None) -> None:
            nonlocal delivered
            delivered += frame.startswith(b'{"type":"schedule.updated"')
            deliver(frame, coalesce)

        b[EVENTS].deliver = counting  # type: ignore[method-assign]
        if mode == "watched":
            first = Server(url_a, a, http, base / "a" / "data", FakeClock())
            await sign_in_roles(first)  # sessions are rows: B takes A's
            ws = await http.ws_connect(f"{url_b}/api/v1/events", headers=first.auth("viewer"))
            b_id = b[RELAY].replica_id
            await until(lambda: b_id in a[FORWARDING].watchers, 10, "A to learn B watches")
        cpu, wall = time.process_time(), time.perf_counter()
        for i in range(events):
            a[EVENTS].publish("schedule.updated", {"host_id": f"h{i:06d}", "version": 2, "applied_version": 2})
            if i % 500 == 499:
                await asyncio.sleep(0)  # the loop turns as it does between acks
        await a[RELAY].flush()
        if mode != "gated":
            await until(lambda: delivered >= events, 60, "B to receive every event")
        return {"mode": mode, "events": events, "delivered_on_b": delivered,
                "cpu_s": round(time.process_time() - cpu, 3), "wall_s": round(time.perf_counter() - wall, 3)}
    finally:
        if ws is not None:
            await ws.close()
        await http.close()
        await runner_a.cleanup()
        await runner_b.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=19_000, help="events A publishes per round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the three modes, alternating")
    args = ap.parse_args()
    logging.getLogger("rm_server").setLevel(logging.ERROR)  # the replicas' start-up notes are not the bench's
    cluster = PgCluster().start()
    try:
        n = 0
        for _ in range(args.rounds):
            for mode in ("always", "gated", "watched"):
                n += 1
                url = cluster.create_database(f"relay{n}")
                r = asyncio.run(one_round(url, mode, args.events))
                print(f"{r['mode']:8} {r['events']} events: delivered on B {r['delivered_on_b']:6}, "
                      f"CPU {r['cpu_s']:.2f} s, wall {r['wall_s']:.2f} s", flush=True)
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
