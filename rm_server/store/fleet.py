"""Fleet-wide changes: one policy (a source group and a schedule of the same name) written
to many hosts in a few large transactions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from rm_core.ids import new_ids
from rm_core.enums import HostStatus
from rm_server.store.base import Table
from rm_server.store.hosts import Hosts
from rm_server.store.common import Actor, audit_row_sync, dumps, iso, loads
from rm_server.store.db import Conn

# What a host's next run is computed from: its enabled schedules that have a cron.
_CRON_SCHEDULE = "s.enabled <> 0 AND s.manual = 0 AND s.cron IS NOT NULL"


class Fleet(Table):
    async def select_hosts(self, host_ids: list[str] | None, status: HostStatus | None, q: str | None) -> list[str]:
        tail, params = Hosts.filters(status, q, None, None)
        found = [r[0] for r in await self.db.fetchall(f"SELECT h.id FROM hosts h{tail}", params, bulk=True)]
        if host_ids is not None:
            wanted = set(host_ids)
            found = [h for h in found if h in wanted]
        return found

    async def behind(self, host_ids: list[str]) -> list[str]:
        """Those of `host_ids` whose agent has not applied the host's schedule version."""
        out: list[str] = []
        for start in range(0, len(host_ids), 900):
            chunk = host_ids[start:start + 900]
            out += [r[0] for r in await self.db.fetchall(
                f"SELECT id FROM hosts WHERE id IN ({','.join('?' * len(chunk))})"
                " AND applied_schedule_version < schedule_version", chunk, bulk=True)]
        return out

    async def crons(self) -> list[dict[str, Any]]:
        """Every host's enabled cron schedules, one entry per (cron, timezone) with the hosts
        that have it: a fleet under a few policies is a few entries, whatever its size."""
        rows = await self.db.fetchall(
            f"SELECT s.cron, s.timezone, {self.d.text(self.d.agg_distinct('s.host_id'))} FROM schedules s"
            f" WHERE {_CRON_SCHEDULE} GROUP BY s.cron, s.timezone ORDER BY s.cron, s.timezone")
        return [{"cron": r[0], "timezone": r[1], "host_ids": loads(r[2], [])} for r in rows]

    async def schedule_states(self, host_ids: list[str]) -> dict[str, dict[str, Any]]:
        """host_id -> {version, applied_version, crons}: what a schedule.updated event tells
        operators, read in a few queries for a fleet-wide change (missing hosts are left out)."""
        out: dict[str, dict[str, Any]] = {}
        d = self.d
        crons = d.text(d.agg(d.obj(cron="s.cron", timezone="s.timezone")))
        for start in range(0, len(host_ids), 900):
            chunk = host_ids[start:start + 900]
            rows = await self.db.fetchall(
                f"SELECT h.id, h.schedule_version, h.applied_schedule_version, (SELECT {crons} FROM schedules s"
                f" WHERE s.host_id = h.id AND {_CRON_SCHEDULE}) FROM hosts h"
                f" WHERE h.id IN ({','.join('?' * len(chunk))})", tuple(chunk), bulk=True)
            out.update({r[0]: {"version": r[1], "applied_version": r[2], "crons": loads(r[3], [])} for r in rows})
        return out

    async def apply_policy(self, actor: Actor, name: str, host_ids: list[str], group: dict[str, Any],
                           schedule: dict[str, Any],
                           committed: Callable[[list[str]], Awaitable[None]] | None = None) -> None:
        """Upsert source group `name` and schedule `name` (backing up that group) on every host.

        `committed(host_ids)` runs after each slice's commit, beside the next slice's write,
        so the caller pushes one slice while the next is written. Pushes run one after another,
        in slice order."""
        gcols = (dumps(group["includes"]), dumps(group["excludes"]), group["tag"], dumps(group["retention"]),
                 group.get("pre_hook"), group.get("post_hook"))
        scols = (schedule["cron"], schedule["timezone"], int(schedule["enabled"]))
        details = {"cron": schedule["cron"], "includes": group["includes"]}
        pushing: asyncio.Future[None] | None = None  # the previous slice's push
        stale_stats = bool(self.d.analyze_after_bulk)  # refreshed once, by the first slice that adds rows
        ids, pairs_of = self.d.each_text(), self.d.each_json()
        size = self.d.policy_slice  # hosts per transaction (store/dialect.py says why each)
        for start in range(0, len(host_ids), size):
            chunk = host_ids[start:start + size]

            def write(conn: Conn, now: datetime, audited: list[dict[str, Any]], chunk: list[str] = chunk) -> None:
                nonlocal stale_stats
                hosts = json.dumps(chunk)
                # Every statement takes the slice as one JSON text (json_each) instead of a
                # bound row per host: the writer thread holds the GIL while it binds, and
                # 1000-row executemany calls made the event loop wait for it mid-push.
                groups: dict[str, str] = {host: gid for host, gid in conn.execute(
                    "SELECT host_id, id FROM source_groups WHERE name = ? AND host_id IN"
                    f" (SELECT value FROM {ids})", (name, hosts)).fetchall()}
                scheds: dict[str, str] = {host: sid for host, sid in conn.execute(
                    "SELECT host_id, id FROM schedules WHERE name = ? AND host_id IN"
                    f" (SELECT value FROM {ids})", (name, hosts)).fetchall()}
                conn.execute(
                    "UPDATE source_groups SET includes = ?, excludes = ?, tag = ?, retention = ?, pre_hook = ?,"
                    f" post_hook = ? WHERE id IN (SELECT value FROM {ids})",
                    (*gcols, json.dumps(sorted(groups.values()))))
                fresh = [h for h in chunk if h not in groups]
                groups.update(zip(fresh, new_ids(len(fresh))))  # new_ids is thread-safe
                conn.execute(
                    "INSERT INTO source_groups (id, host_id, name, includes, excludes, tag, retention, pre_hook,"
                    f" post_hook) SELECT value ->> 0, value ->> 1, ?, ?, ?, ?, ?, ?, ? FROM {pairs_of}",
                    (name, *gcols, json.dumps([(groups[h], h) for h in fresh])))
                # Only the schedules that existed are updated and lose their groups: a fresh one
                # is inserted as it should be (on PostgreSQL an UPDATE of a row just inserted
                # writes it again, with its index entries: a fleet's first policy wrote every
                # schedule twice).
                existing = json.dumps(sorted(scheds.values()))
                fresh = [h for h in chunk if h not in scheds]
                scheds.update(zip(fresh, new_ids(len(fresh))))
                conn.execute(
                    "INSERT INTO schedules (id, host_id, name, cron, timezone, enabled, manual, created_at)"
                    f" SELECT value ->> 0, value ->> 1, ?, ?, ?, ?, 0, ? FROM {pairs_of}",
                    (name, *scols, iso(now), json.dumps([(scheds[h], h) for h in fresh])))
                conn.execute("UPDATE schedules SET cron = ?, timezone = ?, enabled = ?, manual = 0"
                             f" WHERE id IN (SELECT value FROM {ids})", (*scols, existing))
                conn.execute(f"DELETE FROM schedule_groups WHERE schedule_id IN (SELECT value FROM {ids})",
                             (existing,))
                pairs = json.dumps([(scheds[h], groups[h]) for h in chunk])
                conn.execute("INSERT INTO schedule_groups (schedule_id, source_group_id, position)"
                             f" SELECT value ->> 0, value ->> 1, 0 FROM {pairs_of}", (pairs,))
                if fresh and stale_stats:
                    conn.execute(self.d.analyze_after_bulk)
                    stale_stats = False
                conn.execute("UPDATE hosts SET schedule_version = schedule_version + 1 WHERE id IN"
                             f" (SELECT value FROM {ids})", (hosts,))
                audited.append(audit_row_sync(conn, now, actor, "fleet.policy", name,
                                              {"hosts": len(chunk), **details}))

            # One hop to the writer thread per slice instead of one per statement; the slice
            # before is pushed meanwhile (its frames and acks overlap this write).
            writing = asyncio.ensure_future(self.tx_in_thread(write))
            try:
                if pushing is not None:
                    await pushing
            finally:
                pushing = None
                await asyncio.wait([writing])  # never leave a transaction behind
            writing.result()
            if committed is not None:
                pushing = asyncio.ensure_future(committed(chunk))
        if pushing is not None:
            await pushing
