"""The PostgreSQL backend: `rm-server serve --database postgresql://…` (or RM_DATABASE_URL).

Driver: psycopg 3, one synchronous connection per lane thread — the same shape as SQLite's
lanes, so every table module runs unchanged on both, and result rows are decoded on the
lane's thread instead of the event loop (bench/db_drivers.py, docs/benchmarks.md).

Table modules write `?` placeholders (SQLite's); `PgConn` turns them into psycopg's `%s`
(and doubles a literal `%`) once per statement text. Migrations run under a transaction-level
advisory lock, so replicas that start together migrate once."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, SupportsIndex, overload

import psycopg
from psycopg import conninfo

from rm_server.store.db import Conn, Cursor, SchemaTooNew
from rm_server.store.dialect import PostgresDialect
from rm_server.store.lanes import LaneName

MIGRATE_LOCK = 0x726D5F6D696772  # pg_advisory_xact_lock key while migrating ("rm_migr")


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> str:
    """`?` → `%s` outside quoted literals, `%` → `%%` everywhere (psycopg reads % as a
    placeholder even inside quotes when the statement has parameters)."""
    out, quoted = [], False
    for ch in sql:
        if ch == "'":
            quoted = not quoted
            out.append(ch)
        elif ch == "%":
            out.append("%%")
        elif ch == "?" and not quoted:
            out.append("%s")
        else:
            out.append(ch)
    return "".join(out)


class Row(tuple[Any, ...]):
    """A row read by index, by column name or by unpacking, as sqlite3.Row is (store/db.py's
    `Row` protocol)."""

    __slots__ = ()
    names: dict[str, int] = {}

    @overload
    def __getitem__(self, key: SupportsIndex | str, /) -> Any: ...

    @overload
    def __getitem__(self, key: slice, /) -> tuple[Any, ...]: ...

    def __getitem__(self, key: SupportsIndex | str | slice, /) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self.names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self.names)


@functools.lru_cache(maxsize=1024)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"names": {n: i for i, n in enumerate(names)}, "__slots__": ()})


def _row_factory(cursor: psycopg.Cursor[Any]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    description = cursor.description
    if description is None:
        return tuple
    return _row_class(tuple(c.name for c in description))


def text_safe(params: Sequence[Any]) -> tuple[Any, ...]:
    """PostgreSQL text cannot hold NUL (SQLite's can): a NUL an agent sent in a log line, or
    one in a looked-up id, becomes U+FFFD, so the line is kept and the lookup finds nothing
    (404), as on SQLite, instead of the statement failing. Names and URLs people type never
    get here with a NUL: rm_core's models refuse control characters."""
    return tuple(p.replace("\x00", "\ufffd") if type(p) is str and "\x00" in p else p for p in params)


class PgConn:
    """A psycopg connection as the store's functions use one: `?` placeholders, explicit
    BEGIN/COMMIT (autocommit otherwise, so a read never holds a snapshot open)."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        if params:
            return self.raw.execute(translate(sql), text_safe(params))
        return self.raw.execute(sql)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Cursor:
        cur = self.raw.cursor()
        cur.executemany(translate(sql), [text_safe(r) for r in rows])
        return cur

    def insert_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """Many rows in one COPY: log ingest's insert, where executemany spent ~75 % of the
        writer thread binding and sending one row at a time (bench/replicas.py, py-spy)."""
        count = 0
        with self.raw.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(text_safe(row))
                count += 1
        return count

    def commit(self) -> None:
        self.raw.execute("COMMIT")

    def rollback(self) -> None:
        self.raw.execute("ROLLBACK")


def redacted(url: str) -> str:
    """The URL as logs and errors may show it: no password, whatever form it was given in."""
    try:
        params = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    user = params.get("user")
    host = params.get("host") or "localhost"
    port = params.get("port")
    return f"postgresql://{f'{user}@' if user else ''}{host}{':' + str(port) if port else ''}/{params.get('dbname') or ''}"


class PostgresEngine:
    dialect = PostgresDialect()
    begin = "BEGIN"
    # Which transactions are visible: it changes whenever anyone commits (any replica).
    version_sql = "SELECT pg_current_snapshot()::text"

    def __init__(self, url: str, application_name: str = "rm-server") -> None:
        self.url = url
        self.where = redacted(url)
        self.application_name = application_name

    def connect(self, lane: LaneName) -> Conn:
        return PgConn(self.raw(lane.value))

    def raw(self, purpose: str) -> psycopg.Connection[Any]:
        """A new autocommit connection, named for what it is for (pg_stat_activity shows it)."""
        raw = psycopg.connect(self.url, autocommit=True, row_factory=_row_factory,
                              application_name=f"{self.application_name} {purpose}",
                              # a replica's machine that vanishes is noticed by the database in
                              # ~25 s: its advisory locks (leadership, liveness) are then released
                              keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
                              connect_timeout=10)
        raw.execute("SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3")
        return raw

    def close(self, conn: Conn) -> None:
        assert isinstance(conn, PgConn)
        conn.raw.close()

    def disconnected(self, exc: BaseException) -> bool:
        """The error is the session's end (restart, termination, network), not the statement's."""
        if not isinstance(exc, psycopg.OperationalError):
            return False
        state = exc.sqlstate  # None: the client found the session gone; 08: connection; 57P: shutdown
        return state is None or state.startswith(("08", "57P"))

    def broken(self, conn: Conn) -> bool:
        """The server closed the session (a restart, a terminated backend, a network cut)."""
        assert isinstance(conn, PgConn)
        return bool(conn.raw.broken or conn.raw.closed)

    def migrate(self, conn: Conn, known: list[tuple[int, str, str]]) -> None:
        assert isinstance(conn, PgConn)
        raw = conn.raw
        raw.execute("BEGIN")
        try:
            raw.execute(f"SELECT pg_advisory_xact_lock({MIGRATE_LOCK})")
            raw.execute("CREATE TABLE IF NOT EXISTS rm_schema_version (version INTEGER NOT NULL)")
            row = raw.execute("SELECT max(version) FROM rm_schema_version").fetchone()
            current = (row[0] if row else None) or 0
            if current > len(known):
                raise SchemaTooNew(
                    f"database schema version {current} is newer than this rm-server understands "
                    f"({len(known)}); run the newer rm-server or restore a backup")
            for number, _name, sql in known[current:]:
                raw.execute(sql)  # a script: several statements, no parameters
                raw.execute("DELETE FROM rm_schema_version")
                raw.execute(translate("INSERT INTO rm_schema_version (version) VALUES (?)"), (number,))
            raw.execute("COMMIT")
        except BaseException:
            raw.execute("ROLLBACK")
            raise
