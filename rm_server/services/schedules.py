"""Source groups and schedules: every change bumps the host's schedule version (in the
store, same transaction), pushes the new `schedule.set` to the agent and tells operators,
all in one call, so no caller can forget the push.

`send_schedule_sets` is the one place a `schedule.set` frame is built and sent. It leaves by
three paths: a change here (`ScheduleService.push`), a fleet policy (`services/fleet.py`,
paced), and a hello (`services/agent_messages.py`, whose payload comes with the hello batch's
read)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from rm_core import protocol as p
from rm_core.api import Schedule, ScheduleBody, ScheduleList, SourceGroup, SourceGroupBody
from rm_core.cron import next_fires
from rm_server.services.relay import Relay
from rm_server.store import Actor, Store
from rm_server.ws.agent_hub import AgentConnection, AgentHub
from rm_server.ws.event_hub import EventHub


async def send_schedule_sets(payloads: Mapping[str, str], connection: Callable[[str], AgentConnection | None],
                             after_each: Callable[[bool], Awaitable[None]] | None = None) -> int:
    """Send each host's `schedule.set` (host_id -> payload JSON, as SQLite built it) on the
    connection `connection(host_id)` gives; returns how many frames were sent.

    `after_each(sent)` runs after every frame (a fleet push paces itself there). Without it
    nothing here awaits, so a caller holding a corked connection sends its frames in one go."""
    ids = list(payloads)
    sent = 0
    for host_id, frame in zip(ids, p.encode_raw_many("schedule.set", [payloads[h] for h in ids])):
        conn = connection(host_id)
        ok = conn is not None and conn.send_frame(frame)
        sent += ok
        if after_each is not None:
            await after_each(ok)
    return sent


@dataclass(eq=False)
class ScheduleService:
    store: Store
    hub: AgentHub
    events: EventHub
    clock: Callable[[], datetime]
    # what follows a change of a host's source groups (the copy lag: which groups are copied)
    groups_changed: list[Callable[[str], Awaitable[object]]] = field(default_factory=list)
    # the other replicas (PostgreSQL): they push to the agents they hold (FleetService takes it)
    relay: Relay | None = None

    # ------------------------------------------------------------ pushes

    async def push(self, conn: AgentConnection | None, host_ids: list[str]) -> int:
        """Send each host's agent its full schedule set (on `conn`, or on its live connection)."""
        payloads = await self.store.schedule_sets.payloads(host_ids)
        return await send_schedule_sets(payloads, (lambda _: conn) if conn is not None else self.hub.get)

    async def _changed(self, host_id: str, groups: bool = False) -> None:
        if groups:
            for follow in self.groups_changed:
                await follow(host_id)
        conn = self.hub.get(host_id)
        if conn is not None:
            await self.push(conn, [host_id])
        elif self.relay is not None:
            self.relay.send({"t": "schedule", "hosts": [host_id]})
        listing = await self.store.schedules.for_host(host_id)
        crons = [{"cron": s.cron, "timezone": s.timezone} for s in listing.schedules
                 if s.enabled and not s.manual and s.cron]  # as Host.crons has them
        self.events.publish("schedule.updated", {"host_id": host_id, "version": listing.version,
                                                 "applied_version": listing.applied_version, "crons": crons})

    # ------------------------------------------------------------ source groups

    async def create_group(self, actor: Actor, host_id: str, body: SourceGroupBody) -> SourceGroup:
        group = await self.store.schedules.create_group(actor, host_id, body)
        await self._changed(host_id, groups=True)
        return group

    async def update_group(self, actor: Actor, host_id: str, gid: str, body: SourceGroupBody) -> SourceGroup:
        group = await self.store.schedules.update_group(actor, host_id, gid, body)
        await self._changed(host_id, groups=True)
        return group

    async def delete_group(self, actor: Actor, host_id: str, gid: str) -> None:
        await self.store.schedules.delete_group(actor, host_id, gid)
        await self._changed(host_id, groups=True)

    # ------------------------------------------------------------ schedules

    def _with_next(self, schedule: Schedule) -> Schedule:
        if schedule.enabled and not schedule.manual and schedule.cron:
            schedule.next_run = next_fires(schedule.cron, schedule.timezone, self.clock(), 1)[0]
        return schedule

    async def for_host(self, host_id: str) -> ScheduleList:
        listing = await self.store.schedules.for_host(host_id)
        listing.schedules = [self._with_next(s) for s in listing.schedules]
        return listing

    async def get(self, host_id: str, sid: str) -> Schedule:
        return self._with_next(await self.store.schedules.get(host_id, sid))

    async def create(self, actor: Actor, host_id: str, body: ScheduleBody) -> Schedule:
        schedule = await self.store.schedules.create(actor, host_id, body)
        await self._changed(host_id)
        return self._with_next(schedule)

    async def update(self, actor: Actor, host_id: str, sid: str, body: ScheduleBody) -> Schedule:
        schedule = await self.store.schedules.update(actor, host_id, sid, body)
        await self._changed(host_id)
        return self._with_next(schedule)

    async def delete(self, actor: Actor, host_id: str, sid: str) -> None:
        await self.store.schedules.delete(actor, host_id, sid)
        await self._changed(host_id)
