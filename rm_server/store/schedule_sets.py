"""The `schedule.set` payload every hello and every push sends, built as JSON by the
database for many hosts at once."""

from __future__ import annotations

import functools

from rm_server.store.base import Table
from rm_server.store.dialect import Dialect

SLICE = 1000  # hosts per query


class ScheduleSets(Table):
    async def payloads(self, host_ids: list[str]) -> dict[str, str]:
        """host_id -> the `schedule.set` payload as JSON text, built by the database.

        This is what every hello and every push sends; at fleet scale building it from
        pydantic models on the event loop was most of a push's cost. `Schedules.schedule_set`
        is the model-built twin, and a test holds the two equal."""
        out: dict[str, str] = {}
        sql = schedule_set_json(self.d)
        for start in range(0, len(host_ids), SLICE):
            chunk = host_ids[start:start + SLICE]
            rows = await self.db.fetchall(
                f"SELECT h.id, {sql} FROM hosts h WHERE h.id IN ({','.join('?' * len(chunk))})", chunk, bulk=True)
            out.update({r[0]: r[1] for r in rows})
        return out


@functools.cache
def schedule_set_json(d: Dialect) -> str:
    """A host's schedules, each with its source groups in order, as rm_core.protocol.ScheduleSet
    (JSON text; the row's host is `h`)."""
    group = d.obj(id="g.id", name="g.name", includes=d.js("g.includes"), excludes=d.js("g.excludes"), tag="g.tag",
                  retention=d.js("g.retention"), pre_hook="g.pre_hook", post_hook="g.post_hook")
    groups = (f"(SELECT {d.agg('gj', 'pos')} FROM (SELECT {group} AS gj, sg.position AS pos"
              " FROM schedule_groups sg JOIN source_groups g ON g.id = sg.source_group_id"
              " WHERE sg.schedule_id = s.id ORDER BY sg.position) AS gs)")
    schedule = d.obj(id="s.id", name="s.name", cron="s.cron", timezone="s.timezone", enabled=d.jbool("s.enabled <> 0"),
                     manual=d.jbool("s.manual <> 0"), source_groups=groups)
    schedules = (f"(SELECT {d.agg('sj', 'sname, sid')} FROM (SELECT {schedule} AS sj, s.name AS sname, s.id AS sid"
                 " FROM schedules s WHERE s.host_id = h.id ORDER BY s.name, s.id) AS ss)")
    return d.text(d.obj(version="h.schedule_version", schedules=schedules))
