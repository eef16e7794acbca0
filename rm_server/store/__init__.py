"""All SQL of the server lives in this package; everything else calls `Store`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from rm_core.ids import new_id
from rm_core.times import utcnow
from rm_server.store.audit import Audit
from rm_server.store.channels import Channels, HostAlerts
from rm_server.store.common import SYSTEM, Actor, Conflict, Invalid, NotFound
from rm_server.store.credentials import Credentials
from rm_server.store.backends import open_database
from rm_server.store.cluster import Coordination, PgCoordination, Solo
from rm_server.store.db import Database, DatabaseUnavailable, Row, SchemaTooNew
from rm_server.store.lanes import LaneName
from rm_server.store.drills import Drills
from rm_server.store.enrollment import Enrollment, TokenRejected
from rm_server.store.fleet import Fleet
from rm_server.store.hellos import Hellos, HelloState
from rm_server.store.host_metrics import HostMetrics
from rm_server.store.hosts import Hosts
from rm_server.store.jobs import JobNotOnHost, Jobs, NewJob
from rm_server.store.maintenance import Maintenance
from rm_server.store.operators import Operators
from rm_server.store.relay_bodies import RelayBodies
from rm_server.store.anomalies import Anomalies
from rm_server.store.copies import Copies
from rm_server.store.reports import Reports
from rm_server.store.rotations import Rotations
from rm_server.store.schedule_sets import ScheduleSets
from rm_server.store.schedules import Schedules
from rm_server.store.settings import Settings

__all__ = [
    "Actor", "Conflict", "DatabaseUnavailable", "Invalid", "NotFound", "SYSTEM", "SchemaTooNew", "Store",
    "TokenRejected", "NewJob",
    "JobNotOnHost", "HelloState",
]



class Store:
    """The server's database, one table class per resource."""

    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        # This process among the replicas of one database: hosts whose agents it holds carry it.
        self.replica_id = new_id()
        self.audit_listeners: list[Callable[[dict[str, Any]], None]] = []
        self.ping_fresh = 1.0  # seconds a successful health read answers for
        self._pinged_at = float("-inf")
        self._ping: asyncio.Future[Row | None] | None = None
        args = (db, clock, self.audit_listeners)
        self.operators = Operators(*args)
        self.enrollment = Enrollment(*args)
        self.hosts = Hosts(*args)
        self.hosts.replica_id = self.replica_id
        self.jobs = Jobs(*args)
        self.schedules = Schedules(*args)
        self.credentials = Credentials(*args)
        self.audit = Audit(*args)
        self.settings = Settings(*args)
        self.reports = Reports(*args)
        self.fleet = Fleet(*args)
        self.schedule_sets = ScheduleSets(*args)
        self.hellos = Hellos(*args)
        self.maintenance = Maintenance(*args)
        self.drills = Drills(*args)
        self.relay_bodies = RelayBodies(*args)
        self.channels = Channels(*args)
        self.host_alerts = HostAlerts(*args)
        self.host_metrics = HostMetrics(*args)
        self.copies = Copies(*args)
        self.anomalies = Anomalies(*args)
        self.rotations = Rotations(*args)

    @classmethod
    async def open(cls, target: str | Path, clock: Callable[[], datetime] = utcnow,
                   application_name: str = "rm-server") -> "Store":
        """A SQLite file (the data dir's server.db) or a postgresql:// URL."""
        return cls(await open_database(target, application_name), clock)

    def coordination(self) -> Coordination:
        """How this process coordinates with other replicas of the same database: through
        PostgreSQL (store/cluster.py), or not at all with SQLite (one process is all)."""
        if self.db.dialect.name != "postgresql":
            return Solo(self.replica_id)
        raw = getattr(self.db.engine, "raw")  # PostgresEngine.raw: a new connection
        replica = self.replica_id
        return PgCoordination(lambda: raw(f"cluster {replica}"), replica, self.hosts.clock)

    async def backup_to(self, out: str | Path) -> None:
        """A consistent copy of a SQLite database while the server keeps writing (SQLite's
        backup API, on the bulk lane). PostgreSQL is backed up with its own tools."""
        backup = getattr(self.db.engine, "backup", None)
        if backup is None:
            raise Conflict("backup-db copies a SQLite database; back up PostgreSQL with pg_dump or its "
                           "own backup tooling (docs/operations.md)")
        target = str(out)
        await self.db.on_lane(LaneName.BULK, lambda conn: backup(conn, target))

    async def close(self) -> None:
        await self.db.close()

    async def ping(self) -> None:
        """A read that fails when the database cannot be read (the health check).

        Probes share one read per `ping_fresh` seconds: a monitor asking every few ms must
        not queue work for the database threads (each read is a hand-over between the loop
        and a reader thread: 1-2 ms of the loop's time on a busy box). A failed read makes
        the next probe read again."""
        now = asyncio.get_running_loop().time()
        if now - self._pinged_at < self.ping_fresh:
            return
        if self._ping is None or self._ping.done():
            self._ping = asyncio.ensure_future(self.db.fetchone("SELECT 1"))
        try:
            await asyncio.shield(self._ping)
        except BaseException:
            self._pinged_at = float("-inf")  # known bad: the next probe reads again
            raise
        self._pinged_at = now
