"""Operators' events between replicas, sent only while another replica has operators watching.

Every event a replica publishes must reach the operators of every replica (docs/protocol.md,
Operator events). Relaying each one whether or not anyone watches was a fifth of the
replicas' CPU in a fleet push: the push's 19k acks publish 19k `schedule.updated`
(docs/benchmarks.md). So a replica says when its first operator starts watching and when its
last one stops (`watch`), and the others relay events only while some replica watches.

Nothing is missed when a replica starts watching: until its `watch` arrives, the others held
what they published (the last HOLD_SECONDS, unbuilt), and they send it that first, addressed
to it alone, in order, then every event after. Its operators may so see an event from up to
HOLD_SECONDS before they connected: events carry state (a host's, a job's), and in order per
host and per job they end at the newest, as the list the console loads on connecting does.

A lost notification (a listener that reconnected) is made good by asking (`watch.ask`):
every watching replica answers `watch`. A replica that died watching stays in `watchers`
until its replacement answers otherwise: events are then relayed for nobody, as before.
With SQLite there is one process and none of this is wired (app.py)."""

from __future__ import annotations

import time
from collections import deque
from datetime import datetime
from typing import Any

from rm_server.services.relay import Relay
from rm_server.ws.event_hub import EventHub

HOLD_SECONDS = 5.0  # how far back a replica that starts watching is sent what it missed
HOLD_EVENTS = 50_000  # and at most this many (a fleet push publishes one per host)


class EventForwarding:
    def __init__(self, events: EventHub, relay: Relay) -> None:
        self.events = events
        self.relay = relay
        self.watchers: set[str] = set()  # other replicas with operators watching
        self._held: deque[tuple[float, str, Any, datetime]] = deque()  # (monotonic, type, payload, ts)
        events.forward = lambda frame, key: relay.send({"t": "events", "f": frame.decode(), "k": key})
        events.hold = self._hold
        events.on_watching = self._announce
        relay.handlers["events"] = lambda m: events.deliver(str(m["f"]).encode(), m.get("k"))
        relay.handlers["watch"] = self._watch
        relay.handlers["watch.ask"] = self._asked
        relay.resync_handlers.append(self._resync)

    def start(self) -> None:
        """Learn who watches now (the replicas started before this one answer)."""
        self.relay.send({"t": "watch.ask"})

    # ------------------------------------------------------------ this replica's events

    def _hold(self, type_: str, payload: Any, ts: datetime) -> bool:
        if self.watchers:
            return False
        now = time.monotonic()
        held = self._held
        held.append((now, type_, payload, ts))
        while held and (held[0][0] < now - HOLD_SECONDS or len(held) > HOLD_EVENTS):
            held.popleft()
        return True

    def _watch(self, message: dict[str, Any]) -> None:
        who = str(message.get("from"))
        if not message.get("on"):
            self.watchers.discard(who)
            return
        if who in self.watchers:
            return
        cutoff = time.monotonic() - HOLD_SECONDS
        for when, type_, payload, ts in self._held:  # what it missed, to it alone, before anything newer
            if when >= cutoff:
                frame, key = self.events.frame_of(type_, payload, ts)
                self.relay.send({"t": "events", "f": frame.decode(), "k": key, "to": who})
        self._held.clear()  # from now on every event is relayed to all
        self.watchers.add(who)

    # ------------------------------------------------------------ this replica's operators

    def _announce(self, watching: bool) -> None:
        self.relay.send({"t": "watch", "from": self.relay.replica_id, "on": watching})

    def _asked(self, message: dict[str, Any]) -> None:
        if self.events.subscribers:
            self._announce(True)

    async def _resync(self) -> None:
        """Notifications were lost while our listener was away: ours may have been too."""
        self.relay.send({"t": "watch.ask"})
        if self.events.subscribers:
            self._announce(True)
