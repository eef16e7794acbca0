"""What agents report about their repositories: snapshots and statistics."""

from __future__ import annotations

from typing import Any

from rm_core.api import Snapshot
from rm_core.protocol import RepoStats, SnapshotInfo
from rm_server.store.base import Table
from rm_server.store.common import dt, dumps, iso, loads


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
        return [
            Snapshot(id=r["id"], short_id=r["short_id"], time=dt(r["time"]), hostname=r["hostname"],
                     paths=loads(r["paths"], []), tags=loads(r["tags"], []), summary=loads(r["summary"], None))
            for r in rows
        ]

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
