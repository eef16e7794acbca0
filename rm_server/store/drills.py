"""Restore drill policies per source group, and what the drill ticker needs to read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rm_core.drills import DrillPolicy
from rm_server.store.base import Table
from rm_server.store.common import Actor, NotFound, dt, dumps, iso, loads
from rm_server.store.dialect import Dialect


def last_verified_sql(d: Dialect) -> str:
    """The newest finished drill of a host, as the host resource's `last_verified` (JSON built
    by the database)."""
    summary = {k: d.jget("j.summary", k) for k in ("files", "bytes", "mismatches")}
    return (f"(SELECT {d.obj(job_id='j.id', state='j.state', finished_at='j.finished_at', source_group_id='j.source_group_id', **summary)}"
            " FROM jobs j WHERE j.host_id = h.id AND j.kind = 'drill' AND j.finished_at IS NOT NULL"
            " AND j.state IN ('succeeded', 'warning', 'failed') ORDER BY j.finished_at DESC LIMIT 1)")


# whether any drill policy of the host is flagged overdue by the ticker (indexed by host_id)
DRILL_OVERDUE_SQL = "EXISTS (SELECT 1 FROM drill_policies dp WHERE dp.host_id = h.id AND dp.overdue <> 0)"


@dataclass
class DrillRow:
    host_id: str
    group_id: str
    policy: DrillPolicy
    updated_at: datetime
    last_fire: datetime | None
    overdue: bool
    last_success: datetime | None  # newest succeeded drill of the group
    online: bool = False  # the host's agent is connected (to any replica)


class Drills(Table):
    async def get(self, host_id: str, group_id: str) -> DrillPolicy:
        """The group's policy; a group never given one has drills off."""
        await self._group(host_id, group_id)
        row = await self.db.fetchone("SELECT policy FROM drill_policies WHERE source_group_id = ?", (group_id,))
        return DrillPolicy.model_validate(loads(row["policy"], {})) if row else DrillPolicy(enabled=False)

    async def put(self, actor: Actor, host_id: str, group_id: str, policy: DrillPolicy) -> DrillPolicy:
        async with self.tx() as tx:
            if await tx.fetchone("SELECT 1 FROM source_groups WHERE id = ? AND host_id = ?", (group_id, host_id)) is None:
                raise NotFound("source group", group_id)
            # last_fire starts at the save: a new cron waits for its next fire, it does not run at once
            await tx.execute(
                "INSERT INTO drill_policies (source_group_id, host_id, policy, updated_at, last_fire)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (source_group_id) DO UPDATE SET policy = excluded.policy,"
                " updated_at = excluded.updated_at, last_fire = excluded.last_fire",
                (group_id, host_id, dumps(policy.model_dump()), iso(tx.now), iso(tx.now)),
            )
            await tx.audit(actor, "drill.policy", group_id, {"host_id": host_id, **policy.model_dump()})
        return policy

    async def _group(self, host_id: str, group_id: str) -> None:
        if await self.db.fetchone("SELECT 1 FROM source_groups WHERE id = ? AND host_id = ?",
                                  (group_id, host_id)) is None:
            raise NotFound("source group", group_id)

    async def last(self, group_id: str) -> dict[str, Any] | None:
        """The group's newest drill job (any state), for the drill resource."""
        row = await self.db.fetchone(
            "SELECT id, state, finished_at, summary, error FROM jobs WHERE source_group_id = ? AND kind = 'drill'"
            " ORDER BY id DESC LIMIT 1", (group_id,))
        if row is None:
            return None
        return {"job_id": row["id"], "state": row["state"], "finished_at": row["finished_at"],
                "summary": loads(row["summary"], None), "error": row["error"]}

    async def ticker_rows(self) -> list[DrillRow]:
        rows = await self.db.fetchall(
            "SELECT d.host_id, d.source_group_id, d.policy, d.updated_at, d.last_fire, d.overdue,"
            " (SELECT max(j.finished_at) FROM jobs j WHERE j.source_group_id = d.source_group_id"
            "  AND j.kind = 'drill' AND j.state = 'succeeded') AS last_success,"
            " (SELECT h.status FROM hosts h WHERE h.id = d.host_id) AS host_status"
            " FROM drill_policies d", bulk=True)
        return [DrillRow(r["host_id"], r["source_group_id"], DrillPolicy.model_validate(loads(r["policy"], {})),
                         datetime.fromisoformat(r["updated_at"]), dt(r["last_fire"]), bool(r["overdue"]), dt(r["last_success"]),
                         r["host_status"] == "online")
                for r in rows]

    async def mark_fired(self, group_id: str, at: datetime) -> None:
        async with self.tx() as tx:
            await tx.execute("UPDATE drill_policies SET last_fire = ? WHERE source_group_id = ?", (iso(at), group_id))

    async def set_overdue(self, group_id: str, overdue: bool) -> bool:
        """True when the flag changed (the caller notifies once per change)."""
        async with self.tx() as tx:
            cur = await tx.execute("UPDATE drill_policies SET overdue = ? WHERE source_group_id = ? AND overdue != ?",
                                   (int(overdue), group_id, int(overdue)))
            return cur.rowcount > 0
