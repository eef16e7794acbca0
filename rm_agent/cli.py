"""`rm-agent enroll | run | status | version`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import random
import signal
import socket
from typing import Any
from pathlib import Path

import aiohttp
import click

from rm_agent.config import AgentConfig, ConfigError, default_config_path, load_config, save_config, state_dir
from rm_agent.connection import describe_error, ssl_param
from rm_agent.outbox import Outbox
from rm_agent.secrets import SecretsCorrupt
from rm_core.api import ErrorBody
from rm_core.fingerprints import FingerprintError, normalise_fingerprint
from rm_core.logs import setup_logging
from rm_core.server_urls import ServerUrlError, parse_server_urls
from rm_core.version import PROTOCOL_VERSION, __version__

config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Agent config file; all agent state lives in its directory. "
    "Default /etc/restic-manager/agent.json as root, else ~/.config/restic-manager/agent.json.",
)


def _setup_logging(verbose: bool) -> None:
    setup_logging(logging.DEBUG if verbose else logging.INFO)


@click.group()
def main() -> None:
    """restic-manager agent: runs restic for the server, and on its own schedule when the server is away."""


@main.command()
def version() -> None:
    """Print the agent and protocol versions."""
    click.echo(f"rm-agent {__version__} (protocol {PROTOCOL_VERSION})")


class _NoAnswer(Exception):
    """This URL did not answer the enrollment (unreachable, or a 5xx from it or a proxy): try another."""


async def _enroll(http: aiohttp.ClientSession, server: str, token: str, fingerprint: str | None) -> dict[str, Any]:
    body = {"token": token, "hostname": socket.gethostname(), "os": platform.system().lower(),
            "arch": platform.machine(), "agent_version": __version__}
    try:
        async with http.post(server + "/api/v1/agents/enroll", json=body, ssl=ssl_param(server, fingerprint)) as resp:
            try:
                data = await resp.json(content_type=None)
            except ValueError:
                data = None
            if resp.status != 201 or not isinstance(data, dict):
                err = ErrorBody.from_envelope(data, resp.status)
                if resp.status >= 500:
                    raise _NoAnswer(f"it answered {resp.status}: {err.message}")
                raise click.ClickException(f"enrollment refused ({resp.status}): {err.message}")
            return data
    except aiohttp.ClientError as exc:
        raise _NoAnswer(describe_error(exc, server)) from None
    except asyncio.TimeoutError:
        raise _NoAnswer("no answer within 30 s; is the URL right?") from None


async def _enroll_any(urls: list[str], token: str, fingerprint: str | None) -> tuple[str, dict[str, Any]]:
    """Enroll through the first of `urls`, in random order, that answers; a refusal (4xx) ends it."""
    order = random.sample(urls, len(urls))  # replicas share the load of a fleet enrolling at once
    failed: list[str] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        for i, url in enumerate(order):
            try:
                return url, await _enroll(http, url, token, fingerprint)
            except _NoAnswer as exc:
                failed.append(f"{url}: {exc}")
                if i + 1 < len(order):
                    click.echo(f"cannot reach {url}: {exc}; trying {order[i + 1]}", err=True)
    if len(urls) == 1:
        raise click.ClickException(f"cannot reach {failed[0]}")
    raise click.ClickException(f"cannot reach any of the {len(urls)} server URLs: " + "; ".join(failed))


@main.command()
@click.option("--server", "servers", required=True, multiple=True, metavar="URL",
              help="Server URL, e.g. https://backup.example.com:8950. A server with several replicas: "
                   "repeat it, or give several comma-separated; enrollment tries them in random order "
                   "and the agent keeps them all.")
@click.option("--token", required=True, envvar="RM_ENROLL_TOKEN", show_envvar=True,
              help="One-time enrollment token from the console.")
@click.option("--fingerprint", default=None,
              help="SHA-256 of the server certificate to pin (hex, colons allowed); it holds for every URL.")
@click.option("--force", is_flag=True, help="Enroll again even if this config already holds an identity.")
@config_option
def enroll(servers: tuple[str, ...], token: str, fingerprint: str | None, force: bool, config_path: Path | None) -> None:
    """Enroll this host and write the agent config (0600)."""
    path = config_path or default_config_path()
    try:
        fp = normalise_fingerprint(fingerprint)
    except FingerprintError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        urls = parse_server_urls(servers)
    except ServerUrlError as exc:
        raise click.ClickException(str(exc)) from None
    if path.exists() and not force:
        raise click.ClickException(f"{path} already exists (host already enrolled); pass --force to enroll again")
    used, data = asyncio.run(_enroll_any(urls, token, fp))
    if path.exists():  # --force: the old identity's secrets and outbox belong to another host
        for name in ("secrets.enc", "state.db", "state.db-wal", "state.db-shm"):
            (state_dir(path) / name).unlink(missing_ok=True)
    save_config(path, AgentConfig(server_urls=urls, host_id=data["host_id"],
                                  agent_token=data["agent_token"], fingerprint=fp))
    through = f" through {used} ({len(urls)} server URLs kept)" if len(urls) > 1 else ""
    click.echo(f"enrolled as host {data['host_id']}{through}; config written to {path}")
    click.echo(f"start the agent with: rm-agent run --config {path}")


@main.command()
@config_option
@click.option("-v", "--verbose", is_flag=True)
def run(config_path: Path | None, verbose: bool) -> None:
    """Run the agent daemon (connects, runs jobs, keeps the schedule)."""
    from rm_agent.agent import Agent

    _setup_logging(verbose)
    path = config_path or default_config_path()
    try:
        config = load_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None

    async def main_async() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        agent = Agent(config, path)
        logging.getLogger("rm_agent").info("rm-agent %s started for host %s (state in %s)",
                                           __version__, config.host_id, agent.dir)
        await agent.run(stop)

    try:
        asyncio.run(main_async())
    except SecretsCorrupt as exc:
        raise click.ClickException(str(exc)) from None


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(config_path: Path | None, as_json: bool) -> None:
    """Connection state, applied schedule version, running jobs, outbox depth."""
    path = config_path or default_config_path()
    try:
        config = load_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    db = state_dir(path) / "state.db"
    # server_url: the URL the state is about (connected to, being tried, last tried)
    info: dict[str, Any] = {"host_id": config.host_id, "server_urls": config.server_urls,
                            "server_url": config.server_urls[0], "state": "never started",
                            "applied_schedule_version": 0, "running_jobs": [], "outbox_depth": 0}
    if db.exists():
        ob = Outbox(db, readonly=True)
        try:
            st = ob.get("status") or {}
            state = st.get("state", "unknown")
            if state not in ("stopped",) and not _pid_alive(st.get("pid")):
                state = "not running"
            if st.get("server_url") in config.server_urls:
                info["server_url"] = st["server_url"]
            info.update(
                state=state, since=st.get("since"), last_error=st.get("error"), pid=st.get("pid"),
                restic_version=st.get("restic_version"),
                applied_schedule_version=(ob.get("schedule_set") or {}).get("version", 0),
                running_jobs=ob.running_jobs() if state not in ("not running", "stopped") else [],
                outbox_depth=ob.depth(),
            )
        finally:
            ob.close()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"host:              {info['host_id']}")
    mark = {"connected": " (connected)", "connecting": " (trying)", "disconnected": " (last tried)"}.get(info["state"], "")
    for i, url in enumerate(info["server_urls"]):
        label = "server:" if i == 0 else ""
        click.echo(f"{label:<19}{url}{mark if url == info['server_url'] else ''}")
    click.echo(f"connection:        {info['state']}" + (f" since {info['since']}" if info.get("since") else ""))
    if info.get("last_error"):
        click.echo(f"last error:        {info['last_error']}")
    click.echo(f"schedule version:  {info['applied_schedule_version']}")
    click.echo(f"running jobs:      {', '.join(info['running_jobs']) or 'none'}")
    click.echo(f"outbox depth:      {info['outbox_depth']} unacknowledged event(s)")


if __name__ == "__main__":
    main()
