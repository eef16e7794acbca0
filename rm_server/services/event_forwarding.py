"""Operators' events between replicas, sent only while another replica has operators watching.

Every event a replica publishes must reach the operators of every replica (docs/protocol.md,
Operator events). Relaying each one whether or not anyone watches was a fifth of the
replicas' CPU in a fleet push: the push's 19k acks publish 19k `schedule.updated`
(docs/benchmarks.md). So a replica says when its first operator starts watching and when its
last one stops (`watch`), and the others relay events only while some replica watches.

Nothing is missed when a replica starts watching, and nothing older is sent: its `watch`
says since when (the wall clock at its first operator's connection). Until it arrives the
others held what they published (the last HOLD_SECONDS, unbuilt); they send it the held
events published since then, addressed to it alone, in order, before anything newer. So an
operator on any replica gets what an operator of one server gets: every event published after
connecting, none from before. Replicas on several machines compare their clocks here: keep
them synchronised (NTP), as PostgreSQL's own replication and TLS already ask.

A lost notification (a listener that reconnected) is made good by asking (`watch.ask`):
every watching replica answers `watch`. A replica that died watching never says its last
operator left: each sweep drops the watchers whose advisory lock went with their session
(`drop_dead`), so events are relayed for nobody for at most a sweep interval.
With SQLite there is one process and none of this is wired (app.py)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
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
        self._held: deque[tuple[float, float, str, Any, datetime]] = deque()  # (monotonic, wall, type, payload, ts)
        self._since = 0.0  # wall clock when this replica's first operator started watching
        events.forward = self._send
        events.hold = self._hold
        events.on_watching = self._announce
        relay.handlers["events"] = lambda m: events.deliver(str(m["f"]).encode(), m.get("k"))
        relay.handlers["watch"] = self._watch
        relay.handlers["watch.ask"] = self._asked
        relay.resync_handlers.append(self._resync)

    def start(self) -> None:
        """Learn who watches now (the replicas started before this one answer)."""
        self.relay.send({"t": "watch.ask"})

    async def drop_dead(self, live_replicas: Callable[[], Awaitable[set[str] | None]]) -> set[str] | None:
        """Forget the watchers that are not among `live_replicas()` (None: not known now),
        and return that answer (the sweep's leader reuses it). Only those known before
        asking: a replica that starts watching while the query runs is alive, whatever the
        answer says."""
        known = set(self.watchers)
        alive = await live_replicas()
        if alive is not None:
            self.watchers -= known - alive
        return alive

    def _send(self, frame: bytes, key: str | None, to: str | None = None) -> None:
        message = {"t": "events", "f": frame.decode(), "k": key}
        if to is not None:  # addressed: the others drop it (relay.py)
            message["to"] = to
        self.relay.send(message)

    # ------------------------------------------------------------ this replica's events

    def _hold(self, type_: str, payload: Any, ts: datetime) -> bool:
        if self.watchers:
            return False
        now = time.monotonic()
        held = self._held
        held.append((now, time.time(), type_, payload, ts))
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
        cutoff, since = time.monotonic() - HOLD_SECONDS, float(message.get("since") or 0)
        for when, wall, type_, payload, ts in self._held:  # what it missed, to it alone, before anything newer
            if when >= cutoff and wall >= since:
                self._send(*self.events.frame_of(type_, payload, ts), to=who)
        self._held.clear()  # from now on every event is relayed to all
        self.watchers.add(who)

    # ------------------------------------------------------------ this replica's operators

    def _announce(self, watching: bool) -> None:
        if watching:
            self._since = time.time()
        self._tell(watching)

    def _tell(self, watching: bool) -> None:
        self.relay.send({"t": "watch", "from": self.relay.replica_id, "on": watching, "since": self._since})

    def _asked(self, message: dict[str, Any] | None = None) -> None:
        if self.events.subscribers:
            self._tell(True)

    async def _resync(self) -> None:
        """Notifications were lost while our listener was away: ours may have been too."""
        self.start()
        self._asked()
