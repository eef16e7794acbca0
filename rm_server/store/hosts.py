"""Hosts, their agent tokens, what their agents report, and their liveness."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from rm_core.api import Host, LastBackup
from rm_core.enums import HostStatus, JobState
from rm_core.protocol import Hello
from rm_server.heap import release_free_memory
from rm_server.store.base import Table
from rm_server.store.common import Actor, NotFound, dt, dumps, iso, loads
from rm_server.store.db import Row
from rm_server.store.dialect import Dialect
from rm_server.store.drills import DRILL_OVERDUE_SQL, last_verified_sql
from rm_server.store.lanes import LaneName


def _cols(d: Dialect) -> str:
    return (
        "h.id, h.hostname, h.status, h.last_seen, h.os, h.arch, h.agent_version, h.restic_version,"
        " h.schedule_version, h.applied_schedule_version, h.stale, h.created_at, h.initial_paths,"
        " h.last_backup_job_id, h.last_backup_state, h.last_backup_at, rs.stats AS repo_stats,"
        " h.copy_enabled, h.copy_behind_since, h.copy_overdue_at, h.open_anomalies, h.anomaly_reason, h.anomaly_at,"
        f" {d.text(last_verified_sql(d))} AS last_verified, {DRILL_OVERDUE_SQL} AS drill_overdue"
    )


_FROM = "hosts h LEFT JOIN repo_stats rs ON rs.host_id = h.id"


def _json_row(d: Dialect) -> str:
    """Field for field what _host() builds, for list_json()."""
    last_backup = d.obj(job_id="h.last_backup_job_id", state="h.last_backup_state", finished_at="h.last_backup_at")
    return d.obj(
        id="h.id", hostname="h.hostname", status="h.status", last_seen="h.last_seen", os="h.os", arch="h.arch",
        agent_version="h.agent_version", restic_version="h.restic_version", schedule_version="h.schedule_version",
        applied_schedule_version="h.applied_schedule_version", stale=d.jbool("h.stale <> 0"),
        last_backup=f"CASE WHEN h.last_backup_job_id IS NULL THEN NULL ELSE {last_backup} END",
        created_at="h.created_at", repo_size=d.jget("rs.stats", "total_size"), initial_paths=d.js("h.initial_paths"),
        last_verified=last_verified_sql(d), drill_overdue=d.jbool(DRILL_OVERDUE_SQL),
        copy_enabled=d.jbool("h.copy_enabled <> 0"), copy_behind_since="h.copy_behind_since",
        copy_overdue_at="h.copy_overdue_at", open_anomalies="h.open_anomalies", anomaly="h.anomaly_reason",
        anomaly_at="h.anomaly_at")


def _host(row: Row) -> Host:
    stats = loads(row["repo_stats"], None)
    last = None
    if row["last_backup_job_id"]:
        last = LastBackup(job_id=row["last_backup_job_id"], state=JobState(row["last_backup_state"]),
                          finished_at=dt(row["last_backup_at"]))
    return Host(
        id=row["id"], hostname=row["hostname"], status=HostStatus(row["status"]), last_seen=dt(row["last_seen"]),
        os=row["os"], arch=row["arch"], agent_version=row["agent_version"], restic_version=row["restic_version"],
        schedule_version=row["schedule_version"], applied_schedule_version=row["applied_schedule_version"],
        stale=bool(row["stale"]), created_at=dt(row["created_at"]), initial_paths=loads(row["initial_paths"], []),
        last_backup=last, repo_size=(stats or {}).get("total_size"),
        last_verified=loads(row["last_verified"], None), drill_overdue=bool(row["drill_overdue"]),
        copy_enabled=bool(row["copy_enabled"]), copy_behind_since=dt(row["copy_behind_since"]),
        copy_overdue_at=dt(row["copy_overdue_at"]), open_anomalies=row["open_anomalies"],
        anomaly=row["anomaly_reason"], anomaly_at=dt(row["anomaly_at"]),
    )


def _body(rows: list[Row]) -> bytes:
    body: bytes | str = rows[0][0]  # bytes from SQLite, text from PostgreSQL (dialect.body)
    return body if isinstance(body, bytes) else body.encode()


def _body_then_release(rows: list[Row]) -> bytes:
    """On the whole list's reader thread: the body, then that build's transient buffers (three
    times the body) back to the OS. Without it the 19k server's RSS kept them, and its peak
    met the push's and the lists' at once: 603-610 MB against the 600 target, 559-579 with it."""
    body = _body(rows)
    release_free_memory()
    return body


class Hosts(Table):
    replica_id = ""  # this process's (Store sets it): hosts whose agents it holds carry it
    _whole: tuple[int, LaneName, Any, bytes] | None = None  # (generation, lane, data_version, body) of the full list

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._cols = _cols(self.d)
        self._json_row = _json_row(self.d)
        self._token_waits: dict[str, list[asyncio.Future[str | None]]] = {}
        self._token_task: asyncio.Task[None] | None = None
        self._building: tuple[int, asyncio.Future[bytes]] | None = None  # (generation, the full list's build)

    @staticmethod
    def filters(status: HostStatus | None, q: str | None, limit: int | None, after: str | None) -> tuple[str, list[str | int]]:
        where: list[str] = []
        params: list[str | int] = []
        if status is not None:
            where.append("h.status = ?")
            params.append(status.value)
        if q:
            where.append("h.hostname LIKE ? ESCAPE '\\'")
            params.append("%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        if after:
            where.append("h.id > ?")
            params.append(after)
        sql = " WHERE " + " AND ".join(where) if where else ""
        sql += " ORDER BY h.id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return sql, params

    async def page(
        self, *, status: HostStatus | None = None, q: str | None = None, limit: int | None = None,
        after: str | None = None,
    ) -> list[Host]:
        tail, params = self.filters(status, q, limit, after)
        return [_host(r) for r in await self.db.fetchall(f"SELECT {self._cols} FROM {_FROM}{tail}", params)]

    async def list_json(
        self, *, status: HostStatus | None = None, q: str | None = None, limit: int | None = None,
        after: str | None = None,
    ) -> bytes:
        """The same rows as `page`, as the JSON body `{"hosts": [...]}` built by SQLite itself:
        the full fleet list is the hottest read, and per-row model building cost ~20 us a host.

        The unfiltered list (what consoles poll) is kept until the next committed write:
        building it for 19k hosts takes SQLite ~150-200 ms, serving it again takes nothing.
        It is kept encoded: a response made from text encoded its own 9 MB copy each time."""
        whole = status is None and not q and limit is None and not after
        if whole:
            return await self._whole_list()
        tail, params = self.filters(status, q, limit, after)
        return await self._list_json(tail, params)

    async def _list_json(self, tail: str, params: list[str | int], lane: LaneName | None = None,
                         convert: Callable[[list[Row]], bytes] = _body) -> bytes:
        return await self.db.fetchall(
            f"SELECT {self.d.body('hosts', 'j', 'hid')} FROM"
            f" (SELECT {self._json_row} AS j, h.id AS hid FROM {_FROM}{tail}) AS rows", params, lane=lane,
            convert=convert)

    async def _whole_list(self) -> bytes:
        """The unfiltered list, served again while no connection has committed since it was
        built: this process's writes bump db.generation, any commit (also another process's,
        e.g. `rm-server host remove`) changes the reader's data_version. Both are read before
        the list, so a commit racing the build only makes the next call build again.

        During a fleet push every ack commit invalidates it, and a build is 150-250 ms of
        SQLite at 19k hosts: consoles asking meanwhile share one build (one reader busy, not
        one per console), and it runs on its own reader (db.WHOLE_LIST), never on the bulk
        lane, where the push's own reads would queue behind it."""
        generation = self.db.generation
        cached = self._whole
        if cached is not None and cached[0] == generation:
            _, reader, version, body = cached
            if await self.db.data_version(reader) == version:
                return body
        if self._whole is cached:
            self._whole = None  # stale: its 9 MB need not live beside the next build's
        building = self._building
        if building is None or building[1].done() or building[0] != generation:
            # a build begun before this process's latest commit may not show it: read-after-write
            building = self._building = (generation, asyncio.ensure_future(self._build_whole(generation)))
        return await asyncio.shield(building[1])

    async def _build_whole(self, generation: int) -> bytes:
        reader = LaneName.WHOLE_LIST
        version = await self.db.data_version(reader)
        tail, params = self.filters(None, None, None, None)
        body = await self._list_json(tail, params, reader, _body_then_release)
        self._whole = (generation, reader, version, body)
        return body

    async def get(self, host_id: str) -> Host:
        row = await self.db.fetchone(f"SELECT {self._cols} FROM {_FROM} WHERE h.id = ?", (host_id,))
        if row is None:
            raise NotFound("host", host_id)
        return _host(row)

    async def get_many(self, host_ids: list[str]) -> dict[str, Host]:
        """host_id -> Host for those that exist, a query per 900 ids (what `get` says, for many)."""
        out: dict[str, Host] = {}
        ids = list(dict.fromkeys(host_ids))
        for start in range(0, len(ids), 900):
            chunk = ids[start:start + 900]
            rows = await self.db.fetchall(f"SELECT {self._cols} FROM {_FROM} WHERE h.id IN ({','.join('?' * len(chunk))})",
                                          chunk, bulk=True)
            out.update((r["id"], _host(r)) for r in rows)
        return out

    async def rename(self, actor: Actor, host_id: str, hostname: str) -> Host:
        async with self.tx() as tx:
            cur = await tx.execute("UPDATE hosts SET hostname = ? WHERE id = ?", (hostname, host_id))
            if cur.rowcount == 0:
                raise NotFound("host", host_id)
            await tx.audit(actor, "host.update", host_id, {"hostname": hostname})
        return await self.get(host_id)

    async def delete(self, actor: Actor, host_id: str) -> None:
        async with self.tx() as tx:
            row = await tx.fetchone("SELECT hostname FROM hosts WHERE id = ?", (host_id,))
            if row is None:
                raise NotFound("host", host_id)
            await tx.execute("DELETE FROM hosts WHERE id = ?", (host_id,))
            await tx.audit(actor, "host.delete", host_id, {"hostname": row["hostname"]})

    async def host_for_agent_token(self, token_hash: str) -> str | None:
        """The host an agent token belongs to. Lookups that arrive while one query runs share
        the next query: after a server restart every agent's upgrade asks at once, and a
        reader round trip each was most of the storm's database time. A lookup always joins
        a query that starts after it was asked, so a revoked token is never found."""
        waiter: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._token_waits.setdefault(token_hash, []).append(waiter)
        if self._token_task is None or self._token_task.done():
            self._token_task = asyncio.ensure_future(self._look_up_tokens())
        return await waiter

    async def _look_up_tokens(self) -> None:
        while self._token_waits:
            waits, self._token_waits = self._token_waits, {}
            hashes = list(waits)
            try:
                found: dict[str, str] = {}
                for start in range(0, len(hashes), 900):
                    chunk = hashes[start:start + 900]
                    rows = await self.db.fetchall(
                        f"SELECT token_hash, host_id FROM agent_tokens WHERE token_hash IN ({','.join('?' * len(chunk))})",
                        chunk, bulk=True)
                    found.update({r[0]: r[1] for r in rows})
            except Exception as exc:  # every waiter hears of it; later lookups still run
                for futures in waits.values():
                    for f in futures:
                        if not f.done():
                            f.set_exception(exc)
                continue
            for token_hash, futures in waits.items():
                for f in futures:
                    if not f.done():
                        f.set_result(found.get(token_hash))

    async def record_hellos(self, hellos: list[tuple[str, Hello]], now: datetime) -> list[str]:
        """Mark hosts online, held by this replica, with what their hellos say (many at once
        after a server restart). Returns the hosts another replica held until now: the newest
        connection wins, so that replica must let its socket go."""
        me = self.replica_id
        ids = sorted({host_id for host_id, _ in hellos})
        async with self.tx() as tx:
            moved: list[str] = []
            for start in range(0, len(ids), 900):
                chunk = ids[start:start + 900]
                moved += [r[0] for r in await tx.fetchall(
                    f"SELECT id FROM hosts WHERE id IN ({','.join('?' * len(chunk))}) AND replica_id IS NOT NULL"
                    " AND replica_id <> ?", (*chunk, me))]
            # in id order: two replicas writing overlapping batches lock rows in one order
            await tx.executemany(
                "UPDATE hosts SET status = 'online', replica_id = ?, last_seen = ?, os = ?, arch = ?, agent_version = ?,"
                f" restic_version = ?, applied_schedule_version = {self.d.least('?', 'schedule_version')} WHERE id = ?",
                sorted(((me, iso(now), h.os, h.arch, h.agent_version, h.restic_version, h.applied_schedule_version,
                         host_id) for host_id, h in hellos), key=lambda row: row[-1]),
            )
        return moved

    async def set_offline(self, host_id: str, last_seen: datetime | None) -> bool:
        """Mark one host offline if this replica holds it (its agent may have moved on to
        another replica meanwhile); True when it was online here."""
        async with self.tx() as tx:
            cur = await tx.execute(
                "UPDATE hosts SET status = 'offline', replica_id = NULL, last_seen = coalesce(?, last_seen)"
                " WHERE id = ? AND status = 'online' AND replica_id = ?", (iso(last_seen), host_id, self.replica_id),
            )
            return cur.rowcount > 0

    async def release(self, alive: set[str] | None) -> list[str]:
        """Hosts held by no live replica are offline; returns them. `alive` None: this process
        is the only one (SQLite), so at start every host that was online is offline now."""
        async with self.tx() as tx:
            if alive is None:
                rows = await tx.fetchall("UPDATE hosts SET status = 'offline', replica_id = NULL"
                                         " WHERE status = 'online' RETURNING id")
            else:
                keep = sorted(alive) or [""]
                marks = ",".join("?" * len(keep))
                rows = await tx.fetchall(
                    "UPDATE hosts SET status = 'offline', replica_id = NULL WHERE status = 'online' AND"
                    f" (replica_id IS NULL OR replica_id NOT IN ({marks})) RETURNING id", keep)
                await tx.execute(f"DELETE FROM replicas WHERE id NOT IN ({marks})", keep)
        return [r[0] for r in rows]

    async def touch_many(self, seen: list[tuple[str, datetime]]) -> None:
        """Flush in-memory heartbeats in one transaction. The timestamps are formatted in the
        writer thread: 19k of them were ~40 ms the event loop could not be interrupted in."""
        if not seen:
            return
        await self.db.write_in_thread(lambda conn: conn.executemany(
            "UPDATE hosts SET last_seen = ? WHERE id = ?", sorted(((iso(ts), hid) for hid, ts in seen),
                                                                   key=lambda row: row[1])))

    async def set_applied_versions(self, acked: dict[str, int]) -> dict[str, tuple[int, int]]:
        """Record schedule.acks in one transaction, never above the issued version.

        Returns host_id -> (issued, applied) for the hosts that exist. One statement over one
        JSON parameter in one hop to the writer thread: binding a row per ack held the GIL in
        the writer thread (19k acks arrive within a second of a fleet push) while the event
        loop waited for it, and each statement was a round trip."""
        d = self.d
        rows = await self.db.write_in_thread(lambda conn: conn.execute(
            "UPDATE hosts SET applied_schedule_version ="
            f" {d.least('CAST(j.value ->> 1 AS BIGINT)', 'hosts.schedule_version')}"
            f" FROM (SELECT value FROM {d.each_json()}) AS j WHERE hosts.id = j.value ->> 0"
            " RETURNING hosts.id, hosts.schedule_version, hosts.applied_schedule_version",
            (json.dumps(sorted(acked.items())),)).fetchall())
        return {r[0]: (r[1], r[2]) for r in rows}

    async def counts_by_status(self) -> dict[str, int]:
        rows = await self.db.fetchall("SELECT status, count(*) FROM hosts GROUP BY status")
        return {r[0]: r[1] for r in rows}

    async def set_stale(self, host_id: str, stale: bool) -> None:
        async with self.tx() as tx:
            await tx.execute("UPDATE hosts SET stale = ? WHERE id = ?", (int(stale), host_id))

    async def get_json(self, host_id: str, column: str) -> dict[str, Any]:
        assert column in ("bandwidth", "maintenance")
        row = await self.db.fetchone(f"SELECT {column} FROM hosts WHERE id = ?", (host_id,))
        if row is None:
            raise NotFound("host", host_id)
        value: dict[str, Any] = loads(row[0], {})
        return value

    async def set_json(self, actor: Actor, host_id: str, column: str, value: dict[str, Any]) -> None:
        assert column in ("bandwidth", "maintenance")
        async with self.tx() as tx:
            cur = await tx.execute(f"UPDATE hosts SET {column} = ? WHERE id = ?", (dumps(value), host_id))
            if cur.rowcount == 0:
                raise NotFound("host", host_id)
            await tx.audit(actor, f"host.{column}", host_id, value)
