"""The audit log: read page by page; rows are written by each change's own transaction (Tx.audit)."""

from __future__ import annotations

from typing import Any

from rm_core.api import AuditEntry
from rm_server.store.base import Table
from rm_server.store.common import Actor, dt, loads


class Audit(Table):
    async def page(self, *, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
        sql, params = "SELECT * FROM audit", []
        if before is not None:
            sql += " WHERE id < ?"
            params.append(before)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        rows = await self.db.fetchall(sql, params)
        return [
            AuditEntry(id=r["id"], ts=dt(r["ts"]), actor_kind=r["actor_kind"], actor_id=r["actor_id"],
                       actor_name=r["actor_name"], action=r["action"], target=r["target"],
                       details=loads(r["details"], {}))
            for r in rows
        ]

    async def record(self, actor: Actor, action: str, target: str | None, details: dict[str, Any] | None = None) -> None:
        async with self.tx() as tx:
            await tx.audit(actor, action, target, details)
