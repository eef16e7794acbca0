"""What agents report about their repositories: snapshots and statistics."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from rm_core.api import Snapshot
from rm_core.enums import JobKind
from rm_core.protocol import RepoStats, SnapshotInfo
from rm_server.store.base import Table
from rm_server.store.common import dt, dumps, iso, loads


# what a snapshot's own summary holds (restic >= 0.17), of a backup job's summary
SNAPSHOT_SUMMARY_FIELDS = frozenset({
    "files_new", "files_changed", "files_unmodified", "dirs_new", "dirs_changed", "dirs_unmodified",
    "data_blobs", "tree_blobs", "data_added", "total_files_processed", "total_bytes_processed"})

SUMMARY_MARGIN = timedelta(days=1)


class Reports(Table):
    """Snapshots and repository statistics, each report replacing the previous one."""

    async def replace_snapshots(self, host_id: str, snapshots: list[SnapshotInfo]) -> None:
        async with self.tx() as tx:
            await tx.execute("DELETE FROM snapshots WHERE host_id = ?", (host_id,))
            await tx.executemany(
                "INSERT INTO snapshots (host_id, id, short_id, time, hostname, paths, tags, summary)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (host_id, id) DO UPDATE SET short_id = excluded.short_id,"
                " time = excluded.time, hostname = excluded.hostname, paths = excluded.paths, tags = excluded.tags,"
                " summary = excluded.summary",
                [(host_id, s.id, s.short_id or s.id[:8], iso(s.time), s.hostname, dumps(s.paths), dumps(s.tags),
                  dumps(s.summary) if s.summary is not None else None) for s in snapshots],
            )

    async def snapshots(self, host_id: str) -> list[Snapshot]:
        rows = await self.db.fetchall("SELECT * FROM snapshots WHERE host_id = ? ORDER BY time DESC", (host_id,))
        snaps = [
            Snapshot(id=r["id"], short_id=r["short_id"], time=dt(r["time"]), hostname=r["hostname"],
                     paths=loads(r["paths"], []), tags=loads(r["tags"], []), summary=loads(r["summary"], None))
            for r in rows
        ]
        unknown = [s for s in snaps if s.summary is None]
        if unknown:
            await self._backup_summaries(host_id, unknown)
        return snaps

    async def _backup_summaries(self, host_id: str, snaps: list[Snapshot]) -> None:
        """restic before 0.17 keeps no summary in a snapshot; the backup job that made it
        reported one (data added, bytes and files processed). Read here, not copied at report
        time, so the order of snapshots.report and job.finished (a reconnect resends the
        job's end first) cannot matter. A job ends after its snapshot's time (both the host's
        clock); a day's margin keeps a clock step from hiding it, and bounds what is read."""
        since = min(s.time for s in snaps) - SUMMARY_MARGIN
        rows = await self.db.fetchall(
            "SELECT summary FROM jobs WHERE host_id = ? AND kind = ? AND finished_at >= ? AND summary IS NOT NULL",
            (host_id, JobKind.backup.value, iso(since)))
        made: dict[str, dict[str, Any]] = {}
        for row in rows:
            summary = loads(row["summary"], None)
            if isinstance(summary, dict) and isinstance(summary.get("snapshot_id"), str) and summary["snapshot_id"]:
                made[summary["snapshot_id"]] = summary
        for snap in snaps:
            # restic 0.14 names the snapshot by its short id in the backup's summary
            found = made.get(snap.id) or made.get(snap.short_id or snap.id[:8])
            if found is not None:
                snap.summary = {k: v for k, v in found.items() if k in SNAPSHOT_SUMMARY_FIELDS}

    async def replace_stats(self, host_id: str, stats: RepoStats) -> None:
        async with self.tx() as tx:
            await tx.execute(
                "INSERT INTO repo_stats (host_id, stats, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT(host_id) DO UPDATE SET stats = excluded.stats, updated_at = excluded.updated_at",
                (host_id, stats.model_dump_json(), iso(tx.now)),
            )

    async def stats(self, host_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchone("SELECT stats FROM repo_stats WHERE host_id = ?", (host_id,))
        return None if row is None else loads(row["stats"])
