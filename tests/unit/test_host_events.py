"""host.updated is read in batches (one query for many hosts after a restart) and published
in order: the last event of a host always shows what its last change committed."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

from rm_core import protocol as p
from rm_server.services.hosts import HostService
from rm_server.store import Store
from rm_server.ws.event_hub import EventHub

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)
HELLO = p.Hello(protocol_version=2, agent_version="1", hostname="h", os="linux", arch="x86_64")


class Sink:
    """Where an operator's socket would be: the frames in the order published."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def put(self, frame: bytes, key: str | None = None) -> None:
        self.events.append(json.loads(frame)["payload"])


async def _setup(tmp_path, n: int):
    store = await Store.open(tmp_path / "s.db")
    ids = [f"01HOST{i:04d}" for i in range(n)]
    async with store.db.write() as c:
        await c.executemany("INSERT INTO hosts (id, hostname, created_at) VALUES (?, ?, '2026-01-01T00:00:00+00:00')",
                            [(h, f"host-{h[-4:]}") for h in ids])
    events = EventHub(lambda: NOW, 100)
    sink = Sink()
    events.subscribers.add(sink)  # type: ignore[arg-type]
    service = HostService(store, None, events, lambda: NOW, 60)  # type: ignore[arg-type]
    return store, service, sink, ids


async def test_a_storm_of_changes_is_one_read_and_every_host_is_published(tmp_path):
    store, service, sink, ids = await _setup(tmp_path, 1500)
    try:
        reads = []
        get_many = store.hosts.get_many

        async def counted(host_ids):
            reads.append(len(host_ids))
            return await get_many(host_ids)

        store.hosts.get_many = counted
        await store.hosts.record_hellos([(h, HELLO) for h in ids], NOW)
        await asyncio.gather(*(service.changed(h) for h in ids + ["01GONE"]))
        assert reads == [1501]  # one batch (two queries of <= 900 ids inside), not 1501 round trips
        assert [e["id"] for e in sink.events] == ids + ["01GONE"]
        assert all(e["status"] == "online" for e in sink.events[:-1])
        assert sink.events[-1] == {"id": "01GONE", "deleted": True}
        assert sink.events[0] == json.loads((await store.hosts.get(ids[0])).model_dump_json())
    finally:
        await store.close()


async def test_a_change_during_a_read_gets_a_read_of_its_own(tmp_path):
    store, service, sink, (host,) = await _setup(tmp_path, 1)
    try:
        get_many = store.hosts.get_many
        first_read_started, release = asyncio.Event(), asyncio.Event()

        async def slow_first(host_ids):
            if not first_read_started.is_set():
                rows = await get_many(host_ids)  # reads "pending", then is slow to publish
                first_read_started.set()
                await release.wait()
                return rows
            return await get_many(host_ids)

        store.hosts.get_many = slow_first
        first = asyncio.ensure_future(service.changed(host))
        await first_read_started.wait()
        await store.hosts.record_hellos([(host, HELLO)], NOW)  # the host comes online meanwhile
        second = asyncio.ensure_future(service.changed(host))
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(first, second)
        assert [e["status"] for e in sink.events] == ["pending", "online"]  # in order; the last is the truth
    finally:
        await store.close()


async def test_no_subscriber_no_read(tmp_path):
    store, service, sink, (host,) = await _setup(tmp_path, 1)
    try:
        service.events.subscribers.clear()
        store.hosts.get_many = None  # would fail if called
        await service.changed(host)
        assert sink.events == []
    finally:
        await store.close()
