"""Source groups and schedules. Every mutation bumps the host's schedule version in the
same transaction, so the version always describes exactly what the agent should hold."""

from __future__ import annotations

from datetime import datetime

from rm_core.anomaly import AnomalyPolicy
from rm_core.api import Schedule, ScheduleBody, ScheduleList, SourceGroup, SourceGroupBody
from rm_core.copies import CopyPolicy
from rm_core.protocol import Retention, ScheduleSet, ScheduleSpec, SourceGroupSpec
from rm_core.ids import new_id
from rm_server.store.base import Table, Tx
from rm_server.store.common import Actor, Conflict, NotFound, dumps, iso, loads
from rm_server.store.db import Row


def _group(row: Row) -> SourceGroup:
    copy = CopyPolicy.model_construct(enabled=bool(row["copy_enabled"]), timezone=row["copy_timezone"],
                                      cron=row["copy_cron"], max_lag_hours=row["copy_max_lag_hours"])
    return SourceGroup(
        id=row["id"], host_id=row["host_id"], name=row["name"], includes=loads(row["includes"], []),
        excludes=loads(row["excludes"], []), tag=row["tag"], retention=Retention(**loads(row["retention"], {})),
        pre_hook=row["pre_hook"], post_hook=row["post_hook"], copy=copy,
        anomaly=AnomalyPolicy.model_validate(loads(row["anomaly"], {})),
    )


def _policy_values(body: SourceGroupBody) -> tuple[int, str | None, str, int, str]:
    """The copy policy's columns, and the anomaly policy's JSON column after them."""
    c = body.copy_
    return (int(c.enabled), c.cron, c.timezone, c.max_lag_hours, body.anomaly.model_dump_json())


async def _bump(tx: Tx, host_id: str) -> None:
    cur = await tx.execute("UPDATE hosts SET schedule_version = schedule_version + 1 WHERE id = ?", (host_id,))
    if cur.rowcount == 0:
        raise NotFound("host", host_id)


