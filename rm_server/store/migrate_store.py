"""`rm-server migrate-store`: a SQLite server's data copied into an empty PostgreSQL database.

* The source is read through SQLite only (never opened by hand: store/sqlite.py), in one read
  transaction of a connection in exclusive locking mode. The copy is one consistent snapshot,
  and a server still running on the file is refused, not raced: whatever it wrote after the
  snapshot would be lost when its replicas take over. A server started during the copy finds
  the file locked and does not start.
* The source's schema must be the one this rm-server makes (same version, tables, columns).
  The target is migrated to that version first and must hold no row and no foreign table.
* Tables are copied parent first (foreign keys), each in primary-key order, streamed in
  batches through COPY, all in one PostgreSQL transaction: a failure leaves the target as
  empty as it was.
* Before that transaction commits, each table is read back: its row count and its checksum
  (sha256 over repr() of each row, the tuple of values the driver returns — str, int, bytes,
  None — in primary-key order) must equal the source's, computed the same way.
* PostgreSQL text cannot hold NUL: a NUL in a text value becomes U+FFFD, as the PostgreSQL
  backend writes it (postgres.text_safe), before the source's checksum is taken; the summary
  counts such rows.
* Identity columns (audit.id) continue after the larger of the copied maximum and SQLite's
  AUTOINCREMENT counter, so an id is never given twice."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from rm_server.store.db import SchemaTooNew, migrations, one
from rm_server.store.postgres import PgConn, PostgresEngine, text_safe

BATCH = 5000  # rows fetched from SQLite at a time (and read back from PostgreSQL)

# What migrate-store does with each table. A migration that adds a table names it here:
# tests/server/test_migrate_store.py fails for a table without a rule, and migrate-store
# refuses a source holding one.
COPIED = frozenset({
    "operators", "sessions", "enrollment_tokens", "hosts", "agent_tokens", "repo_credentials", "source_groups",
    "schedules", "schedule_groups", "schedule_fires", "jobs", "job_logs", "snapshots", "repo_stats", "audit",
    "settings", "drill_policies", "notification_channels", "host_alerts", "copy_reports", "anomalies",
    "repo_sizes", "key_rotations",
})
SKIPPED = {
    "replicas": "the replicas alive now: each server registers itself as it starts",
    "relay_bodies": "messages in flight between running replicas",
}

IN_USE = ("{path} is in use: a running rm-server (or an rm-server command) has it open. Stop it first: "
          "migrate-store copies one snapshot, and what a running server wrote after it would be lost")


class Refused(Exception):
    """The source or the target is not fit to copy from or into; nothing was written."""


@dataclass
class Table:
    name: str
    rows: int = 0
    checksum: str = ""
    target_rows: int | None = None
    target_checksum: str | None = None
    skipped: str | None = None  # why the table was not copied
    nul_rows: int = 0  # rows whose text held NUL (stored as U+FFFD)

    @property
    def matches(self) -> bool:
        return self.skipped is not None or (self.rows, self.checksum) == (self.target_rows, self.target_checksum)


@dataclass
class Report:
    source: str
    target: str
    version: int
    tables: list[Table] = field(default_factory=list)
    identities: dict[str, int] = field(default_factory=dict)  # "table.column" -> the next value follows this

    @property
    def mismatched(self) -> list[Table]:
        return [t for t in self.tables if not t.matches]


class Mismatch(Exception):
    """What was read back from PostgreSQL differs from the source: rolled back."""

    def __init__(self, report: Report) -> None:
        super().__init__(", ".join(t.name for t in report.mismatched))
        self.report = report


Columns = list[tuple[str, str, int, int]]  # (name, declared type, not null, primary-key position)


def _schema(conn: sqlite3.Connection) -> dict[str, Columns]:
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")]
    return {n: [(c[1], c[2].upper(), c[3], c[5]) for c in conn.execute(f'PRAGMA table_info("{n}")')] for n in names}


def expected_schema() -> dict[str, Columns]:
    """The tables and columns this rm-server's SQLite migrations make."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for _, _, sql in migrations("sqlite"):
            conn.executescript(sql)
        return _schema(conn)
    finally:
        conn.close()


