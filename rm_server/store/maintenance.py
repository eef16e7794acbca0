"""Cross-resource reads for the maintenance ticker (services/maintenance.py): cadences,
scheduled groups, last successes and stale flags of the whole fleet (all on the bulk lane,
each turned into Python values in the reader thread: at 19k hosts that is tens of ms)."""

from __future__ import annotations

from typing import Any

from rm_server.store.base import Table
from rm_server.store.common import dt, loads


class Maintenance(Table):
    async def inputs(self) -> list[dict[str, Any]]:
        return await self.db.fetchall(
            "SELECT h.id, h.status, h.maintenance,"
            " EXISTS (SELECT 1 FROM repo_credentials c WHERE c.host_id = h.id AND c.slot = 'admin') AS has_admin,"
            " EXISTS (SELECT 1 FROM repo_credentials c WHERE c.host_id = h.id AND c.slot = 'repo') AS has_repo"
            " FROM hosts h WHERE h.maintenance != '{}'", bulk=True,
            convert=lambda rows: [{"id": r[0], "status": r[1], "maintenance": loads(r[2], {}),
                                   "has_admin": r[3], "has_repo": r[4]} for r in rows])

    async def scheduled_groups(self) -> list[dict[str, Any]]:
        return await self.db.fetchall(
            "SELECT s.host_id, sg.source_group_id, s.cron, s.timezone, s.created_at FROM schedules s"
            " JOIN schedule_groups sg ON sg.schedule_id = s.id WHERE s.enabled <> 0 AND s.manual = 0 AND s.cron IS NOT NULL",
            bulk=True,
            convert=lambda rows: [{"host_id": r[0], "group_id": r[1], "cron": r[2], "timezone": r[3],
                                   "since": dt(r[4])} for r in rows])

    async def last_success_by_group(self) -> dict[str, Any]:
        return await self.db.fetchall(
            "SELECT source_group_id, max(finished_at) FROM jobs WHERE kind = 'backup'"
            " AND state IN ('succeeded', 'warning') AND source_group_id IS NOT NULL GROUP BY source_group_id",
            bulk=True, convert=lambda rows: {r[0]: dt(r[1]) for r in rows})

    async def stale_flags(self) -> dict[str, bool]:
        return await self.db.fetchall("SELECT id, stale FROM hosts", bulk=True,
                                      convert=lambda rows: {r[0]: bool(r[1]) for r in rows})
