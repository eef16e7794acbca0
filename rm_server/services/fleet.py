"""Fleet policies: one source group and one schedule, both named for the policy, put on
every selected host, then pushed in slices so the loop stays free for other requests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from rm_core.api import FleetPolicyBody, FleetPolicyResult
from rm_server.services.schedules import ScheduleService
from rm_server.store import Actor, Store
from rm_server.ws.agent_hub import AgentHub
from rm_server.ws.event_hub import EventHub

# Hosts told per step of a fleet push; the loop serves other requests between steps.
PUSH_SLICE = 100


@dataclass(eq=False)
class FleetService:
    store: Store
    hub: AgentHub
    events: EventHub
    schedules: ScheduleService

    async def apply_policy(self, actor: Actor, name: str, body: FleetPolicyBody) -> FleetPolicyResult:
        """Write the policy to every selected host, then push the new schedule sets in slices so
        the loop stays free for other requests while thousands of agents are told."""
        sel = body.hosts
        host_ids = await self.store.fleet.select_hosts(sel.ids, sel.status, sel.q)
        group = {"includes": body.includes, "excludes": body.excludes, "tag": body.tag or name,
                 "retention": body.retention.model_dump(exclude_none=True)}
        schedule = {"cron": body.cron, "timezone": body.timezone, "enabled": body.enabled}
        await self.store.fleet.apply_policy(actor, name, host_ids, group, schedule)
        online = [h for h in host_ids if self.hub.get(h) is not None]
        pushed = 0
        for start in range(0, len(online), PUSH_SLICE):
            pushed += await self.schedules.push(None, online[start:start + PUSH_SLICE])
            await asyncio.sleep(0)
        if self.events.subscribers:
            for host_id in host_ids:
                self.events.publish("schedule.updated", {"host_id": host_id})
        return FleetPolicyResult(name=name, hosts=len(host_ids), pushed=pushed)
