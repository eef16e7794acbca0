"""Several server URLs (replicas): the agent starts at a random one, moves to the next when a
connection fails or drops, and never retries faster than with one URL. Real sockets and the
real server app; dead URLs are closed ports (bound, never listening: refused at once)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from rm_agent.agent import Agent
from rm_agent.config import AgentConfig, ConfigError, load_config, save_config
from rm_agent.connection import Session
from rm_agent.outbox import Outbox
from rm_core import protocol as p
from rm_core.backoff import Backoff
from rm_core.server_urls import MAX_SERVER_URLS
from rm_core.version import PROTOCOL_VERSION
from tests.conftest import Server, wait_for

from .test_agent_server import AgentClock, Running, host_state


@pytest.fixture
def closed_ports() -> Iterator[list[int]]:
    """Ports held bound but not listening for the test: a connection is refused, and no other
    program can take the port meanwhile."""
    socks: list[socket.socket] = []

    def _ports() -> Iterator[int]:
        while True:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            yield s.getsockname()[1]

    gen = _ports()
    yield [next(gen) for _ in range(3)]
    for s in socks:
        s.close()


def hello() -> p.Hello:
    return p.Hello(protocol_version=PROTOCOL_VERSION, agent_version="test", hostname="h", os="linux",
                   arch="x86_64", restic_version=None, applied_schedule_version=0, running_jobs=[],
                   outbox_high_seq=0, features=[])


def session(urls: list[str], outbox: Outbox, on_status=lambda state, error: None, **kw) -> Session:
    config = AgentConfig(server_urls=urls, host_id="H", agent_token="rma_x")
    return Session(config, outbox, hello=hello, on_message=lambda raw: None, on_online=lambda: None,
                   on_status=on_status, running_jobs=lambda: [], **kw)


# ---------------------------------------------------------------- config


def test_old_config_with_one_server_url_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"server_url": "https://a:8950/", "host_id": "H", "agent_token": "T"}))
    cfg = load_config(path)
    assert cfg.server_urls == ["https://a:8950"] and cfg.server_url == "https://a:8950"


def test_new_config_keeps_server_url_for_older_agents(tmp_path: Path) -> None:
    """A config written now names its first URL as `server_url`: an agent from before several
    URLs (which requires that key and ignores unknown ones) still starts, on that URL."""
    path = tmp_path / "agent.json"
    save_config(path, AgentConfig(server_urls=["https://a:8950", "https://b:8950"], host_id="H", agent_token="T"))
    raw = json.loads(path.read_text())
    assert raw["server_urls"] == ["https://a:8950", "https://b:8950"] and raw["server_url"] == "https://a:8950"
    assert load_config(path).server_urls == ["https://a:8950", "https://b:8950"]


def test_a_server_url_edited_by_hand_away_from_server_urls_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"server_urls": ["https://a:8950", "https://b:8950"], "server_url": "https://c:8950",
                                "host_id": "H", "agent_token": "T"}))
    with pytest.raises(ConfigError, match="server_url 'https://c:8950' is not one of server_urls"):
        load_config(path)
    # one of the list, not the first: fine (written back as the first when saved)
    path.write_text(json.dumps({"server_urls": ["https://a:8950", "https://b:8950"], "server_url": "https://b:8950/",
                                "host_id": "H", "agent_token": "T"}))
    assert load_config(path).server_url == "https://a:8950"


@pytest.mark.parametrize("urls, field", [
    ([], "server_urls"), (["ftp://a"], "http"), (["https://a:8950,https://b"], "comma"),
    ([f"https://h{i}" for i in range(MAX_SERVER_URLS + 1)], "at most"),
])
def test_bad_server_urls_are_refused_by_name(tmp_path: Path, urls: list[str], field: str) -> None:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"server_urls": urls, "host_id": "H", "agent_token": "T"}))
    with pytest.raises(ConfigError, match=field):
        load_config(path)


# ---------------------------------------------------------------- connecting


async def test_first_url_dead_second_live_connects_to_the_live_one(server: Server, tmp_path: Path,
                                                                   closed_ports: list[int], caplog) -> None:
    host_id, token = await server.enroll("agent-host")
    dead = f"http://127.0.0.1:{closed_ports[0]}"
    cfg_path = tmp_path / "agent" / "agent.json"
    save_config(cfg_path, AgentConfig(server_urls=[dead, server.url], host_id=host_id, agent_token=token))
    agent = Agent(load_config(cfg_path), cfg_path, clock=AgentClock(), hostname="agent-host", first_url=0)
    caplog.set_level("INFO", logger="rm_agent")
    run = Running(agent)
    try:
        await wait_for(lambda: host_state(server, host_id, "online"), 15, "host online through the second URL")
        # the dead one was tried first, and the agent said where it went next
        assert f"connection to {dead} failed" in caplog.text and f"trying {server.url}" in caplog.text
        assert agent.session.url == server.url
        await wait_for(lambda: (agent.outbox.get("status") or {}).get("state") == "connected", 5, "status")
        assert agent.outbox.get("status")["server_url"] == server.url
    finally:
        await run.close()


async def test_start_url_is_random(tmp_path: Path) -> None:
    """200 starts against two live listeners, each recording who is reached first. A fair coin
    gives fewer than 50 of 200 on one side with probability 2·P(Bin(200, ½) ≤ 49) < 1e-12:
    this bound does not flake; an agent that always starts at the first URL fails it at once."""
    reached: list[int] = []
    arrived = asyncio.Event()

    def listener(index: int):
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            reached.append(index)
            arrived.set()
            writer.close()
        return accept

    servers = [await asyncio.start_server(listener(i), "127.0.0.1", 0) for i in range(2)]
    urls = [f"http://127.0.0.1:{s.sockets[0].getsockname()[1]}" for s in servers]
    outbox = Outbox(tmp_path / "state.db")
    firsts: list[int] = []
    try:
        for _ in range(200):
            reached.clear()
            arrived.clear()
            task = asyncio.create_task(session(urls, outbox).run())
            await asyncio.wait_for(arrived.wait(), 10)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            firsts.append(reached[0])
    finally:
        outbox.close()
        for s in servers:
            s.close()
            await s.wait_closed()
    counts = Counter(firsts)
    assert min(counts[0], counts[1]) >= 50, counts


async def test_every_url_dead_is_retried_in_turn_never_faster_than_one_url(tmp_path: Path,
                                                                            closed_ports: list[int]) -> None:
    """Three dead URLs: one attempt per backoff step, each at the next URL; the gaps are at
    least today's single-URL minimum delays (Backoff's jitter floor: 0.5 s, 1 s, 2 s)."""
    urls = [f"http://127.0.0.1:{port}" for port in closed_ports]
    attempts: list[tuple[float, str, str | None]] = []
    outbox = Outbox(tmp_path / "state.db")
    sess: Session

    def on_status(state: str, error: str | None) -> None:
        attempts.append((time.monotonic(), sess.url, error))

    sess = session(urls, outbox, on_status)
    task = asyncio.create_task(sess.run())
    try:
        await wait_for(lambda: len(attempts) >= 4, 15, "four attempts")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        outbox.close()
    floor = Backoff(rng=lambda: 0.0)
    for (t0, _, _), (t1, _, _) in zip(attempts, attempts[1:4]):
        assert t1 - t0 >= floor.next() - 0.02  # the loop's clock may wake a hair early
    tried = [url for _, url, _ in attempts[:4]]
    assert len(set(tried[:3])) == 3 and tried[3] == tried[0], tried  # in turn, none twice in a row
    start = urls.index(tried[0])
    assert tried[:3] == (urls[start:] + urls[:start])
    for _, url, error in attempts[:4]:
        assert error and f"127.0.0.1:{url.rsplit(':', 1)[1]}" in error  # the error names the URL it is about


def test_a_server_whose_machine_vanished_is_left_within_heartbeat_plus_timeout() -> None:
    """Loopback down in a private network namespace: packets vanish, nothing closes. The agent
    must notice within one heartbeat plus its unacknowledged-data limit (0.5 s + 2 s here),
    not after TCP's ~15 minutes of retries; without the limit the probe reports null."""
    ROOT = Path(__file__).resolve().parents[2]
    if subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -rn (a private network namespace) is not allowed here")
    out = subprocess.run(["unshare", "-rn", sys.executable, "-m", "tests.agent.vanish_probe", "0.5", "2"],
                         cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr[-3000:]
    noticed = json.loads(out.stdout.strip().splitlines()[-1])["noticed_after"]
    assert noticed is not None and noticed < 8, (noticed, out.stderr[-2000:])


# ---------------------------------------------------------------- a list from the server


@pytest.mark.parametrize("offered, why", [
    (["https://rm2.example:8950"], "leaves out"),  # the URL in use is not in it: a typo could cut the agent off
    (["https://rm1.example:8950", "ftp://rm2.example"], "must start with http"),
    ([f"https://rm{i}.example:8950" for i in range(MAX_SERVER_URLS + 1)], "at most"),
])
def test_a_list_the_server_sends_is_refused_when_it_could_cut_the_agent_off(
        tmp_path: Path, offered: list[str], why: str, caplog) -> None:
    cfg_path = tmp_path / "agent.json"
    save_config(cfg_path, AgentConfig(server_urls=["https://rm1.example:8950"], host_id="H", agent_token="rma_x"))
    before = cfg_path.read_bytes()
    agent = Agent(load_config(cfg_path), cfg_path, hostname="h", first_url=0)
    caplog.set_level("WARNING", logger="rm_agent")
    agent.adopt_server_urls(offered)
    assert why in caplog.text
    assert cfg_path.read_bytes() == before and agent.session.urls == ["https://rm1.example:8950"]
    agent.outbox.close()


def test_a_list_naming_the_url_in_use_is_kept_and_the_next_attempt_follows_it(tmp_path: Path) -> None:
    cfg_path = tmp_path / "agent.json"
    save_config(cfg_path, AgentConfig(server_urls=["https://rm2.example:8950"], host_id="H", agent_token="rma_x"))
    agent = Agent(load_config(cfg_path), cfg_path, hostname="h", first_url=0)
    urls = ["https://rm1.example:8950", "https://rm2.example:8950", "https://rm3.example:8950"]
    agent.adopt_server_urls(urls + ["https://rm2.example:8950/"])  # the same URL twice counts once
    saved = load_config(cfg_path)
    assert saved.server_urls == urls and saved.server_url == urls[0]
    assert agent.session.urls == urls and agent.session.url == urls[1]  # still the one in use
    agent.outbox.close()
