"""What the server needs to answer many agents' hellos, read in a few queries per batch.

After a server restart every agent says hello within seconds; reading the schedule set,
bandwidth, credentials and job flags one host at a time was ~6 reader round trips per agent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rm_server.store.base import Table
from rm_server.store.jobs import COPY_PARAMS
from rm_server.store.common import loads
from rm_server.store.schedule_sets import schedule_set_json

SLICE = 900  # host ids per query (SQLite's default limit of variables is 999 on old builds)


@dataclass
class HelloState:
    schedule_set: str  # the schedule.set payload as JSON text
    bandwidth: dict[str, Any]
    sealed: dict[str, bytes] = field(default_factory=dict)  # credential slot -> sealed blob
    active_jobs: bool = False  # dispatched or running: the hello must reconcile them
    queued_jobs: bool = False
    has_init_job: bool = False


class Hellos(Table):
    async def states(self, host_ids: list[str]) -> dict[str, HelloState]:
        """host_id -> HelloState for the hosts that exist."""
        out: dict[str, HelloState] = {}
        ids = list(dict.fromkeys(host_ids))
        for start in range(0, len(ids), SLICE):
            chunk = ids[start:start + SLICE]
            marks = ",".join("?" * len(chunk))
            rows = await self.db.fetchall(
                f"SELECT h.id, {schedule_set_json(self.d)}, h.bandwidth,"
                " EXISTS(SELECT 1 FROM jobs j WHERE j.host_id = h.id AND j.state IN ('dispatched', 'running')),"
                " EXISTS(SELECT 1 FROM jobs j WHERE j.host_id = h.id AND j.state = 'queued'),"
                " EXISTS(SELECT 1 FROM jobs j WHERE j.host_id = h.id AND j.kind = 'init'"
                f" AND j.params NOT LIKE '{COPY_PARAMS}')"
                f" FROM hosts h WHERE h.id IN ({marks})", chunk, bulk=True)
            for r in rows:
                out[r[0]] = HelloState(r[1], loads(r[2], {}), {}, bool(r[3]), bool(r[4]), bool(r[5]))
            creds = await self.db.fetchall(
                f"SELECT host_id, slot, sealed FROM repo_credentials WHERE host_id IN ({marks})", chunk, bulk=True)
            for host_id, slot, sealed in creds:
                if host_id in out:
                    out[host_id].sealed[slot] = sealed
        return out
