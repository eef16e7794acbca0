"""Messages between replicas too big for one notification (store/cluster.py: 8,000 bytes):
the body is a row, the notification carries its id. Rows older than a few minutes are
swept by the leader: every reader has had them by then, or was gone."""

from __future__ import annotations

from datetime import datetime

from rm_core.ids import new_id
from rm_server.store.base import Table
from rm_server.store.common import iso


class RelayBodies(Table):
    async def put(self, body: str) -> str:
        body_id = new_id()
        async with self.tx() as tx:
            await tx.execute("INSERT INTO relay_bodies (id, body, created_at) VALUES (?, ?, ?)",
                             (body_id, body, iso(tx.now)))
        return body_id

    async def get(self, body_id: str) -> str | None:
        row = await self.db.fetchone("SELECT body FROM relay_bodies WHERE id = ?", (body_id,))
        return None if row is None else str(row[0])

    async def sweep(self, older_than: datetime) -> int:
        async with self.tx() as tx:
            cur = await tx.execute("DELETE FROM relay_bodies WHERE created_at < ?", (iso(older_than),))
        return cur.rowcount
