"""Notification channels (their URLs sealed by the caller) and the alerts raised per host."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from rm_core.ids import new_id
from rm_server.store.base import Table, Tx
from rm_server.store.common import Actor, Conflict, NotFound, dt, dumps, iso, loads
from rm_server.store.db import Row

_COLS = ("id, name, url_redacted, events, min_interval_s, created_at, updated_at, last_sent_at, last_error,"
         " last_error_at, failures")


@dataclass(frozen=True)
class ChannelRow:
    """A stored channel without its URL (`sealed` reads that, for the sender only)."""

    id: str
    name: str
    url_redacted: str
    events: list[str]
    min_interval_s: int
    created_at: datetime
    updated_at: datetime
    last_sent_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    failures: int


def _row(r: Row) -> ChannelRow:
    return ChannelRow(r["id"], r["name"], r["url_redacted"], loads(r["events"], []), r["min_interval_s"],
                      datetime.fromisoformat(r["created_at"]), datetime.fromisoformat(r["updated_at"]), dt(r["last_sent_at"]), r["last_error"],
                      dt(r["last_error_at"]), r["failures"])


class Channels(Table):
    async def all(self) -> list[ChannelRow]:
        return [_row(r) for r in await self.db.fetchall(f"SELECT {_COLS} FROM notification_channels ORDER BY name")]

    async def get(self, channel_id: str) -> ChannelRow:
        row = await self.db.fetchone(f"SELECT {_COLS} FROM notification_channels WHERE id = ?", (channel_id,))
        if row is None:
            raise NotFound("notification channel", channel_id)
        return _row(row)

    async def sealed_one(self, channel_id: str) -> bytes:
        """The channel's sealed URL (what the dispatcher opens to send)."""
        row = await self.db.fetchone("SELECT url_sealed FROM notification_channels WHERE id = ?", (channel_id,))
        if row is None:
            raise NotFound("notification channel", channel_id)
        return bytes(row["url_sealed"])

    async def create(self, actor: Actor, name: str, sealed_for: Callable[[str], bytes], redacted: str,
                     events: list[str],
                     min_interval_s: int) -> ChannelRow:
        """`sealed_for(id)` seals the URL for the new id (the id is the seal's context)."""
        channel_id = new_id()
        async with self.tx() as tx:
            await self._name_free(tx, name, None)
            await tx.execute(
                "INSERT INTO notification_channels (id, name, url_sealed, url_redacted, events, min_interval_s,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (channel_id, name, sealed_for(channel_id), redacted, dumps(events), min_interval_s, iso(tx.now),
                 iso(tx.now)))
            # The URL is a secret: the audit keeps what everyone may see of it.
            await tx.audit(actor, "channel.create", channel_id, {"name": name, "url": redacted, "events": events,
                                                                  "min_interval_s": min_interval_s})
        return await self.get(channel_id)

    async def update(self, actor: Actor, channel_id: str, name: str, sealed: bytes, redacted: str,
                     events: list[str], min_interval_s: int) -> ChannelRow:
        async with self.tx() as tx:
            await self._name_free(tx, name, channel_id)
            cur = await tx.execute(
                "UPDATE notification_channels SET name = ?, url_sealed = ?, url_redacted = ?, events = ?,"
                " min_interval_s = ?, updated_at = ? WHERE id = ?",
                (name, sealed, redacted, dumps(events), min_interval_s, iso(tx.now), channel_id))
            if cur.rowcount == 0:
                raise NotFound("notification channel", channel_id)
            await tx.audit(actor, "channel.update", channel_id, {"name": name, "url": redacted, "events": events,
                                                                  "min_interval_s": min_interval_s})
        return await self.get(channel_id)

    @staticmethod
    async def _name_free(tx: Tx, name: str, channel_id: str | None) -> None:
        row = await tx.fetchone("SELECT id FROM notification_channels WHERE name = ?", (name,))
        if row is not None and row["id"] != channel_id:
            raise Conflict(f"a notification channel named {name!r} already exists", {"field": "name"})

    async def delete(self, actor: Actor, channel_id: str) -> None:
        async with self.tx() as tx:
            cur = await tx.execute("DELETE FROM notification_channels WHERE id = ?", (channel_id,))
            if cur.rowcount == 0:
                raise NotFound("notification channel", channel_id)
            await tx.audit(actor, "channel.delete", channel_id)

    async def record_send(self, channel_id: str, error: str | None) -> None:
        """One send's outcome: a success clears the run of failures, a failure keeps its error."""
        async with self.tx() as tx:
            if error is None:
                await tx.execute("UPDATE notification_channels SET last_sent_at = ?, failures = 0 WHERE id = ?",
                                 (iso(tx.now), channel_id))
            else:
                await tx.execute("UPDATE notification_channels SET last_error = ?, last_error_at = ?,"
                                 " failures = failures + 1 WHERE id = ?", (error, iso(tx.now), channel_id))



class HostAlerts(Table):
    """Alerts raised per host that must not be raised again while the condition lasts."""

    async def offline_unalerted(self, cutoff: datetime) -> list[tuple[str, str, datetime]]:
        """(host id, hostname, last seen) of hosts offline since before `cutoff` whose
        host.offline alert has not been raised yet."""
        rows = await self.db.fetchall(
            "SELECT h.id, h.hostname, h.last_seen FROM hosts h WHERE h.status = 'offline' AND h.last_seen < ?"
            " AND NOT EXISTS (SELECT 1 FROM host_alerts a WHERE a.host_id = h.id AND a.event = 'host.offline')",
            (iso(cutoff),), bulk=True)
        return [(r["id"], r["hostname"], datetime.fromisoformat(r["last_seen"])) for r in rows]

    async def mark_raised(self, event: str, host_ids: list[str]) -> None:
        async with self.tx() as tx:
            await tx.executemany(
                "INSERT INTO host_alerts (host_id, event, raised_at) VALUES (?, ?, ?)"
                " ON CONFLICT (host_id, event) DO NOTHING", [(h, event, iso(tx.now)) for h in host_ids])

    async def clear_online(self) -> None:
        """Hosts back online may raise host.offline again the next time they go away."""
        back = ("FROM host_alerts WHERE event = 'host.offline' AND host_id IN"
                " (SELECT id FROM hosts WHERE status = 'online')")
        if not await self.db.fetchall(f"SELECT 1 {back} LIMIT 1", bulk=True):
            return  # the usual minute: no write transaction at all
        async with self.tx() as tx:
            await tx.execute(f"DELETE {back}")