def _differences(found: dict[str, Columns], expected: dict[str, Columns]) -> list[str]:
    out = [f"no table {t}" for t in sorted(expected.keys() - found.keys())]
    out += [f"table {t} is not rm-server's" for t in sorted(found.keys() - expected.keys())]
    for t in sorted(found.keys() & expected.keys()):
        if found[t] != expected[t]:
            have, want = {c[0]: c for c in found[t]}, {c[0]: c for c in expected[t]}
            out += [f"{t}.{c} is missing" for c in want if c not in have]
            out += [f"{t}.{c} is not rm-server's" for c in have if c not in want]
            out += [f"{t}.{c} differs" for c in want if c in have and have[c] != want[c]]
            if not out:
                out.append(f"{t}'s columns are in another order")
    return out


def _order_by(columns: Columns) -> str:
    """The primary key, or every column (NULLs first on both backends) for a table without one."""
    pk = [c[0] for c in sorted((c for c in columns if c[3]), key=lambda c: c[3])]
    return ", ".join(f'"{c}"' for c in pk) if pk else ", ".join(f'"{c[0]}" NULLS FIRST' for c in columns)


def _parents_first(conn: sqlite3.Connection, tables: list[str]) -> list[str]:
    deps = {t: {r[2] for r in conn.execute(f'PRAGMA foreign_key_list("{t}")')} & set(tables) - {t} for t in tables}
    out: list[str] = []
    while len(out) < len(tables):
        ready = sorted(t for t in tables if t not in out and deps[t] <= set(out))
        if not ready:
            raise RuntimeError(f"foreign keys form a cycle among {sorted(set(tables) - set(out))}")
        out += ready
    return out


def _row_text(row: tuple[Any, ...]) -> bytes:
    return repr(row).encode("utf-8", "surrogatepass") + b"\n"


class Source:
    """The SQLite file, locked for this process and read in one transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise Refused(f"no database at {path}; is --from-data-dir right?")
        self.conn = sqlite3.connect(str(path), isolation_level=None)
        try:
            self.conn.execute("PRAGMA busy_timeout = 2000")
            # In WAL mode every connection holds a shared lock on the file while open: an
            # exclusive connection's first read fails while a server has it, and holds every
            # other process off until this one closes.
            self.conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            self.conn.execute("BEGIN")
            self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as exc:
            self.conn.close()
            if "locked" in str(exc) or "busy" in str(exc):
                raise Refused(IN_USE.format(path=path)) from None
            raise Refused(f"cannot read {path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise Refused(f"cannot read {path}: {exc}") from None

    def check(self) -> tuple[int, dict[str, Columns]]:
        """The schema version and tables, refused unless they are exactly this rm-server's."""
        (version,) = self.conn.execute("PRAGMA user_version").fetchone()
        known = len(migrations("sqlite"))
        if version < known:
            raise Refused(f"{self.path} has schema version {version}, this rm-server's is {known}: start this "
                          "rm-server on the data dir once (it migrates the file), stop it, then run migrate-store")
        if version > known:
            raise Refused(f"{self.path} has schema version {version}, newer than this rm-server's ({known}): "
                          "run the migrate-store of the rm-server that wrote it")
        found, expected = _schema(self.conn), expected_schema()
        problems = _differences(found, expected)
        if problems:
            raise Refused(f"the schema of {self.path} differs from the one this rm-server makes: "
                          + "; ".join(problems[:10]))
        unruled = sorted(set(found) - COPIED - set(SKIPPED))
        if unruled:
            raise RuntimeError(f"migrate-store has no copy rule for {', '.join(unruled)}")
        return version, found

    def autoincrement(self, table: str) -> int:
        exists = self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone()
        row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone() if exists else None
        return int(row[0]) if row else 0

    def close(self) -> None:
        try:
            self.conn.execute("COMMIT")
        finally:
            self.conn.close()


