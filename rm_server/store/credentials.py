"""Repository credentials per host and slot, sealed: the store never sees plaintext."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rm_server.store.base import Table
from rm_server.store.common import Actor, NotFound, iso


@dataclass(frozen=True)
class StoredCredentials:
    """What may be shown of one slot's credentials: never the sealed secret."""

    url_redacted: str
    key_fingerprint: str
    updated_at: datetime


class Credentials(Table):
    """Sealed repository credentials per host and slot; the store never sees plaintext."""

    async def put(self, actor: Actor, host_id: str, slot: str, url_redacted: str, sealed: bytes,
                  key_fingerprint: str) -> None:
        async with self.tx() as tx:
            if not await tx.fetchone("SELECT 1 FROM hosts WHERE id = ?", (host_id,)):
                raise NotFound("host", host_id)
            await tx.execute(
                "INSERT INTO repo_credentials (host_id, slot, url_redacted, sealed, key_fingerprint, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(host_id, slot) DO UPDATE SET url_redacted = excluded.url_redacted,"
                " sealed = excluded.sealed, key_fingerprint = excluded.key_fingerprint, updated_at = excluded.updated_at",
                (host_id, slot, url_redacted, sealed, key_fingerprint, iso(tx.now)),
            )
            await tx.audit(actor, f"repo.{slot}_credentials", host_id, {"url": url_redacted})

    async def delete(self, actor: Actor, host_id: str, slot: str) -> bool:
        """Remove one slot's credentials; False when there were none."""
        async with self.tx() as tx:
            cur = await tx.execute("DELETE FROM repo_credentials WHERE host_id = ? AND slot = ?", (host_id, slot))
            if cur.rowcount:
                await tx.audit(actor, f"repo.{slot}_credentials_removed", host_id)
        return cur.rowcount > 0

    async def get(self, host_id: str, slot: str) -> StoredCredentials | None:
        row = await self.db.fetchone(
            "SELECT url_redacted, key_fingerprint, updated_at FROM repo_credentials WHERE host_id = ? AND slot = ?",
            (host_id, slot),
        )
        if row is None:
            return None
        return StoredCredentials(row["url_redacted"], row["key_fingerprint"], datetime.fromisoformat(row["updated_at"]))

    async def all_for_host(self, host_id: str) -> dict[str, bytes]:
        rows = await self.db.fetchall("SELECT slot, sealed FROM repo_credentials WHERE host_id = ?", (host_id,))
        return {r["slot"]: r["sealed"] for r in rows}

    async def fingerprints(self) -> list[tuple[str, str, bytes, str]]:
        """(host_id, slot, sealed, key_fingerprint) of every stored credential."""
        rows = await self.db.fetchall("SELECT host_id, slot, sealed, key_fingerprint FROM repo_credentials")
        return [(r["host_id"], r["slot"], r["sealed"], r["key_fingerprint"]) for r in rows]

    async def set_fingerprints(self, changed: list[tuple[str, str, str]]) -> None:
        """Replace fingerprints [(host_id, slot, fingerprint)]; not audited: no secret or setting changes."""
        async with self.tx() as tx:
            await tx.executemany("UPDATE repo_credentials SET key_fingerprint = ? WHERE host_id = ? AND slot = ?",
                                      [(fp, host_id, slot) for host_id, slot, fp in changed])
