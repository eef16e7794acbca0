"""Hosts: telling operators a host changed, renaming and deleting hosts, and the sweeper
that flushes heartbeats and marks silent agents offline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rm_core.api import Host
from rm_server.services.batching import GroupCommit
from rm_server.services.relay import Relay
from rm_server.store import Actor, Store
from rm_server.ws.agent_hub import AgentHub
from rm_server.ws.event_hub import EventHub


@dataclass(eq=False)
class HostService:
    store: Store
    hub: AgentHub
    events: EventHub
    clock: Callable[[], datetime]
    offline_after: float
    relay: Relay | None = None  # the other replicas (PostgreSQL)

    def register(self, relay: Relay) -> None:
        self.relay = relay
        relay.handlers["drop"] = self._drop_here

    def _drop_here(self, message: dict[str, Any]) -> None:
        """Another replica says this host's socket here must go (a newer connection reached it,
        or the host was deleted); not an offline: the host is online there, or gone."""
        self.hub.disconnect(str(message["host"]), int(message["code"]), str(message["reason"]))

    def moved(self, host_ids: list[str]) -> None:
        """These hosts' agents said hello here while another replica held them: newest wins."""
        if self.relay is not None:
            for host_id in host_ids:
                self.relay.send({"t": "drop", "host": host_id, "code": 4000,
                                 "reason": "a newer connection of this agent reached another replica"})

    def __post_init__(self) -> None:
        # host.updated reads are batched like a group commit: after a restart 19k hellos each
        # asked the reader for their host, one round trip at a time (the console saw the
        # online events 13-16 s after the last hello).
        self._changes: GroupCommit[str, None] = GroupCommit(self._publish)

    async def changed(self, host_id: str) -> None:
        """Publish the host as it now is (or that it is gone) to operators.

        Returns once published. The host is read by a query that starts after this call (a
        batch of them runs at a time, in order), so the last event of a host always shows
        what its last change committed; changes of one host that wait for the same read
        are published once, with the newest state."""
        if not self.events.subscribers and self.events.forward is None:
            return
        await self._changes.submit(host_id)

    async def _publish(self, host_ids: list[str]) -> list[None]:
        hosts = await self.store.hosts.get_many(host_ids)
        for host_id in dict.fromkeys(host_ids):
            host = hosts.get(host_id)
            self.events.publish("host.updated", host if host is not None else {"id": host_id, "deleted": True})
        return [None] * len(host_ids)

    async def offline(self, host_id: str, last_seen: datetime | None) -> None:
        if await self.store.hosts.set_offline(host_id, last_seen):
            await self.changed(host_id)

    async def rename(self, actor: Actor, host_id: str, hostname: str | None) -> Host:
        host = await self.store.hosts.get(host_id)
        if hostname is not None:
            host = await self.store.hosts.rename(actor, host_id, hostname)
            await self.changed(host_id)
        return host

    async def delete(self, actor: Actor, host_id: str) -> None:
        """Remove the host and its history; its agent token is revoked, so drop its socket too."""
        await self.store.hosts.delete(actor, host_id)
        self.hub.disconnect(host_id, 4001, "host deleted; agent token revoked")
        if self.relay is not None:
            self.relay.send({"t": "drop", "host": host_id, "code": 4001, "reason": "host deleted; agent token revoked"})
        await self.changed(host_id)

    async def sweep(self) -> list[str]:
        """Flush heartbeats to the database and drop agents silent for too long."""
        now = self.clock()
        # Only what changed since the last sweep: at 19k agents, rewriting every row every
        # sweep held the writer for long enough to slow log ingest.
        changed = self.hub.unflushed_heartbeats()
        await self.store.hosts.touch_many([(c.host_id, seen) for c, seen in changed])
        for conn, seen in changed:
            conn.seen_stored = seen
        silent = self.hub.drop_silent(now, self.offline_after)
        for conn in silent:
            await self.offline(conn.host_id, conn.last_seen)
        return [c.host_id for c in silent]

    async def sweep_replicas(self, alive: set[str] | None) -> list[str]:
        """The leader's part of the sweep: hosts held by a replica that died (its advisory lock
        went with its session) are offline; their agents reconnect to the others. Returns them."""
        if alive is None:
            return []
        released = await self.store.hosts.release(alive)
        for host_id in released:
            await self.changed(host_id)
        await self.store.relay_bodies.sweep(self.clock() - timedelta(minutes=5))
        return released
