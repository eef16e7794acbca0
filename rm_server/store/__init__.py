"""All SQL of the server lives in this package; everything else calls `Store`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rm_server.store.common import SYSTEM, Actor, Conflict, Invalid, NotFound, dt, loads
from rm_server.store.db import Database, SchemaTooNew
from rm_server.store.enrollment import Enrollment, TokenRejected
from rm_server.store.fleet import Fleet
from rm_server.store.hosts import Hosts
from rm_server.store.jobs import Jobs, NewJob, UnknownJob
from rm_server.store.misc import Audit, Reports, Settings
from rm_server.store.operators import Operators
from rm_server.store.schedules import Credentials, Schedules

__all__ = [
    "Actor", "Conflict", "Invalid", "NotFound", "SYSTEM", "SchemaTooNew", "Store", "TokenRejected", "NewJob",
    "UnknownJob",
]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Store:
    """The server's database, one repository per resource."""

    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.audit_listeners: list[Callable[[dict[str, Any]], None]] = []
        args = (db, clock, self.audit_listeners)
        self.operators = Operators(*args)
        self.enrollment = Enrollment(*args)
        self.hosts = Hosts(*args)
        self.jobs = Jobs(*args)
        self.schedules = Schedules(*args)
        self.credentials = Credentials(*args)
        self.audit = Audit(*args)
        self.settings = Settings(*args)
        self.reports = Reports(*args)
        self.fleet = Fleet(*args)

    @classmethod
    async def open(cls, path: str | Path, clock: Callable[[], datetime] = utcnow) -> "Store":
        return cls(await Database.open(path), clock)

    async def close(self) -> None:
        await self.db.close()

    # ------------------------------------------------------------ cross-resource reads for the ticker

    async def maintenance_inputs(self) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT h.id, h.status, h.maintenance,"
            " EXISTS (SELECT 1 FROM repo_credentials c WHERE c.host_id = h.id AND c.slot = 'admin') AS has_admin,"
            " EXISTS (SELECT 1 FROM repo_credentials c WHERE c.host_id = h.id AND c.slot = 'repo') AS has_repo"
            " FROM hosts h WHERE h.maintenance != '{}'"
        )
        return [{"id": r["id"], "status": r["status"], "maintenance": loads(r["maintenance"], {}),
                 "has_admin": r["has_admin"], "has_repo": r["has_repo"]} for r in rows]

    async def scheduled_groups(self) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT s.host_id, sg.source_group_id, s.cron, s.timezone, s.created_at FROM schedules s"
            " JOIN schedule_groups sg ON sg.schedule_id = s.id WHERE s.enabled = 1 AND s.manual = 0 AND s.cron IS NOT NULL"
        )
        return [{"host_id": r[0], "group_id": r[1], "cron": r[2], "timezone": r[3], "since": dt(r[4])} for r in rows]

    async def last_success_by_group(self) -> dict[str, Any]:
        rows = await self.db.fetchall(
            "SELECT source_group_id, max(finished_at) FROM jobs WHERE kind = 'backup'"
            " AND state IN ('succeeded', 'warning') AND source_group_id IS NOT NULL GROUP BY source_group_id"
        )
        return {r[0]: dt(r[1]) for r in rows}

    async def stale_flags(self) -> dict[str, bool]:
        rows = await self.db.fetchall("SELECT id, stale FROM hosts")
        return {r[0]: bool(r[1]) for r in rows}
