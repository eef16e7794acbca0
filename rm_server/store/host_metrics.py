"""The one read behind /metrics' per-host series: every host with its last backup, its
repository statistics and its last check and drill, in a single query."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from rm_server.store.base import Table
from rm_server.store.db import Row
from rm_server.store.lanes import LaneName

T = TypeVar("T")

# Column order is what rm_server/host_metrics.py reads (rows as tuples: no per-row dict).
_SQL = (
    "SELECT h.id, h.hostname, h.status, h.stale, h.created_at, h.last_success_at, h.last_backup_state,"
    " j.started_at, j.finished_at, j.summary, rs.stats,"
    " (SELECT c.state FROM jobs c WHERE c.host_id = h.id AND c.kind = 'check' AND c.finished_at IS NOT NULL"
    "  AND c.state IN ('succeeded', 'warning', 'failed', 'lost') ORDER BY c.finished_at DESC LIMIT 1),"
    " (SELECT d.state FROM jobs d WHERE d.host_id = h.id AND d.kind = 'drill' AND d.finished_at IS NOT NULL"
    "  AND d.state IN ('succeeded', 'warning', 'failed', 'lost') ORDER BY d.finished_at DESC LIMIT 1),"
    " EXISTS (SELECT 1 FROM drill_policies dp WHERE dp.host_id = h.id AND dp.overdue = 1)"
    " FROM hosts h LEFT JOIN jobs j ON j.id = h.last_backup_job_id LEFT JOIN repo_stats rs ON rs.host_id = h.id"
    " ORDER BY h.id"
)


class HostMetrics(Table):
    async def render(self, convert: Callable[[list[Row]], T]) -> T:
        """`convert(rows)` of the per-host read, run in the reader thread: at 19k hosts
        turning rows into text is most of the work, and there it never holds the event loop.

        On the full host list's reader, not the bulk lane: a rebuild takes that reader for a
        second or so under load, and on the bulk lane agents' token lookups and hello batches
        would wait behind it; operators' paged reads take the least busy reader and so go
        around it. Its 17 MB of text at 19k hosts also lands in the malloc arena the full
        list's buffers already use."""
        result: T = await self.db.fetchall(_SQL, (), LaneName.WHOLE_LIST, convert=convert)
        return result