class Target:
    """The PostgreSQL database: migrated, checked empty, written in one transaction."""

    def __init__(self, url: str) -> None:
        self.engine = PostgresEngine(url, "rm-server migrate-store")
        self.where = self.engine.where
        try:
            self.raw = self.engine.raw("copy")
        except psycopg.Error as exc:
            raise Refused(f"cannot connect to {self.where}: {_first_line(exc, url)}") from None

    def prepare(self, version: int, tables: dict[str, Columns]) -> None:
        present = {r[0] for r in self.raw.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            " AND table_type = 'BASE TABLE'")}
        foreign = sorted(present - set(tables) - {"rm_schema_version"})
        if foreign:
            raise Refused(f"{self.where} holds tables rm-server does not make ({', '.join(foreign[:10])}): "
                          "give migrate-store a database of its own, new and empty (createdb)")
        try:
            self.engine.migrate(PgConn(self.raw), migrations("postgresql"))
        except SchemaTooNew as exc:
            raise Refused(f"{self.where}: {exc}") from None
        (now,) = one(self.raw.execute("SELECT max(version) FROM rm_schema_version").fetchone())
        if now != version:
            raise Refused(f"{self.where} has schema version {now}, the source {version}")
        rows = []
        for t in sorted(tables):
            (count,) = one(self.raw.execute(f'SELECT count(*) FROM "{t}"').fetchone())
            if count:
                rows.append(f"{t} ({count} rows)")
        if rows:
            raise Refused(f"{self.where} is not empty: {', '.join(rows)}. migrate-store copies into an empty database "
                          "only (a server started on it writes rows at once): drop and create it again, or name another")
        for t, columns in tables.items():
            have = [r[0] for r in self.raw.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND table_name = %s ORDER BY ordinal_position", (t,))]
            if sorted(have) != sorted(c[0] for c in columns):
                raise RuntimeError(f"the PostgreSQL and SQLite migrations of {t} disagree: {have}")

    def identities(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.raw.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND (is_identity = 'YES' OR column_default LIKE 'nextval(%')")]

    def close(self) -> None:
        self.raw.close()


def _first_line(exc: BaseException, url: str) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    try:
        password = psycopg.conninfo.conninfo_to_dict(url).get("password")
    except psycopg.Error:
        password = None
    return text.replace(str(password), "***") if password else text


def _copy(source: Source, target: Target, table: Table, columns: Columns) -> None:
    names = ", ".join(f'"{c[0]}"' for c in columns)
    digest = hashlib.sha256()
    cur = source.conn.execute(f'SELECT {names} FROM "{table.name}" ORDER BY {_order_by(columns)}')
    with target.raw.cursor().copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
        while batch := cur.fetchmany(BATCH):
            for row in batch:
                if any(type(v) is str and "\x00" in v for v in row):
                    row = text_safe(row)
                    table.nul_rows += 1
                digest.update(_row_text(row))
                copy.write_row(row)
            table.rows += len(batch)
    table.checksum = digest.hexdigest()


def _read_back(target: Target, table: Table, columns: Columns) -> None:
    names = ", ".join(f'"{c[0]}"' for c in columns)
    digest, rows = hashlib.sha256(), 0
    with target.raw.cursor(name=f"verify_{table.name}") as cur:
        cur.itersize = BATCH
        cur.execute(f'SELECT {names} FROM "{table.name}" ORDER BY {_order_by(columns)}')
        for row in cur:
            digest.update(_row_text(tuple(row)))
            rows += 1
    table.target_rows, table.target_checksum = rows, digest.hexdigest()


def migrate(db_file: Path, url: str, say: Callable[[str], None] = lambda _: None) -> Report:
    """Copy the SQLite database `db_file` into the PostgreSQL database `url` and verify it.

    Raises Refused (nothing written), Mismatch (rolled back: the target is empty again)."""
    source = Source(db_file)
    try:
        version, schema = source.check()
        target = Target(url)
        try:
            target.prepare(version, schema)
            report = Report(str(db_file), target.where, version)
            say(f"copying {db_file} (schema {version}) into {target.where}")
            raw = target.raw
            raw.execute("BEGIN")
            try:
                for name in _parents_first(source.conn, sorted(schema)):
                    table = Table(name, skipped=SKIPPED.get(name))
                    report.tables.append(table)
                    if table.skipped is None:
                        _copy(source, target, table, schema[name])
                        say(f"  {name}: {table.rows} rows")
                for t, column in target.identities():
                    (top,) = one(raw.execute(f'SELECT max("{column}") FROM "{t}"').fetchone())
                    last = max(top or 0, source.autoincrement(t))
                    if last:
                        raw.execute("SELECT setval(pg_get_serial_sequence(%s, %s), %s)", (f'"{t}"', column, last))
                        report.identities[f"{t}.{column}"] = last
                for table in report.tables:
                    if table.skipped is None:
                        _read_back(target, table, schema[table.name])
                if report.mismatched:
                    raise Mismatch(report)
                raw.execute("COMMIT")
            except BaseException:
                try:
                    raw.execute("ROLLBACK")
                except psycopg.Error:
                    pass  # the connection is gone: the server rolled back for us
                raise
            for table in report.tables:  # the planner's statistics, before the first server reads
                if table.skipped is None:
                    raw.execute(f'ANALYZE "{table.name}"')
            return report
        finally:
            target.close()
    finally:
        source.close()
