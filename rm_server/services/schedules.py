"""Source groups and schedules: every change bumps the host's schedule version (in the
store, same transaction), pushes the new `schedule.set` to the agent and tells operators,
all in one call, so no caller can forget the push."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from rm_core import protocol as p
from rm_core.api import Schedule, ScheduleBody, ScheduleList, SourceGroup, SourceGroupBody
from rm_core.cron import next_fires
from rm_server.store import Actor, Store
from rm_server.ws.agent_hub import AgentConnection, AgentHub
from rm_server.ws.event_hub import EventHub


@dataclass(eq=False)
class ScheduleService:
    store: Store
    hub: AgentHub
    events: EventHub
    clock: Callable[[], datetime]

    # ------------------------------------------------------------ pushes

    async def push(self, conn: AgentConnection | None, host_ids: list[str]) -> int:
        """Send each host's agent its full schedule set (on `conn`, or on its live connection)."""
        sent = 0
        payloads = await self.store.schedule_sets.payloads(host_ids)
        for host_id, frame in zip(payloads, p.encode_raw_many("schedule.set", list(payloads.values()))):
            target = conn or self.hub.get(host_id)
            if target is not None:
                sent += target.send_frame(frame)
        return sent

    async def _changed(self, host_id: str) -> None:
        conn = self.hub.get(host_id)
        if conn is not None:
            await self.push(conn, [host_id])
        listing = await self.store.schedules.list(host_id)
        crons = [{"cron": s.cron, "timezone": s.timezone} for s in listing.schedules
                 if s.enabled and not s.manual and s.cron]  # as Host.crons has them
        self.events.publish("schedule.updated", {"host_id": host_id, "version": listing.version,
                                                 "applied_version": listing.applied_version, "crons": crons})

    # ------------------------------------------------------------ source groups

    async def create_group(self, actor: Actor, host_id: str, body: SourceGroupBody) -> SourceGroup:
        group = await self.store.schedules.create_group(actor, host_id, body)
        await self._changed(host_id)
        return group

    async def update_group(self, actor: Actor, host_id: str, gid: str, body: SourceGroupBody) -> SourceGroup:
        group = await self.store.schedules.update_group(actor, host_id, gid, body)
        await self._changed(host_id)
        return group

    async def delete_group(self, actor: Actor, host_id: str, gid: str) -> None:
        await self.store.schedules.delete_group(actor, host_id, gid)
        await self._changed(host_id)

    # ------------------------------------------------------------ schedules

    def _with_next(self, schedule: Schedule) -> Schedule:
        if schedule.enabled and not schedule.manual and schedule.cron:
            schedule.next_run = next_fires(schedule.cron, schedule.timezone, self.clock(), 1)[0]
        return schedule

    async def list(self, host_id: str) -> ScheduleList:
        listing = await self.store.schedules.list(host_id)
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
