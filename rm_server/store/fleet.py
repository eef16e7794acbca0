"""Fleet-wide changes: one policy (a source group and a schedule of the same name) written
to many hosts in a few large transactions, and schedule sets read back in bulk."""

from __future__ import annotations

from typing import Any

from rm_core.ids import new_id
from rm_core.protocol import Retention, ScheduleSet, ScheduleSpec, SourceGroupSpec
from rm_server.store.base import Repo
from rm_server.store.common import Actor, dumps, iso, loads

SLICE = 1000  # hosts per transaction: keeps the writer lock short for everyone else


class Fleet(Repo):
    async def select_hosts(self, host_ids: list[str] | None, status: str | None, q: str | None) -> list[str]:
        where, params = [], []
        if status:
            where.append("status = ?")
            params.append(status)
        if q:
            where.append("hostname LIKE ? ESCAPE '\\'")
            params.append("%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        sql = "SELECT id FROM hosts" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        found = [r[0] for r in await self.db.fetchall(sql, params)]
        if host_ids is not None:
            wanted = set(host_ids)
            found = [h for h in found if h in wanted]
        return found

    async def apply_policy(self, actor: Actor, name: str, host_ids: list[str], group: dict[str, Any],
                           schedule: dict[str, Any]) -> None:
        """Upsert source group `name` and schedule `name` (backing up that group) on every host."""
        for start in range(0, len(host_ids), SLICE):
            chunk = host_ids[start:start + SLICE]
            marks = ",".join("?" * len(chunk))
            async with self.tx() as tx:
                groups = {r[1]: r[0] for r in await tx.fetchall(
                    f"SELECT id, host_id FROM source_groups WHERE name = ? AND host_id IN ({marks})", (name, *chunk))}
                scheds = {r[1]: r[0] for r in await tx.fetchall(
                    f"SELECT id, host_id FROM schedules WHERE name = ? AND host_id IN ({marks})", (name, *chunk))}
                gcols = (dumps(group["includes"]), dumps(group["excludes"]), group["tag"], dumps(group["retention"]),
                         group.get("pre_hook"), group.get("post_hook"))
                fresh = [h for h in chunk if h not in groups]
                groups.update({h: new_id() for h in fresh})
                await tx.conn.executemany(
                    "INSERT INTO source_groups (id, host_id, name, includes, excludes, tag, retention, pre_hook,"
                    " post_hook) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [(groups[h], h, name, *gcols) for h in fresh])
                await tx.conn.executemany(
                    "UPDATE source_groups SET includes = ?, excludes = ?, tag = ?, retention = ?, pre_hook = ?,"
                    " post_hook = ? WHERE id = ?", [(*gcols, groups[h]) for h in chunk if h not in fresh])
                scols = (schedule["cron"], schedule["timezone"], int(schedule["enabled"]))
                fresh = [h for h in chunk if h not in scheds]
                scheds.update({h: new_id() for h in fresh})
                await tx.conn.executemany(
                    "INSERT INTO schedules (id, host_id, name, cron, timezone, enabled, manual, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, 0, ?)", [(scheds[h], h, name, *scols, iso(tx.now)) for h in fresh])
                await tx.conn.executemany(
                    "UPDATE schedules SET cron = ?, timezone = ?, enabled = ?, manual = 0 WHERE id = ?",
                    [(*scols, scheds[h]) for h in chunk])
                await tx.conn.executemany("DELETE FROM schedule_groups WHERE schedule_id = ?",
                                          [(scheds[h],) for h in chunk])
                await tx.conn.executemany(
                    "INSERT INTO schedule_groups (schedule_id, source_group_id, position) VALUES (?, ?, 0)",
                    [(scheds[h], groups[h]) for h in chunk])
                await tx.execute(
                    f"UPDATE hosts SET schedule_version = schedule_version + 1 WHERE id IN ({marks})", tuple(chunk))
                await tx.audit(actor, "fleet.policy", name,
                               {"hosts": len(chunk), "cron": schedule["cron"], "includes": group["includes"]})

    async def schedule_sets(self, host_ids: list[str]) -> dict[str, ScheduleSet]:
        """What each host's agent must hold, read with three queries per slice rather than per host."""
        out: dict[str, ScheduleSet] = {}
        for start in range(0, len(host_ids), SLICE):
            chunk = host_ids[start:start + SLICE]
            marks = ",".join("?" * len(chunk))
            versions = await self.db.fetchall(f"SELECT id, schedule_version FROM hosts WHERE id IN ({marks})", chunk)
            groups = {
                r["id"]: SourceGroupSpec(id=r["id"], name=r["name"], includes=loads(r["includes"], []),
                                         excludes=loads(r["excludes"], []), tag=r["tag"],
                                         retention=Retention(**loads(r["retention"], {})), pre_hook=r["pre_hook"],
                                         post_hook=r["post_hook"])
                for r in await self.db.fetchall(f"SELECT * FROM source_groups WHERE host_id IN ({marks})", chunk)
            }
            links: dict[str, list[str]] = {}
            for r in await self.db.fetchall(
                f"SELECT sg.schedule_id, sg.source_group_id FROM schedule_groups sg JOIN schedules s"
                f" ON s.id = sg.schedule_id WHERE s.host_id IN ({marks}) ORDER BY sg.position", chunk):
                links.setdefault(r[0], []).append(r[1])
            specs: dict[str, list[ScheduleSpec]] = {}
            for r in await self.db.fetchall(
                f"SELECT * FROM schedules WHERE host_id IN ({marks}) ORDER BY name, id", chunk):
                specs.setdefault(r["host_id"], []).append(ScheduleSpec(
                    id=r["id"], name=r["name"], cron=r["cron"], timezone=r["timezone"], enabled=bool(r["enabled"]),
                    manual=bool(r["manual"]), source_groups=[groups[g] for g in links.get(r["id"], []) if g in groups]))
            for r in versions:
                out[r[0]] = ScheduleSet(version=r[1], schedules=specs.get(r[0], []))
        return out
