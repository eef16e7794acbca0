"""The agent's durable state: job event outbox, job records, fire times, key/value.

One SQLite file (`state.db` beside the config). Every job event is committed here,
with its `(job_id, seq)`, before it goes on the wire; rows leave only when the server
acks them. Writes are short synchronous transactions on the event loop thread: they
keep the order of events trivially and cost well under a millisecond each with WAL.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Iterable

from rm_core.times import iso

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id  TEXT NOT NULL,
    seq_hi  INTEGER NOT NULL,
    type    TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id, seq_hi);
CREATE TABLE IF NOT EXISTS jobs (
    job_id     TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    state      TEXT NOT NULL,          -- running | done
    next_seq   INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    pid        INTEGER
);
CREATE TABLE IF NOT EXISTS fires (
    schedule_id TEXT PRIMARY KEY,
    last_fire   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

LOST_NOTE = (
    "the agent stopped while this job was running; on its next start it ran plain "
    "`restic unlock` to remove the stale lock restic may have left (if a job still reports "
    "the repository locked, run unlock)"
)


@dataclass
class PendingEvent:
    id: int
    job_id: str
    seq_hi: int
    type: str
    payload: dict[str, Any]


class UnknownJob(KeyError):
    pass


class Outbox:
    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        if readonly:
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        else:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = sqlite3.connect(path, isolation_level=None)
            path.chmod(0o600)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        self._db.execute("PRAGMA busy_timeout=5000")

    def close(self) -> None:
        self._db.close()

    def _tx(self) -> "_Tx":
        return _Tx(self._db)

    # ------------------------------------------------------------ jobs and events

    def start_job(self, job_id: str, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Record the job as running and queue its `job.started` (seq 1)."""
        payload = {**payload, "job_id": job_id, "seq": 1}
        with self._tx() as db:
            db.execute(
                "INSERT INTO jobs (job_id, kind, state, next_seq, started_at) VALUES (?, ?, 'running', 2, ?)",
                (job_id, kind, payload["started_at"]),
            )
            db.execute(
                "INSERT INTO events (job_id, seq_hi, type, payload) VALUES (?, 1, 'job.started', ?)",
                (job_id, json.dumps(payload)),
            )
        return payload

    def _next_seq(self, db: sqlite3.Connection, job_id: str) -> int:
        row = db.execute("SELECT next_seq FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise UnknownJob(job_id)
        return int(row[0])

    def append_logs(self, job_id: str, lines: Iterable[tuple[str, str, str]]) -> dict[str, Any] | None:
        """Number `(ts, stream, text)` lines with the job's next seqs; queue one `job.log`."""
        lines = list(lines)
        if not lines:
            return None
        with self._tx() as db:
            seq = self._next_seq(db, job_id)
            out = []
            for ts, stream, text in lines:
                out.append({"seq": seq, "ts": ts, "stream": stream, "text": text})
                seq += 1
            payload = {"job_id": job_id, "lines": out}
            db.execute(
                "INSERT INTO events (job_id, seq_hi, type, payload) VALUES (?, ?, 'job.log', ?)",
                (job_id, seq - 1, json.dumps(payload)),
            )
            db.execute("UPDATE jobs SET next_seq = ? WHERE job_id = ?", (seq, job_id))
        return payload

    def finish_job(self, job_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Queue the job's `job.finished` with the last seq and mark it done."""
        with self._tx() as db:
            seq = self._next_seq(db, job_id)
            payload = {**fields, "job_id": job_id, "seq": seq}
            db.execute(
                "INSERT INTO events (job_id, seq_hi, type, payload) VALUES (?, ?, 'job.finished', ?)",
                (job_id, seq, json.dumps(payload)),
            )
            db.execute("UPDATE jobs SET next_seq = ?, state = 'done', pid = NULL WHERE job_id = ?", (seq + 1, job_id))
        return payload

    def set_pid(self, job_id: str, pid: int | None) -> None:
        self._db.execute("UPDATE jobs SET pid = ? WHERE job_id = ?", (pid, job_id))

    def ack(self, job_id: str, upto_seq: int) -> int:
        """Drop the job's events the server stored; forget a done job once all are acked."""
        with self._tx() as db:
            cur = db.execute("DELETE FROM events WHERE job_id = ? AND seq_hi <= ?", (job_id, upto_seq))
            left = db.execute("SELECT 1 FROM events WHERE job_id = ? LIMIT 1", (job_id,)).fetchone()
            if left is None:
                db.execute("DELETE FROM jobs WHERE job_id = ? AND state = 'done'", (job_id,))
        return cur.rowcount

    def pending(self, after_id: int = 0, limit: int = 500) -> list[PendingEvent]:
        rows = self._db.execute(
            "SELECT id, job_id, seq_hi, type, payload FROM events WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
        return [PendingEvent(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    def depth(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def high_seq(self) -> int:
        row = self._db.execute("SELECT MAX(seq_hi) FROM events").fetchone()
        return int(row[0] or 0)

    def known_job(self, job_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone() is not None

    def running_jobs(self) -> list[str]:
        rows = self._db.execute("SELECT job_id FROM jobs WHERE state = 'running' ORDER BY started_at").fetchall()
        return [r[0] for r in rows]

    def mark_lost(self, now: datetime) -> list[str]:
        """Jobs still `running` from a previous agent process become `lost`."""
        lost = self.running_jobs()
        for job_id in lost:
            self.finish_job(
                job_id,
                {"state": "lost", "exit_code": None, "summary": None, "error": LOST_NOTE, "finished_at": iso(now)},
            )
        return lost

    # ------------------------------------------------------------ fires and kv

    def last_fires(self) -> dict[str, datetime]:
        rows = self._db.execute("SELECT schedule_id, last_fire FROM fires").fetchall()
        return {r[0]: datetime.fromisoformat(r[1]) for r in rows}

    def set_last_fire(self, schedule_id: str, when: datetime) -> None:
        self._db.execute(
            "INSERT INTO fires (schedule_id, last_fire) VALUES (?, ?) "
            "ON CONFLICT (schedule_id) DO UPDATE SET last_fire = excluded.last_fire",
            (schedule_id, iso(when)),
        )

    def replace_fires(self, fires: dict[str, datetime]) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM fires")
            db.executemany(
                "INSERT INTO fires (schedule_id, last_fire) VALUES (?, ?)",
                [(k, iso(v)) for k, v in fires.items()],
            )

    def get(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def put(self, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")
