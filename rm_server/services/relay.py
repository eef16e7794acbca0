"""Between replicas: what one replica asks of the replica that holds an agent's socket, and
the operators' events every replica must show.

Messages travel as PostgreSQL notifications (store/cluster.py), batched per loop turn; each
is a dict with a type `t`. A notification can be lost (the receiver was down), so nothing
here is the only copy of anything: the queued job, the schedule version, the cancel request
are rows, and a replica that reconnects its listener re-reads them (`resync`). With SQLite
(one process) `clustered` is False and nothing is ever sent.

Types: `dispatch` (a host's queued jobs), `cancel`, `schedule` (push schedule sets),
`config`, `drop` (close a host's socket: it reconnected elsewhere, or was deleted),
`query` / `query.done` (live ls/diff/preview through the holder), `events` (operator
frames) with `watch` / `watch.ask` (who has operators watching: services/event_forwarding.py),
`log` (a job's new log lines are stored: subscribers re-read them)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from rm_core.jobs import JobLogLine
from rm_server.store import Store
from rm_server.store.cluster import Coordination

log = logging.getLogger("rm_server.relay")

Handler = Callable[[dict[str, Any]], Awaitable[None] | None]
FLUSH_SECONDS = 0.02  # messages gathered this long go out together (a push sends thousands)
SPILL_BYTES = 6000  # a message larger than this goes as a row (store.relay_bodies) and its id
LOG_PAGE_LINES = 256  # lines per page of a stored log read for subscribers (~2 MiB at the 8 KiB line cap)


class Relay:
    def __init__(self, coordination: Coordination, store: Store) -> None:
        self.coordination = coordination
        self.store = store
        self.replica_id = coordination.replica_id
        self.clustered: bool = getattr(coordination, "clustered", False)
        self.handlers: dict[str, Handler] = {}
        self.resync_handlers: list[Callable[[], Awaitable[None]]] = []
        self._outbox: list[dict[str, Any]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.coordination.start(self._received, self._resync)

    async def close(self) -> None:
        await self.flush()
        for task in list(self._tasks):
            task.cancel()
        await self.coordination.close()

    # ------------------------------------------------------------ out

    def send(self, message: dict[str, Any]) -> None:
        """Queue a message for the other replicas; it leaves with this turn's others."""
        if not self.clustered:
            return
        self._outbox.append(message)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(FLUSH_SECONDS)
        await self.flush()

    async def flush(self) -> None:
        while self._outbox:
            batch, self._outbox = self._outbox, []
            try:
                await self.coordination.send([await self._fit(m) for m in batch])
            except Exception:  # noqa: BLE001 - the rows are the truth; a lost wake-up is resynced
                log.exception("could not notify the other replicas of %d message(s)", len(batch))

    async def _fit(self, message: dict[str, Any]) -> dict[str, Any]:
        text = json.dumps(message, separators=(",", ":"))
        if len(text) <= SPILL_BYTES:
            return message
        return {"t": message["t"], "to": message.get("to"), "spill": await self.store.relay_bodies.put(text)}

    # ------------------------------------------------------------ in

    def _received(self, message: dict[str, Any]) -> None:
        handler = self.handlers.get(str(message.get("t")))
        if handler is None:
            return
        to = message.get("to")
        if to is not None and to != self.replica_id:
            return
        if "spill" in message:
            self._track(self._unspill(handler, str(message["spill"])))
            return
        result = handler(message)
        if result is not None:
            self._track(result)

    async def _unspill(self, handler: Handler, body_id: str) -> None:
        body = await self.store.relay_bodies.get(body_id)
        if body is None:
            log.warning("a message from another replica is gone from relay_bodies (%s)", body_id)
            return
        result = handler(json.loads(body))
        if result is not None:
            await result

    def _resync(self) -> None:
        for handler in self.resync_handlers:
            self._track(handler())

    def _track(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:  # noqa: BLE001 - one message's failure must not stop the others
                log.exception("handling a message from another replica failed")

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def log_pages(store: Store) -> Callable[[str, int], AsyncIterator[list[JobLogLine]]]:
    """A job's stored log lines after a seq, page by page (an empty page ends it): what a
    subscription's backlog reads, and what a replica reads when another stored new lines."""

    async def pages(job_id: str, after: int) -> AsyncIterator[list[JobLogLine]]:
        while True:
            page = await store.jobs.logs(job_id, after, LOG_PAGE_LINES)
            yield page.lines
            if not page.lines:
                return
            after = page.next_seq

    return pages
