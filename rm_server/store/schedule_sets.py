"""The `schedule.set` payload every hello and every push sends, built as JSON by SQLite for
many hosts at once."""

from __future__ import annotations

from rm_server.store.base import Table

SLICE = 1000  # hosts per query


class ScheduleSets(Table):
    async def payloads(self, host_ids: list[str]) -> dict[str, str]:
        """host_id -> the `schedule.set` payload as JSON text, built by SQLite.

        This is what every hello and every push sends; at fleet scale building it from
        pydantic models on the event loop was most of a push's cost. `Schedules.schedule_set`
        is the model-built twin, and a test holds the two equal."""
        out: dict[str, str] = {}
        for start in range(0, len(host_ids), SLICE):
            chunk = host_ids[start:start + SLICE]
            rows = await self.db.fetchall(
                f"SELECT h.id, {SCHEDULE_SET_JSON} FROM hosts h WHERE h.id IN ({','.join('?' * len(chunk))})", chunk,
                bulk=True)
            out.update({r[0]: r[1] for r in rows})
        return out


def _bool(col: str) -> str:
    return f"json(CASE WHEN {col} THEN 'true' ELSE 'false' END)"


# A host's schedules, each with its source groups in order, as rm_core.protocol.ScheduleSet.
SCHEDULE_SET_JSON = f"""json_object('version', h.schedule_version, 'schedules', (
  SELECT json(coalesce(json_group_array(json(sj)), '[]')) FROM (
    SELECT json_object('id', s.id, 'name', s.name, 'cron', s.cron, 'timezone', s.timezone,
      'enabled', {_bool('s.enabled')}, 'manual', {_bool('s.manual')},
      'source_groups', (
        SELECT json(coalesce(json_group_array(json(gj)), '[]')) FROM (
          SELECT json_object('id', g.id, 'name', g.name, 'includes', json(g.includes),
            'excludes', json(g.excludes), 'tag', g.tag, 'retention', json(g.retention),
            'pre_hook', g.pre_hook, 'post_hook', g.post_hook) AS gj
          FROM schedule_groups sg JOIN source_groups g ON g.id = sg.source_group_id
          WHERE sg.schedule_id = s.id ORDER BY sg.position))) AS sj
    FROM schedules s WHERE s.host_id = h.id ORDER BY s.name, s.id)))"""