class Schedules(Table):
    # ------------------------------------------------------------ source groups

    async def groups(self, host_id: str) -> list[SourceGroup]:
        rows = await self.db.fetchall("SELECT * FROM source_groups WHERE host_id = ? ORDER BY name", (host_id,))
        return [_group(r) for r in rows]

    async def group(self, host_id: str, gid: str) -> SourceGroup:
        row = await self.db.fetchone("SELECT * FROM source_groups WHERE id = ? AND host_id = ?", (gid, host_id))
        if row is None:
            raise NotFound("source group", gid)
        return _group(row)

    async def _name_free(self, tx: Tx, host_id: str, name: str, gid: str | None) -> None:
        row = await tx.fetchone(
            "SELECT id FROM source_groups WHERE host_id = ? AND name = ? AND (CAST(? AS TEXT) IS NULL OR id <> ?)",
            (host_id, name, gid, gid)
        )
        if row is not None:
            raise Conflict(f"a source group named {name!r} already exists on this host",
                           {"field": "name", "source_group_id": row["id"]})

    async def create_group(self, actor: Actor, host_id: str, body: SourceGroupBody) -> SourceGroup:
        gid = new_id()
        async with self.tx() as tx:
            await _bump(tx, host_id)
            await self._name_free(tx, host_id, body.name, None)
            # copy_fired_at starts at the save: a new copy cron waits for its next fire
            await tx.execute(
                "INSERT INTO source_groups (id, host_id, name, includes, excludes, tag, retention, pre_hook, post_hook,"
                " copy_enabled, copy_cron, copy_timezone, copy_max_lag_hours, anomaly, copy_fired_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (gid, host_id, body.name, dumps(body.includes), dumps(body.excludes), body.tag or body.name,
                 body.retention.model_dump_json(), body.pre_hook, body.post_hook, *_policy_values(body), iso(tx.now)),
            )
            await tx.audit(actor, "source_group.create", gid, {"host_id": host_id, "name": body.name})
        return await self.group(host_id, gid)

    async def update_group(self, actor: Actor, host_id: str, gid: str, body: SourceGroupBody) -> SourceGroup:
        async with self.tx() as tx:
            await _bump(tx, host_id)
            await self._name_free(tx, host_id, body.name, gid)
            old = await tx.fetchone("SELECT copy_cron, copy_timezone FROM source_groups WHERE id = ? AND host_id = ?",
                                    (gid, host_id))
            if old is None:
                raise NotFound("source group", gid)
            # a changed copy cron starts counting at the save, like a new one
            moved = (old["copy_cron"], old["copy_timezone"]) != (body.copy_.cron, body.copy_.timezone)
            await tx.execute(
                "UPDATE source_groups SET name = ?, includes = ?, excludes = ?, tag = ?, retention = ?, pre_hook = ?,"
                " post_hook = ?, copy_enabled = ?, copy_cron = ?, copy_timezone = ?, copy_max_lag_hours = ?, anomaly = ?,"
                " copy_fired_at = CASE WHEN ? = 1 THEN ? ELSE copy_fired_at END WHERE id = ? AND host_id = ?",
                (body.name, dumps(body.includes), dumps(body.excludes), body.tag or body.name,
                 body.retention.model_dump_json(), body.pre_hook, body.post_hook, *_policy_values(body),
                 int(moved), iso(tx.now), gid, host_id),
            )
            await tx.audit(actor, "source_group.update", gid, {"host_id": host_id, "name": body.name})
        return await self.group(host_id, gid)

    async def delete_group(self, actor: Actor, host_id: str, gid: str) -> None:
        async with self.tx() as tx:
            row = await tx.fetchone("SELECT name FROM source_groups WHERE id = ? AND host_id = ?", (gid, host_id))
            if row is None:
                raise NotFound("source group", gid)
            users = await tx.fetchall(
                "SELECT s.id, s.name FROM schedule_groups sg JOIN schedules s ON s.id = sg.schedule_id"
                " WHERE sg.source_group_id = ? ORDER BY s.name", (gid,),
            )
            if users:
                raise Conflict(
                    f"source group {row['name']!r} is used by {len(users)} schedule(s); remove it from them first",
                    {"schedules": [{"id": u["id"], "name": u["name"]} for u in users]},
                )
            await _bump(tx, host_id)
            await tx.execute("DELETE FROM source_groups WHERE id = ?", (gid,))
            await tx.audit(actor, "source_group.delete", gid, {"host_id": host_id, "name": row["name"]})

    # ------------------------------------------------------------ schedules

    async def _schedules(self, host_id: str, sid: str | None = None) -> list[Schedule]:
        sql = "SELECT * FROM schedules WHERE host_id = ?"
        params = [host_id]
        if sid is not None:
            sql += " AND id = ?"
            params.append(sid)
        rows = await self.db.fetchall(sql + " ORDER BY name, id", params)
        links = await self.db.fetchall(
            "SELECT sg.schedule_id, sg.source_group_id FROM schedule_groups sg JOIN schedules s ON s.id = sg.schedule_id"
            " WHERE s.host_id = ? ORDER BY sg.position", (host_id,),
        )
        groups: dict[str, list[str]] = {}
        for link in links:
            groups.setdefault(link[0], []).append(link[1])
        return [
            Schedule(id=r["id"], host_id=r["host_id"], name=r["name"], cron=r["cron"], timezone=r["timezone"],
                     enabled=bool(r["enabled"]), manual=bool(r["manual"]), source_group_ids=groups.get(r["id"], []))
            for r in rows
        ]

    async def for_host(self, host_id: str) -> ScheduleList:
        row = await self.db.fetchone(
            "SELECT schedule_version, applied_schedule_version FROM hosts WHERE id = ?", (host_id,)
        )
        if row is None:
            raise NotFound("host", host_id)
        return ScheduleList(version=row[0], applied_version=row[1], schedules=await self._schedules(host_id))

    async def get(self, host_id: str, sid: str) -> Schedule:
        found = await self._schedules(host_id, sid)
        if not found:
            raise NotFound("schedule", sid)
        return found[0]

    async def _link_groups(self, tx: Tx, host_id: str, sid: str, group_ids: list[str]) -> None:
        for gid in group_ids:  # ScheduleBody refused a group listed twice
            if not await tx.fetchone("SELECT 1 FROM source_groups WHERE id = ? AND host_id = ?", (gid, host_id)):
                # 404 as for any other resource a request names that is not there (or not this host's)
                raise NotFound("source group of this host", gid)
        await tx.execute("DELETE FROM schedule_groups WHERE schedule_id = ?", (sid,))
        await tx.executemany(
            "INSERT INTO schedule_groups (schedule_id, source_group_id, position) VALUES (?, ?, ?)",
            [(sid, gid, i) for i, gid in enumerate(group_ids)],
        )

    async def create(self, actor: Actor, host_id: str, body: ScheduleBody) -> Schedule:
        sid = new_id()
        async with self.tx() as tx:
            await _bump(tx, host_id)
            await tx.execute(
                "INSERT INTO schedules (id, host_id, name, cron, timezone, enabled, manual, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (sid, host_id, body.name, body.cron, body.timezone, int(body.enabled), int(body.manual), iso(tx.now)),
            )
            await self._link_groups(tx, host_id, sid, body.source_group_ids)
            await tx.audit(actor, "schedule.create", sid, {"host_id": host_id, "name": body.name, "cron": body.cron})
        return await self.get(host_id, sid)

    async def update(self, actor: Actor, host_id: str, sid: str, body: ScheduleBody) -> Schedule:
        async with self.tx() as tx:
            await _bump(tx, host_id)
            cur = await tx.execute(
                "UPDATE schedules SET name = ?, cron = ?, timezone = ?, enabled = ?, manual = ? WHERE id = ? AND host_id = ?",
                (body.name, body.cron, body.timezone, int(body.enabled), int(body.manual), sid, host_id),
            )
            if cur.rowcount == 0:
                raise NotFound("schedule", sid)
            await self._link_groups(tx, host_id, sid, body.source_group_ids)
            await tx.audit(actor, "schedule.update", sid, {"host_id": host_id, "name": body.name, "cron": body.cron})
        return await self.get(host_id, sid)

    async def delete(self, actor: Actor, host_id: str, sid: str) -> None:
        async with self.tx() as tx:
            row = await tx.fetchone("SELECT name FROM schedules WHERE id = ? AND host_id = ?", (sid, host_id))
            if row is None:
                raise NotFound("schedule", sid)
            await _bump(tx, host_id)
            await tx.execute("DELETE FROM schedules WHERE id = ?", (sid,))
            await tx.audit(actor, "schedule.delete", sid, {"host_id": host_id, "name": row["name"]})

    async def schedule_set(self, host_id: str) -> ScheduleSet:
        """What the agent must hold: the version and every schedule with its full source groups."""
        listing = await self.for_host(host_id)
        groups = {g.id: g for g in await self.groups(host_id)}
        specs = [
            ScheduleSpec(
                id=s.id, name=s.name, cron=s.cron, timezone=s.timezone, enabled=s.enabled, manual=s.manual,
                source_groups=[SourceGroupSpec(**groups[g].model_dump()) for g in s.source_group_ids if g in groups],
            )
            for s in listing.schedules
        ]
        return ScheduleSet(version=listing.version, schedules=specs)

    async def owns(self, host_id: str, schedule_id: str | None, group_id: str | None) -> bool:
        """True when everything named belongs to the host (agent-minted jobs must not cross hosts)."""
        if schedule_id and not await self.db.fetchone(
            "SELECT 1 FROM schedules WHERE id = ? AND host_id = ?", (schedule_id, host_id)
        ):
            return False
        if group_id and not await self.db.fetchone(
            "SELECT 1 FROM source_groups WHERE id = ? AND host_id = ?", (group_id, host_id)
        ):
            return False
        return True

    async def record_fire(self, host_id: str, schedule_id: str, fire_id: str, scheduled_at: datetime) -> bool:
        """Remember a schedule.fire; False when this fire was seen before (a resend)."""
        async with self.tx() as tx:
            cur = await tx.execute(
                "INSERT INTO schedule_fires (fire_id, host_id, schedule_id, scheduled_at, received_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (fire_id) DO NOTHING", (fire_id, host_id, schedule_id, iso(scheduled_at), iso(tx.now)),
            )
            return cur.rowcount > 0
