"""rm-server: serve, back up the database (operator and host commands: cli_admin.py)."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import os
import signal
import socket
import ssl
import sys
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import click

from rm_core.logs import setup_logging
from rm_core.server_urls import ServerUrlError, parse_server_urls
from rm_core.version import __version__
from rm_server.cli_admin import DATABASE, host, operator
from rm_server.cli_migrate import migrate_store
from rm_server.config import ServerConfig, data_dir_default
from rm_server.heap import fix_malloc_thresholds, tune_collector
from rm_server.security import MasterKey
from rm_server.startup import BACKLOG, database_error, fail, listen_sockets, why
from rm_server.store.backends import is_postgres
from rm_server.workers import READY_FD, Workers, child_argv, signal_ready
from rm_server.store import SchemaTooNew, Store

DATA_DIR = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=data_dir_default,
    show_default="$RM_DATA_DIR or ~/.local/share/restic-manager", help="Where the database and keys live.",
)


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"{value!r} is not HOST:PORT (for example 127.0.0.1:8950)")
    return host.strip("[]") or "127.0.0.1", int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """restic-manager server."""


@main.command()
# Not click's own directory check: a data dir that is a file is one line like any other
# reason the server cannot start (startup.py), not a usage error.
@click.option("--data-dir", type=click.Path(path_type=Path), default=data_dir_default,
              show_default="$RM_DATA_DIR or ~/.local/share/restic-manager", help="Where the database and keys live.")
@click.option("--listen", default="127.0.0.1:8950", show_default=True, help="HOST:PORT to listen on (port 0: any).")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--self-signed", is_flag=True, help="Generate (once) and use a self-signed certificate.")
@click.option("--insecure-http", is_flag=True, help="Allow plain HTTP on a non-loopback address.")
@click.option("--public-url", default=None, help="URL agents use to reach this server (for install commands).")
@click.option("--agent-url", "agent_urls", multiple=True, metavar="URL",
              help="A URL new agents are enrolled with, each kept in their config (repeatable, or comma-"
                   "separated: one per replica, or a load balancer's). Default: the public URL.")
@click.option("--max-agents", type=click.IntRange(1, 1_000_000), default=None,
              help="Refuse agent connections beyond this many (default: below the open-file limit).")
@click.option("--public-metrics", is_flag=True,
              help="Serve /metrics without a token (default: bearer DATA/metrics-token or a session).")
@click.option("--trusted-proxy", "trusted_proxies", multiple=True, metavar="IP",
              help="A reverse proxy whose X-Forwarded-For names the client (repeatable); "
                   "without it the header is ignored.")
@click.option("--proxy-protocol", is_flag=True,
              help="Connections from a --trusted-proxy begin with a PROXY protocol header (HAProxy send-proxy-v2, "
                   "nginx proxy_protocol): sign-in limits and the audit see the client it names.")
@click.option("--alert-offline-after", type=click.IntRange(60, 30 * 86400), default=900, show_default=True,
              metavar="SECONDS", help="Raise host.offline for a host away this long.")
@click.option("--allow-link-local-alerts", is_flag=True,
              help="Let webhooks and notification channels target 169.254.0.0/16 and fe80::/10 "
                   "(cloud metadata addresses; refused by default).")
@click.option("--database", envvar="RM_DATABASE_URL", default=None, metavar="URL",
              help="postgresql://USER@HOST:PORT/DB: keep every table in PostgreSQL, where several replicas can "
                   "share them (default: SQLite in the data dir). Put a password in ~/.pgpass or RM_DATABASE_URL, "
                   "not here: other users can read a process's arguments.")
@click.option("--master-key-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The master key every replica of one database shares (default: DATA/master.key).")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Replicas on this machine on one port (SO_REUSEPORT); PostgreSQL only.")
def serve(data_dir: Path, listen: str, tls_cert: Path | None, tls_key: Path | None, self_signed: bool,
          insecure_http: bool, public_url: str | None, max_agents: int | None, public_metrics: bool,
          trusted_proxies: tuple[str, ...], proxy_protocol: bool, alert_offline_after: int,
          allow_link_local_alerts: bool, agent_urls: tuple[str, ...], database: str | None,
          master_key_file: Path | None, workers: int) -> None:
    """Run the server."""
    from rm_server.tls import ensure_self_signed, fingerprint_pem, server_context

    setup_logging()
    host, port = _parse_listen(listen)
    if database is not None and not is_postgres(database):
        raise click.BadParameter("give a postgresql://USER@HOST:PORT/DB URL (without it: SQLite in the data dir)",
                                 param_hint="--database")
    if workers > 1 and database is None:
        raise click.UsageError("--workers needs --database: replicas share a PostgreSQL database, not a SQLite file")
    if proxy_protocol and not trusted_proxies:
        raise click.UsageError("--proxy-protocol needs --trusted-proxy IP: the balancer whose connections carry the "
                               "header (from anyone else a header would be a claim)")
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if tls_cert and self_signed:
        raise click.UsageError("use either --tls-cert/--tls-key or --self-signed, not both")
    tls = bool(tls_cert or self_signed)
    if not tls and not _is_loopback(host) and not insecure_http:
        raise click.UsageError(
            f"refusing plain HTTP on {host}: agents' tokens would cross the network in clear. "
            "Use --self-signed or --tls-cert/--tls-key, or --insecure-http if a proxy terminates TLS."
        )
    try:
        urls = tuple(parse_server_urls(agent_urls)) if agent_urls else ()
    except ServerUrlError as exc:
        raise click.BadParameter(str(exc), param_hint="--agent-url") from None
    proxies = set()
    for value in trusted_proxies:
        try:
            proxies.add(str(ipaddress.ip_address(value)))
        except ValueError:
            raise click.BadParameter(f"{value!r} is not an IP address", param_hint="--trusted-proxy") from None
    try:
        if data_dir.exists() and not data_dir.is_dir():
            fail(f"cannot use data directory {data_dir}", "it is not a directory")
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        fail(f"cannot use data directory {data_dir}", exc)
    ssl_ctx, fingerprint = None, None
    try:
        if self_signed:
            # Hosts' curl checks the name in the URL against the certificate: name the public
            # URL's host too, and those of the agent URLs.
            urls_hosts = [urlsplit(u).hostname for u in (public_url or "", *urls)]
            names = [host, socket.gethostname()] + [n for n in urls_hosts if n]
            tls_cert, tls_key = ensure_self_signed(data_dir, names)
        if tls_cert and tls_key:
            ssl_ctx = server_context(tls_cert, tls_key)
            fingerprint = fingerprint_pem(tls_cert.read_bytes())
    except Exception as exc:
        fail(f"cannot use TLS certificate {tls_cert} and key {tls_key}", exc)
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = max_agents or max(16, soft - 500)
    config = ServerConfig(data_dir=data_dir, tls_fingerprint=fingerprint, max_agent_connections=cap,
                          self_signed_cert_pem=tls_cert.read_bytes() if self_signed and tls_cert else None,
                          public_metrics=public_metrics, trusted_proxies=frozenset(proxies),
                          alert_offline_after=float(alert_offline_after),
                          allow_link_local_alerts=allow_link_local_alerts, agent_urls=urls, database_url=database,
                          master_key_file=master_key_file)
    # Listening first: a port in use is said before anything touches the database.
    try:
        socks = listen_sockets(host, port, reuse_port=database is not None, listen=workers == 1)
    except OSError as exc:
        fail(f"cannot listen on {listen}", exc.strerror or why(exc))
    if workers > 1:
        assert database is not None
        _run_workers(config, socks, host, workers, database, "https" if ssl_ctx else "http")
    try:
        with asyncio.Runner() as runner:
            runner.run(_serve(config, socks, host, ssl_ctx, public_url, proxy_protocol))
    except Exception as exc:  # a failure after listening: still one line and a non-zero exit
        fail("stopped", exc)


def _run_workers(config: ServerConfig, reserved: list[socket.socket], host: str, workers: int, database: str,
                 scheme: str) -> NoReturn:
    """The parent of `--workers N`: the port stays reserved (bound, not listening) while N
    children serve it; see workers.py."""
    port = reserved[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    # the master key exists before any child starts, so the children share one
    MasterKey.load_or_create(config.master_key_file or config.data_dir / "master.key")
    command = [sys.executable, *child_argv(sys.argv, f"{shown}:{port}")]
    code = Workers(command, workers, database).run(
        f"rm-server listening on {scheme}://{shown}:{port} ({workers} workers)")
    sys.exit(code)


async def _serve(config: ServerConfig, socks: list[socket.socket], host: str, ssl_ctx: ssl.SSLContext | None,
                 public_url: str | None, proxy_protocol: bool = False) -> None:
    # Imported here, not at the top: the app (aiohttp, every API model, apprise) is most of
    # a second of imports that the admin commands (operator, host, backup-db) never use.
    from aiohttp import web

    from rm_server.app import create_app
    from rm_server.proxy_protocol import ProxiedListener, proxied_remote

    app = create_app(config)
    proxied = ProxiedListener(ssl_ctx, config.trusted_proxies) if proxy_protocol else None
    if proxied is not None:
        app.middlewares.insert(0, proxied_remote(proxied))  # outermost: every later step sees the client
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
    try:
        await runner.setup()
        if proxied is not None:
            assert runner.server is not None  # setup() made it
            proxied.start(runner.server, socks, BACKLOG)
        else:
            for sock in socks:
                await web.SockSite(runner, sock, ssl_context=ssl_ctx, backlog=BACKLOG).start()
    except Exception as exc:
        if database_error(exc) is not None:
            fail(f"cannot open the database {config.database_shown}", exc)
        fail(f"cannot start from {config.data_dir}", exc)
    bound = socks[0].getsockname()[1]
    scheme = "https" if ssl_ctx else "http"
    shown = f"[{host}]" if ":" in host else host
    url = f"{scheme}://{shown}:{bound}"
    config.public_url = public_url or url
    if config.tls_fingerprint:
        print(f"rm-server TLS certificate SHA-256 fingerprint: {config.tls_fingerprint}", file=sys.stderr, flush=True)
    fix_malloc_thresholds()  # socket reads and large bodies: see heap.py
    tune_collector()
    # Objects made at start-up live for the whole run: keep them out of every GC pass.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if os.environ.get(READY_FD):
        signal_ready()  # a worker: its parent says it listens, once for all of them
    else:
        print(f"rm-server listening on {url}", file=sys.stderr, flush=True)
    try:
        await stop.wait()
        logging.getLogger("rm_server").info("stopping: closing agent and operator connections")
    finally:
        if proxied is not None:
            await proxied.close()
        await runner.cleanup()
    logging.getLogger("rm_server").info("stopped")


main.add_command(operator)
main.add_command(host)
main.add_command(migrate_store)


@main.command("backup-db")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@DATA_DIR
@DATABASE
def backup_db(out: Path, data_dir: Path, database: str | None) -> None:
    """Write a consistent copy of the SQLite database to OUT (safe while the server runs)."""
    if database is not None:
        raise click.ClickException("backup-db copies a SQLite database; back up PostgreSQL with pg_dump, or base "
                                   "backups and WAL archiving, and keep the master key beside them "
                                   "(docs/operations.md)")
    db = data_dir / "server.db"
    if not db.exists():
        raise click.ClickException(f"no database at {db}; is --data-dir right?")
    if out.exists():
        raise click.ClickException(f"{out} exists; refusing to overwrite it")

    async def run() -> None:
        store = await Store.open(db)
        try:
            await store.backup_to(out)
        finally:
            await store.close()

    try:
        asyncio.run(run())
    except SchemaTooNew as exc:
        raise click.ClickException(str(exc)) from None
    os.chmod(out, 0o600)
    click.echo(f"database copied to {out}; keep master.key from {data_dir} with it, or stored credentials are lost")


@main.command()
@DATA_DIR
def version(data_dir: Path) -> None:
    """Print the version (--data-dir is accepted for symmetry and ignored)."""
    from rm_core.version import PROTOCOL_VERSION

    click.echo(f"rm-server {__version__} (protocol {PROTOCOL_VERSION})")


if __name__ == "__main__":
    main()
