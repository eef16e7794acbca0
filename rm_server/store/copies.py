"""The second copy: what the copy repository holds (its agent's last report), the host's copy
lag, and what the copy ticker and the after-backup rule read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rm_core.copies import CopyLag
from rm_core.protocol import CopyReport, SnapshotInfo
from rm_server.store.base import Table
from rm_server.store.common import dt, dumps, iso, loads


@dataclass
class CopyCronRow:
    host_id: str
    group_id: str
    cron: str
    timezone: str
    fired_at: datetime | None


class Copies(Table):
    async def put_report(self, host_id: str, report: CopyReport) -> None:
        snaps = [s.model_dump(mode="json") for s in report.snapshots]
        stats = report.stats.model_dump(mode="json") if report.stats is not None else None
        async with self.tx() as tx:
            # stats travel apart from snapshots (a `snapshots` job reports no stats): keep the last known
            await tx.execute(
                "INSERT INTO copy_reports (host_id, snapshots, stats, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (host_id) DO UPDATE SET snapshots = excluded.snapshots,"
                " stats = coalesce(excluded.stats, copy_reports.stats), updated_at = excluded.updated_at",
                (host_id, dumps(snaps), dumps(stats) if stats is not None else None, iso(tx.now)))

    async def snapshots(self, host_id: str) -> list[SnapshotInfo]:
        row = await self.db.fetchone("SELECT snapshots FROM copy_reports WHERE host_id = ?", (host_id,))
        snaps = [SnapshotInfo.model_validate(s) for s in loads(row["snapshots"], [])] if row else []
        return sorted(snaps, key=lambda s: s.time, reverse=True)

    async def stats(self, host_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchone("SELECT stats FROM copy_reports WHERE host_id = ?", (host_id,))
        return None if row is None else loads(row["stats"], None)

    async def forget_report(self, host_id: str) -> None:
        """The copy repository was unset: what it held says nothing about the next one."""
        async with self.tx() as tx:
            await tx.execute("DELETE FROM copy_reports WHERE host_id = ?", (host_id,))

    async def set_lag(self, host_id: str, enabled: bool, lag: CopyLag) -> bool:
        """Store the host's copy lag; True when it changed (the caller announces the host)."""
        values = (int(enabled), iso(lag.behind_since), iso(lag.overdue_at), lag.missing)
        async with self.tx() as tx:
            row = await tx.fetchone(
                "SELECT copy_enabled, copy_behind_since, copy_overdue_at, copy_missing FROM hosts WHERE id = ?",
                (host_id,))
            if row is None or tuple(row) == values:
                return False
            await tx.execute("UPDATE hosts SET copy_enabled = ?, copy_behind_since = ?, copy_overdue_at = ?,"
                             " copy_missing = ? WHERE id = ?", (*values, host_id))
        return True

    async def cron_rows(self) -> list[CopyCronRow]:
        """Every copy-enabled group copied by a cron of its own (the copy ticker's input)."""
        rows = await self.db.fetchall(
            "SELECT host_id, id, copy_cron, copy_timezone, copy_fired_at FROM source_groups"
            " WHERE copy_enabled = 1 AND copy_cron IS NOT NULL", bulk=True)
        return [CopyCronRow(r[0], r[1], r[2], r[3], dt(r[4])) for r in rows]

    async def mark_fired(self, group_id: str, at: datetime) -> None:
        async with self.tx() as tx:
            await tx.execute("UPDATE source_groups SET copy_fired_at = ? WHERE id = ?", (iso(at), group_id))

    async def waiting_copy(self, group_id: str) -> str | None:
        """The group's copy job that has not started yet."""
        row = await self.db.fetchone(
            "SELECT id FROM jobs WHERE source_group_id = ? AND kind = 'copy'"
            " AND state IN ('queued', 'dispatched') LIMIT 1", (group_id,))
        return None if row is None else row["id"]
