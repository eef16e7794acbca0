"""The anomaly tell's rows: a group's recent good backups (the history a new one is judged
against), the anomalies found and their acknowledgement, the repository's size over time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rm_core.history import Anomaly
from rm_core.ids import new_id
from rm_server.store.base import Table, Tx
from rm_server.store.common import SYSTEM, Actor, dt, dumps, iso, loads
from rm_server.store.db import Row

KEEP_SIZES = 400  # repository sizes kept per host (a few a day: months of growth)

_ANOMALY_COLS = ("id, host_id, source_group_id, job_id, detected_at, measure, reason, details, acknowledged_at,"
                 " acknowledged_by, note")


def _anomaly(r: Row) -> Anomaly:
    return Anomaly(id=r["id"], host_id=r["host_id"], source_group_id=r["source_group_id"], job_id=r["job_id"],
                   detected_at=dt(r["detected_at"]), measure=r["measure"], reason=r["reason"],
                   details=loads(r["details"], {}), acknowledged_at=dt(r["acknowledged_at"]),
                   acknowledged_by=r["acknowledged_by"], note=r["note"])


@dataclass
class PastRun:
    job_id: str
    state: str
    finished_at: datetime | None
    summary: dict[str, Any] | None
    repo_size: int | None
    anomaly: str | None  # the reason, when this backup was flagged


class Anomalies(Table):
    async def past_runs(self, group_id: str, limit: int, before_job: str | None = None) -> list[PastRun]:
        """The group's latest successful backups, newest first (without `before_job`, the one
        being judged), each with the anomaly it raised, if any."""
        rows = await self.db.fetchall(
            "SELECT j.id, j.state, j.finished_at, j.summary, j.repo_size,"
            " (SELECT a.reason FROM anomalies a WHERE a.job_id = j.id ORDER BY a.id DESC LIMIT 1) AS reason"
            " FROM jobs j WHERE j.source_group_id = ? AND j.kind = 'backup' AND j.state IN ('succeeded', 'warning')"
            " AND j.finished_at IS NOT NULL AND j.id <> ? ORDER BY j.finished_at DESC, j.id DESC LIMIT ?",
            (group_id, before_job or "", limit))
        return [PastRun(r["id"], r["state"], dt(r["finished_at"]), loads(r["summary"], None), r["repo_size"],
                        r["reason"]) for r in rows]

    async def open_job_ids(self, group_id: str) -> set[str]:
        """Backups of the group flagged and not yet acknowledged: not part of its "usual"."""
        rows = await self.db.fetchall(
            "SELECT job_id FROM anomalies WHERE source_group_id = ? AND acknowledged_at IS NULL", (group_id,))
        return {r[0] for r in rows}

    async def record(self, host_id: str, group_id: str, job_id: str, measure: str, reason: str,
                     details: dict[str, Any], repo_size: int | None) -> Anomaly | None:
        """Store the anomaly of one backup, mark the job `warning` with the reason (keeping any
        error it had) and the host's open anomaly; None when that job was judged before."""
        aid = new_id()
        async with self.tx() as tx:
            job = await tx.fetchone("SELECT state, error, summary FROM jobs WHERE id = ?", (job_id,))
            if job is None or await tx.fetchone("SELECT 1 FROM anomalies WHERE job_id = ?", (job_id,)):
                return None
            summary = loads(job["summary"], {}) or {}
            summary["anomaly"] = details
            error = reason if not job["error"] else f"{job['error']}; {reason}"
            await tx.execute("UPDATE jobs SET state = 'warning', error = ?, summary = ?, repo_size = ? WHERE id = ?",
                             (error, dumps(summary), repo_size, job_id))
            await tx.execute(
                f"INSERT INTO anomalies ({_ANOMALY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL)",
                (aid, host_id, group_id, job_id, iso(tx.now), measure, reason, dumps(details)))
            await self._host_state(tx, host_id)
            await tx.audit(SYSTEM, "backup.anomaly", job_id,
                           {"host_id": host_id, "source_group_id": group_id, "reason": reason})
        return await self.get(aid)

    async def set_repo_size(self, job_id: str, size: int | None) -> None:
        async with self.tx() as tx:
            await tx.execute("UPDATE jobs SET repo_size = ? WHERE id = ?", (size, job_id))

    async def _host_state(self, tx: Tx, host_id: str) -> None:
        """The host row's open anomaly count and newest open reason."""
        count = await tx.fetchone(
            "SELECT count(*) FROM anomalies WHERE host_id = ? AND acknowledged_at IS NULL", (host_id,))
        newest = await tx.fetchone(
            "SELECT reason, detected_at FROM anomalies WHERE host_id = ? AND acknowledged_at IS NULL"
            " ORDER BY id DESC LIMIT 1", (host_id,))
        await tx.execute("UPDATE hosts SET open_anomalies = ?, anomaly_reason = ?, anomaly_at = ? WHERE id = ?",
                         (count[0] if count else 0, newest["reason"] if newest else None,
                          newest["detected_at"] if newest else None, host_id))

    async def get(self, anomaly_id: str) -> Anomaly | None:
        row = await self.db.fetchone(f"SELECT {_ANOMALY_COLS} FROM anomalies WHERE id = ?", (anomaly_id,))
        return None if row is None else _anomaly(row)

    async def of_host(self, host_id: str, *, open_only: bool = False, limit: int = 100) -> list[Anomaly]:
        sql = f"SELECT {_ANOMALY_COLS} FROM anomalies WHERE host_id = ?"
        if open_only:
            sql += " AND acknowledged_at IS NULL"
        rows = await self.db.fetchall(sql + " ORDER BY id DESC LIMIT ?", (host_id, limit))
        return [_anomaly(r) for r in rows]

    async def acknowledge(self, actor: Actor, host_id: str, ids: list[str] | None, group_id: str | None,
                          note: str | None) -> list[Anomaly]:
        """Close the host's open anomalies (those named, or of one group, or all); returns them."""
        async with self.tx() as tx:
            sql = "SELECT id FROM anomalies WHERE host_id = ? AND acknowledged_at IS NULL"
            params: list[Any] = [host_id]
            if group_id:
                sql += " AND source_group_id = ?"
                params.append(group_id)
            found = [r[0] for r in await tx.fetchall(sql, tuple(params))]
            chosen = [i for i in found if ids is None or i in ids]
            for aid in chosen:
                await tx.execute("UPDATE anomalies SET acknowledged_at = ?, acknowledged_by = ?, note = ? WHERE id = ?",
                                 (iso(tx.now), actor.name or actor.kind, note, aid))
            if chosen:
                await self._host_state(tx, host_id)
                await tx.audit(actor, "backup.anomaly_acknowledged", host_id, {"ids": chosen, "note": note})
        out = [await self.get(a) for a in chosen]
        return [a for a in out if a is not None]

    async def paused_groups(self, host_id: str) -> set[str]:
        """Groups of the host whose retention waits for an acknowledgement (pause_forget and an
        open anomaly)."""
        rows = await self.db.fetchall(
            "SELECT DISTINCT a.source_group_id, g.anomaly FROM anomalies a JOIN source_groups g"
            " ON g.id = a.source_group_id WHERE a.host_id = ? AND a.acknowledged_at IS NULL", (host_id,))
        return {r[0] for r in rows if (loads(r[1], {}) or {}).get("pause_forget")}

    # ------------------------------------------------------------ repository sizes

    async def add_size(self, host_id: str, size: int) -> None:
        """One reported repository size (after each repository-changing job); old ones go."""
        async with self.tx() as tx:
            await tx.execute("INSERT INTO repo_sizes (host_id, at, total_size) VALUES (?, ?, ?)",
                             (host_id, iso(tx.now), size))
            cutoff = await tx.fetchone(
                "SELECT at FROM repo_sizes WHERE host_id = ? ORDER BY at DESC LIMIT 1 OFFSET ?",
                (host_id, KEEP_SIZES))
            if cutoff is not None:
                await tx.execute("DELETE FROM repo_sizes WHERE host_id = ? AND at <= ?", (host_id, cutoff[0]))

    async def sizes_since(self, since: datetime) -> dict[str, list[tuple[datetime, int]]]:
        """host_id -> [(at, size)] oldest first, from `since` on, and each host's last size
        before it (so a host quiet since then still has a start)."""
        rows = await self.db.fetchall(
            "SELECT host_id, at, total_size FROM repo_sizes r WHERE at >= ? OR at = (SELECT max(at) FROM repo_sizes"
            " p WHERE p.host_id = r.host_id AND p.at < ?) ORDER BY host_id, at", (iso(since), iso(since)), bulk=True)
        out: dict[str, list[tuple[datetime, int]]] = {}
        for host_id, at, size in rows:
            out.setdefault(host_id, []).append((datetime.fromisoformat(at), int(size)))
        return out
