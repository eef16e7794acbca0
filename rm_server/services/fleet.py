"""Fleet policies: one source group and one schedule, both named for the policy, put on
every selected host, then pushed paced by the loop's lag so operators are served meanwhile."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rm_core.fleet import FleetPolicyBody, FleetPolicyResult
from rm_server.services.pacing import InFlight, Pacer
from rm_server.services.relay import Relay
from rm_server.services.schedules import ScheduleService, send_schedule_sets
from rm_server.store import Actor, Store
from rm_server.ws.agent_hub import AgentHub
from rm_server.ws.event_hub import EventHub


def _no_lag() -> float:
    return 0.0


def _nothing() -> int:
    return 0


@dataclass(eq=False)
class FleetService:
    store: Store
    hub: AgentHub
    events: EventHub
    schedules: ScheduleService
    loop_lag: Callable[[], float] = _no_lag  # seconds: the latest rm_loop_lag_seconds sample
    acks_received: Callable[[], int] = _nothing  # schedule.acks read so far (AgentMessages)
    operators_waiting: Callable[[], int] = _nothing  # operators' HTTP requests in flight
    relay: Relay | None = None  # the other replicas: they push to the agents they hold

    def register(self, relay: Relay) -> None:
        """Push schedule sets to the agents this replica holds when another replica changed
        them (one host, or a fleet policy's slice), paced like a push of our own; and after a
        lost wake-up, to every agent here whose schedule version is behind."""
        self.relay = relay
        self.schedules.relay = relay
        relay.handlers["schedule"] = self._push_here
        relay.resync_handlers.append(self._resync)

    async def _push_here(self, message: dict[str, Any]) -> None:
        await self.push_local([str(h) for h in message["hosts"]])

    async def _resync(self) -> None:
        await self.push_local(await self.store.fleet.behind([h for h in list(self.hub.connections)]))

    async def push_local(self, host_ids: list[str]) -> int:
        here = [h for h in host_ids if self.hub.get(h) is not None]
        if not here:
            return 0
        in_flight = InFlight(self.acks_received)
        pacer = Pacer(self.loop_lag, backlog=in_flight, operators=self.operators_waiting)

        async def paced(sent: bool) -> None:
            if sent:
                in_flight.add()
            await pacer.tick()

        payloads = await self.store.schedule_sets.payloads(here)
        return await send_schedule_sets(payloads, self.hub.get, paced)

    async def apply_policy(self, actor: Actor, name: str, body: FleetPolicyBody) -> FleetPolicyResult:
        """Write the policy to every selected host; each slice of hosts is pushed as soon as it
        is committed (agents ack while the next slice is written), a few milliseconds of
        sending at a time, standing back while the loop runs late, while too many pushed
        frames are unanswered and while operators' requests wait (pacing.py)."""
        sel = body.hosts
        host_ids = await self.store.fleet.select_hosts(sel.ids, sel.status, sel.q)
        group = {"includes": body.includes, "excludes": body.excludes, "tag": body.tag or name,
                 "retention": body.retention.model_dump(exclude_none=True)}
        schedule = {"cron": body.cron, "timezone": body.timezone, "enabled": body.enabled}
        in_flight = InFlight(self.acks_received)
        waiting = self.operators_waiting
        pacer = Pacer(self.loop_lag, backlog=in_flight,
                      operators=lambda: max(0, waiting() - 1))  # the PUT running this push counts itself
        pushed = 0

        async def paced(sent: bool) -> None:
            if sent:
                in_flight.add()
            await pacer.tick()

        async def push(committed: list[str]) -> None:
            nonlocal pushed
            online = [h for h in committed if self.hub.get(h) is not None]
            if self.relay is not None and len(online) < len(committed):  # the rest: other replicas' agents
                self.relay.send({"t": "schedule", "hosts": [h for h in committed if self.hub.get(h) is None]})
            payloads = await self.store.schedule_sets.payloads(online)
            pushed += await send_schedule_sets(payloads, self.hub.get, paced)

        await self.store.fleet.apply_policy(actor, name, host_ids, group, schedule, push)
        if self.events.subscribers:
            # each host's new versions and crons, so consoles follow without reloading the fleet
            states = await self.store.fleet.schedule_states(host_ids)
            for host_id in host_ids:  # 19k events to each console: paced like the frames
                self.events.publish("schedule.updated", {"host_id": host_id, **states.get(host_id, {})})
                await pacer.tick()
        return FleetPolicyResult(name=name, hosts=len(host_ids), pushed=pushed)
