"""Server settings: a key → JSON value table (today the webhook URL)."""

from __future__ import annotations

from typing import Any

from rm_server.store.base import Table
from rm_server.store.common import Actor, dumps, loads
from rm_server.store.db import one


class Settings(Table):
    async def get(self, key: str, default: Any = None) -> Any:
        row = await self.db.fetchone("SELECT value FROM settings WHERE key = ?", (key,))
        return default if row is None else loads(row["value"])

    async def put_if_absent(self, key: str, value: Any) -> Any:
        """Store `value` unless the key holds one already; return what the key holds now (the
        first of several replicas starting at once wins, the others read its value)."""
        async with self.tx() as tx:
            await tx.execute("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                             (key, dumps(value)))
            row = one(await tx.fetchone("SELECT value FROM settings WHERE key = ?", (key,)))  # inserted or kept above
        return loads(row["value"])

    async def set(self, actor: Actor, key: str, value: Any, *, audit_value: bool = True, shown: Any = None) -> None:
        """`shown` is what the audit records instead of a value it must not (audit_value=False)."""
        async with self.tx() as tx:
            await tx.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, dumps(value)),
            )
            details = {"value": value} if audit_value else ({"value": shown} if shown is not None else {})
            await tx.audit(actor, "settings.update", key, details)
