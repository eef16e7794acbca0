"""Settings the server is built with; the CLI and tests fill the same dataclass."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rm_core.times import utcnow


@dataclass
class ServerConfig:
    data_dir: Path
    # The URL agents and the TUI reach this server at; used in install commands.
    public_url: str = "http://127.0.0.1:8950"
    # The URLs new agents are enrolled with (--agent-url: one per replica, or a load
    # balancer's); empty: the public URL alone.
    agent_urls: tuple[str, ...] = ()
    clock: Callable[[], datetime] = utcnow
    hello_timeout: float = 10.0
    offline_after: float = 90.0
    sweep_interval: float = 10.0
    maintenance_interval: float = 60.0
    session_ttl_hours: float = 12.0
    max_agent_connections: int = 19_500
    agent_queue_size: int = 1000
    # Frames an operator's queue may hold; its memory is bounded by operator_queue_bytes. A
    # restart or reconnect storm queues one host.updated per host (latest wins per host), so
    # the count must exceed the fleet: at 2,000 a console reading a 5k storm was closed (1008).
    operator_queue_size: int = 50_000
    login_failures_allowed: int = 10
    login_window_seconds: float = 300.0
    # Failed sign-ins listed one by one in the audit per window; beyond, only counted in one
    # summary entry when the window ends (services/sign_ins.py).
    sign_in_audit_per_window: int = 60
    sign_in_audit_window_seconds: float = 60.0
    # Proxies whose X-Forwarded-For is believed (rate limits key on the client address);
    # empty: the header is ignored, since any client can send it.
    trusted_proxies: frozenset[str] = frozenset()
    # /metrics shows fleet size and job counts: it needs the metrics token or a session
    # unless the admin opens it with --public-metrics.
    public_metrics: bool = False
    # Operator events sockets: bytes queued for one slow reader before it is dropped, and
    # sockets one account (all its sessions: sessions are free to make) and the whole server
    # may hold open at once; with the byte bound, at most 32 x 8 MiB queued in all.
    operator_queue_bytes: int = 8 * 1024 * 1024
    max_events_per_account: int = 4
    max_events_sockets: int = 32
    max_body_bytes: int = 1024 * 1024
    tls_fingerprint: str | None = None
    # Set only for --self-signed: install commands then carry this certificate and its key pin.
    self_signed_cert_pem: bytes | None = None
    # Alerts (services/alerts.py): how long the first event of a kind waits for others before
    # its digest goes (Alertmanager's group_wait), how long one send may take, the first retry
    # delay after a failed send (doubling up to 15 min), how long a host must be offline
    # before host.offline is raised, and whether alert targets may be link-local addresses.
    alert_group_wait: float = 30.0
    alert_send_timeout: float = 30.0
    alert_retry_base: float = 10.0
    alert_offline_after: float = 900.0
    allow_link_local_alerts: bool = False
    # /metrics' per-host series are rebuilt at most this often (one query; ~0.1-0.2 s at 19k hosts).
    host_metrics_ttl: float = 10.0
    # Background tasks can be turned off so a test drives them by hand with its own clock.
    run_background: bool = True
    # postgresql://… to keep every table in PostgreSQL (replicas share it); None: SQLite in the data dir.
    database_url: str | None = None
    # The master key of every replica of one database (the first one's DATA/master.key); None: DATA/master.key.
    master_key_file: Path | None = None

    @property
    def db_path(self) -> Path:
        return self.data_dir / "server.db"

    @property
    def database_shown(self) -> str:
        """The database as messages may name it: the file, or the URL without its password."""
        if self.database_url is None:
            return str(self.db_path)
        from rm_server.store.backends import shown

        return shown(self.database_url)

    @property
    def database(self) -> str | Path:
        """What Store.open() is given: the PostgreSQL URL, or the SQLite file."""
        return self.database_url or self.db_path


def data_dir_default() -> str:
    return os.environ.get("RM_DATA_DIR") or os.path.expanduser("~/.local/share/restic-manager")
