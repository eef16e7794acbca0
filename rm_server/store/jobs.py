"""Jobs and their logs: creation, dispatch, and idempotent application of agent events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rm_core.enums import ActorKind, JobKind, JobState
from rm_core.ids import new_id
from rm_core.jobs import Job, JobLogLine, JobLogPage
from rm_core.log_frames import WireJobLog, WireLine, as_wire
from rm_core.protocol import JobFinished, JobLog, JobStarted
from rm_server.store.base import Table, Tx
from rm_server.store.common import Actor, NotFound, dt, dumps, iso, loads
from rm_server.store.db import Row, one

_COLS = (
    "id, host_id, kind, state, actor_kind, actor_id, schedule_id, source_group_id, params, created_at,"
    " started_at, finished_at, exit_code, summary, error, log_dropped, cancel_requested"
)


def _job(row: Row) -> Job:
    return Job(
        id=row["id"], host_id=row["host_id"], kind=JobKind(row["kind"]), state=JobState(row["state"]),
        actor_kind=ActorKind(row["actor_kind"]), actor_id=row["actor_id"], schedule_id=row["schedule_id"],
        source_group_id=row["source_group_id"], params=loads(row["params"], {}), created_at=dt(row["created_at"]),
        started_at=dt(row["started_at"]), finished_at=dt(row["finished_at"]), exit_code=row["exit_code"],
        summary=loads(row["summary"], None), error=row["error"], log_dropped=row["log_dropped"],
        cancel_requested=bool(row["cancel_requested"]),
    )


@dataclass
class NewJob:
    host_id: str
    kind: JobKind
    actor_kind: ActorKind
    actor_id: str | None = None
    schedule_id: str | None = None
    source_group_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    # The ticker's instant for a maintenance job: one job per host, kind and tick, whichever
    # replica ticked (a leader that lost its lock without knowing yet ticks in vain).
    tick: str | None = None


@dataclass
class Applied:
    """What applying one agent event did: the ack to send and the job when it changed."""

    acked_seq: int
    job: Job | None = None
    lines: list[WireLine] = field(default_factory=list)


# a job's params as stored hold this when it works on the copy repository (repo: "copy")
COPY_PARAMS = '%"repo":"copy"%'
AGENT_TIME_TRUST = timedelta(days=30)
LOG_PAGE_BYTES = 1024 * 1024


class JobNotOnHost(LookupError):
    """A job event names a job the sending host does not own (or no job at all)."""


class Jobs(Table):
    log_head = 1000   # first lines of a job, always kept
    log_tail = 10000  # newest lines kept after the head; lines between are dropped and counted
    log_bytes = 16 * 1024 * 1024  # and at most this much text per job: lines after the head go, oldest first

    async def create(self, actor: Actor, jobs: list[NewJob]) -> list[Job]:
        ids = []
        async with self.tx() as tx:
            for j in jobs:
                job_id = await self._insert(tx, j, JobState.queued)
                if job_id is None:
                    continue  # this tick's job of that kind exists already
                ids.append(job_id)
                await tx.audit(actor, "job.create", ids[-1],
                               {"host_id": j.host_id, "kind": j.kind.value, "source_group_id": j.source_group_id,
                                "schedule_id": j.schedule_id})
        return [await self.get(i) for i in ids]

    async def _insert(self, tx: Tx, j: NewJob, state: JobState, job_id: str | None = None,
                      started_at: datetime | None = None, created_at: datetime | None = None) -> str | None:
        job_id = job_id or new_id()
        cur = await tx.execute(
            "INSERT INTO jobs (id, host_id, kind, state, actor_kind, actor_id, schedule_id, source_group_id,"
            " params, created_at, started_at, tick) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (job_id, j.host_id, j.kind.value, state.value, j.actor_kind.value, j.actor_id, j.schedule_id,
             j.source_group_id, dumps(j.params), iso(created_at or tx.now), iso(started_at), j.tick),
        )
        return job_id if cur.rowcount else None

    async def get(self, job_id: str) -> Job:
        row = await self.db.fetchone(f"SELECT {_COLS} FROM jobs WHERE id = ?", (job_id,))
        if row is None:
            raise NotFound("job", job_id)
        return _job(row)

    async def host_of(self, job_id: str) -> str | None:
        """The host a job belongs to (None: no such job)."""
        row = await self.db.fetchone("SELECT host_id FROM jobs WHERE id = ?", (job_id,))
        return None if row is None else row["host_id"]

    async def page(
        self, *, host_id: str | None = None, state: JobState | None = None, kind: JobKind | None = None,
        limit: int = 100, before: str | None = None,
    ) -> list[Job]:
        where: list[str] = []
        params: list[str | int] = []
        for col, val in (("host_id", host_id), ("state", state), ("kind", kind)):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(str(val))
        if before:
            where.append("id < ?")
            params.append(before)
        sql = f"SELECT {_COLS} FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [_job(r) for r in await self.db.fetchall(sql, params)]

    async def has_init(self, host_id: str, *, copy: bool, queued_only: bool = False) -> bool:
        """Whether the host has an init job of its primary (or its copy) repository (one that
        still waits to be sent, with queued_only)."""
        sql = ("SELECT 1 FROM jobs WHERE host_id = ? AND kind = 'init' AND params"
               + (" LIKE ?" if copy else " NOT LIKE ?") + (" AND state = 'queued'" if queued_only else "") + " LIMIT 1")
        return await self.db.fetchone(sql, (host_id, COPY_PARAMS)) is not None

    async def queued_for_host(self, host_id: str) -> list[Job]:
        rows = await self.db.fetchall(
            f"SELECT {_COLS} FROM jobs WHERE host_id = ? AND state = 'queued' ORDER BY id", (host_id,)
        )
        return [_job(r) for r in rows]

    async def hosts_with_queued(self) -> list[str]:
        rows = await self.db.fetchall("SELECT DISTINCT host_id FROM jobs WHERE state = 'queued'", bulk=True)
        return [r[0] for r in rows]

    async def request_cancel(self, job_id: str) -> None:
        """Remember that an operator cancelled a running job (another replica passes it on;
        a hello, on any replica, passes it on again)."""
        async with self.tx() as tx:
            await tx.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))

    async def cancels_requested(self, host_id: str) -> list[str]:
        rows = await self.db.fetchall("SELECT id FROM jobs WHERE host_id = ? AND cancel_requested <> 0"
                                      " AND state IN ('dispatched', 'running')", (host_id,))
        return [r[0] for r in rows]

    async def mark_dispatched(self, job_id: str) -> Job | None:
        async with self.tx() as tx:
            cur = await tx.execute(
                "UPDATE jobs SET state = 'dispatched', dispatched_at = ? WHERE id = ? AND state = 'queued'",
                (iso(tx.now), job_id),
            )
        return await self.get(job_id) if cur.rowcount else None

    async def finish_on_server(self, actor: Actor, job_id: str, state: JobState, error: str) -> Job | None:
        """End a job the agent never ran (cancelled while queued, refused, host gone)."""
        async with self.tx() as tx:
            cur = await tx.execute(
                "UPDATE jobs SET state = ?, finished_at = ?, error = ? WHERE id = ? AND state IN ('queued', 'dispatched')",
                (state.value, iso(tx.now), error, job_id),
            )
            if cur.rowcount:
                await tx.audit(actor, f"job.{state.value}", job_id, {"error": error})
        return await self.get(job_id) if cur.rowcount else None

    async def reconcile_hello(self, host_id: str, running: list[str]) -> tuple[list[Job], list[Job]]:
        """On hello: running jobs the agent does not know are lost; unstarted dispatched ones go back to the queue.

        Returns (lost, requeued).
        """
        if not await self.db.fetchone(
            "SELECT 1 FROM jobs WHERE host_id = ? AND state IN ('dispatched', 'running') LIMIT 1", (host_id,)
        ):
            return [], []  # the common case needs no write transaction (a reconnect storm is 19k hellos)
        async with self.tx() as tx:
            rows = await tx.fetchall(
                f"SELECT id, state FROM jobs WHERE host_id = ? AND state IN ('dispatched', 'running')"
                f" ORDER BY id{self.d.for_update}", (host_id,)
            )
            lost, requeued = [], []
            for row in rows:
                if row["id"] in running:
                    continue
                if row["state"] == "running":
                    await tx.execute(
                        "UPDATE jobs SET state = 'lost', finished_at = ?, error = ? WHERE id = ?",
                        (iso(tx.now), "the agent restarted while this job ran; its repository may hold a "
                         "stale lock: run unlock", row["id"]),
                    )
                    lost.append(row["id"])
                else:
                    await tx.execute("UPDATE jobs SET state = 'queued', dispatched_at = NULL WHERE id = ?", (row["id"],))
                    requeued.append(row["id"])
        return [await self.get(i) for i in lost], [await self.get(i) for i in requeued]

    # ------------------------------------------------------------ agent events

    async def _acked(self, tx: Tx, host_id: str, job_id: str) -> tuple[int, str] | None:
        row = await tx.fetchone(f"SELECT acked_seq, state FROM jobs WHERE id = ? AND host_id = ?{self.d.for_update}",
                                (job_id, host_id))
        return None if row is None else (row["acked_seq"], row["state"])

    async def apply_started(self, host_id: str, ev: JobStarted, owns: bool) -> Applied:
        """Apply job.started. `owns` says whether the host owns the schedule/group the event names
        (needed to accept an agent-minted job)."""
        async with self.tx() as tx:
            cur = await self._acked(tx, host_id, ev.job_id)
            if cur is None:
                if not owns or await tx.fetchone("SELECT 1 FROM jobs WHERE id = ?", (ev.job_id,)):
                    raise JobNotOnHost(ev.job_id)
                actor_kind = ev.actor_kind or (ActorKind.schedule if ev.schedule_id else ActorKind.agent)
                new = NewJob(host_id, ev.kind, actor_kind, None, ev.schedule_id, ev.source_group_id)
                # A job the agent ran while the server was away was created when it started,
                # not when the server heard of it (created later than started otherwise); a
                # clock far in the past is not believed beyond AGENT_TIME_TRUST.
                created = min(tx.now, max(ev.started_at, tx.now - AGENT_TIME_TRUST))
                await self._insert(tx, new, JobState.running, ev.job_id, ev.started_at, created)
                await tx.execute("UPDATE jobs SET acked_seq = 1 WHERE id = ?", (ev.job_id,))
            elif cur[0] >= 1:
                return Applied(cur[0])
            else:
                # A lost job that turns out to be alive keeps its late events; terminal states stay.
                await tx.execute(
                    "UPDATE jobs SET acked_seq = 1, started_at = ?,"
                    " state = CASE WHEN state IN ('queued', 'dispatched') THEN 'running' ELSE state END"
                    " WHERE id = ?", (iso(ev.started_at), ev.job_id),
                )
        return Applied(1, await self.get(ev.job_id))

    async def apply_logs(self, batch: list[tuple[str, WireJobLog | JobLog]]) -> list[Applied | JobNotOnHost]:
        """Apply many job.log events (from any hosts and jobs) in one transaction.

        Log ingest is the server's busiest write: one transaction per event made the writer
        lock and its thread hops the bottleneck. Each result is the event's Applied, or
        JobNotOnHost when the job is not the sending host's. Timestamps are stored as the agent
        wrote them (rm_core.log_frames checked that they read back as datetimes)."""
        wire = [(host_id, as_wire(ev)) for host_id, ev in batch]
        results: list[Applied | JobNotOnHost] = []
        state: dict[str, list[int]] = {}  # job_id -> [acked, log_lines, log_bytes]
        owners: dict[str, str] = {}  # job_id -> host_id
        rows: list[tuple[str, int, str, str, str]] = []
        async with self.tx() as tx:
            # One read for every job in the batch: a query per job was a thread hop each.
            wanted = list({ev.job_id for _, ev in wire})
            for start in range(0, len(wanted), 900):
                chunk = wanted[start:start + 900]
                for job_id, owner, acked_seq, log_lines, log_bytes in await tx.fetchall(
                        f"SELECT id, host_id, acked_seq, log_lines, log_bytes FROM jobs"
                        f" WHERE id IN ({','.join('?' * len(chunk))}) ORDER BY id{self.d.for_update}", tuple(chunk)):
                    owners[job_id] = owner
                    state[job_id] = [acked_seq, log_lines, log_bytes]
            for host_id, ev in wire:
                if owners.get(ev.job_id) != host_id:
                    results.append(JobNotOnHost(ev.job_id))
                    continue
                job_state = state[ev.job_id]
                acked = job_state[0]
                fresh = []
                for line in ev.lines:
                    if line.seq <= acked:
                        continue
                    if line.seq != acked + 1:
                        break  # a gap: keep what is contiguous, the agent resends the rest
                    fresh.append(line)
                    acked = line.seq
                job_id = ev.job_id
                rows.extend((job_id, ln.seq, ln.ts, ln.stream, ln.text) for ln in fresh)
                job_state[0] = acked
                job_state[1] += len(fresh)
                job_state[2] += sum(ln.size for ln in fresh)
                results.append(Applied(acked, None, fresh))
            if rows:
                await tx.insert_rows("job_logs", ("job_id", "seq", "ts", "stream", "text"), rows)
                await tx.executemany(
                    "UPDATE jobs SET acked_seq = ?, log_lines = ?, log_bytes = ? WHERE id = ?",
                    [(acked, lines, size, job_id) for job_id, (acked, lines, size) in sorted(state.items())])
                for job_id, (acked, lines, size) in state.items():
                    if lines > self.log_head + self.log_tail or size > self.log_bytes:
                        await self._cap_log(tx, job_id, acked, size)
        return results

    async def _cap_log(self, tx: Tx, job_id: str, acked: int, size: int) -> None:
        """Keep the first log_head lines and the newest log_tail lines, and no more than
        log_bytes in all: lines after the head are dropped oldest first; count what is dropped."""
        head_last_seq = self.log_head + 1  # seq 1 is job.started; log lines start at 2
        cutoff = acked - self.log_tail
        if size > self.log_bytes:
            # Oldest lines after the head until enough bytes are freed (ties to whole lines).
            excess, freed = size - self.log_bytes, 0
            for r in await tx.fetchall(
                    f"SELECT seq, {self.d.octets('text')} AS n FROM job_logs WHERE job_id = ? AND seq > ?"
                    " ORDER BY seq LIMIT 10000", (job_id, head_last_seq)):
                freed += r["n"]
                cutoff = max(cutoff, r["seq"])
                if freed >= excess:
                    break
        gone = one(await tx.fetchone(
            f"SELECT count(*) AS n, coalesce(sum({self.d.octets('text')}), 0) AS b FROM job_logs"
            " WHERE job_id = ? AND seq > ? AND seq <= ?", (job_id, head_last_seq, cutoff)))
        if not gone["n"]:
            return
        await tx.execute("DELETE FROM job_logs WHERE job_id = ? AND seq > ? AND seq <= ?",
                         (job_id, head_last_seq, cutoff))
        await tx.execute(
            "UPDATE jobs SET log_lines = log_lines - ?, log_dropped = log_dropped + ?, log_bytes = log_bytes - ?"
            " WHERE id = ?", (gone["n"], gone["n"], gone["b"], job_id))

    async def apply_finished(self, host_id: str, ev: JobFinished) -> Applied:
        async with self.tx() as tx:
            cur = await self._acked(tx, host_id, ev.job_id)
            if cur is None:
                raise JobNotOnHost(ev.job_id)
            acked, state = cur
            if ev.seq <= acked or ev.seq != acked + 1:
                return Applied(acked)
            if state in ("succeeded", "warning", "failed", "cancelled"):
                # Already ended on the server (cancelled while queued): keep that, but take the seq.
                await tx.execute("UPDATE jobs SET acked_seq = ? WHERE id = ?", (ev.seq, ev.job_id))
                return Applied(ev.seq)
            finished_at = ev.finished_at or tx.now
            await tx.execute(
                "UPDATE jobs SET acked_seq = ?, state = ?, exit_code = ?, summary = ?, error = ?, finished_at = ?,"
                " started_at = coalesce(started_at, ?) WHERE id = ?",
                (ev.seq, ev.state.value, ev.exit_code, dumps(ev.summary) if ev.summary is not None else None,
                 ev.error, iso(finished_at), iso(finished_at), ev.job_id),
            )
            row = one(await tx.fetchone("SELECT kind FROM jobs WHERE id = ?", (ev.job_id,)))  # _acked read it
            if row["kind"] == "backup" and ev.state.terminal:
                await tx.execute(
                    "UPDATE hosts SET last_backup_job_id = ?, last_backup_state = ?, last_backup_at = ?,"
                    " last_success_at = CASE WHEN ? IN ('succeeded', 'warning') THEN ? ELSE last_success_at END"
                    " WHERE id = ?",
                    (ev.job_id, ev.state.value, iso(finished_at), ev.state.value, iso(finished_at), host_id),
                )
        return Applied(ev.seq, await self.get(ev.job_id))

    async def logs(self, job_id: str, after_seq: int, limit: int) -> JobLogPage:
        job = await self.get(job_id)
        rows = await self.db.fetchall(
            "SELECT seq, ts, stream, text FROM job_logs WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (job_id, after_seq, limit + 1),
        )
        more = len(rows) > limit
        rows = rows[:limit]
        # A page is also capped in bytes (at least one line): a viewer paging a log of long
        # lines must not make the server build hundreds of megabytes for one reply.
        size = 0
        for i, r in enumerate(rows):
            size += len(r["text"]) + 64
            if size > LOG_PAGE_BYTES and i > 0:
                rows, more = rows[:i], True
                break
        lines = [JobLogLine(seq=r["seq"], ts=dt(r["ts"]), stream=r["stream"], text=r["text"]) for r in rows]
        next_seq = lines[-1].seq if lines else after_seq
        return JobLogPage(lines=lines, next_seq=next_seq, done=job.state.terminal and not more)

    async def last_runs(self) -> dict[tuple[str, str], datetime]:
        """(host_id, kind) -> created_at of the newest job of that kind, for the maintenance ticker."""
        return await self.db.fetchall(
            "SELECT host_id, kind, max(created_at) AS at FROM jobs WHERE kind IN ('forget', 'prune', 'check')"
            " GROUP BY host_id, kind", bulk=True, convert=lambda rows: {(r[0], r[1]): datetime.fromisoformat(r[2]) for r in rows})

    async def counts_by_state(self) -> dict[str, int]:
        rows = await self.db.fetchall("SELECT state, count(*) FROM jobs GROUP BY state")
        return {r[0]: r[1] for r in rows}
