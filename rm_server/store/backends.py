"""Which backend a database target names: a postgresql:// URL, or a SQLite file path."""

from __future__ import annotations

from pathlib import Path

from rm_server.store.db import Database


def is_postgres(target: str | Path) -> bool:
    return str(target).startswith(("postgresql://", "postgres://"))


def shown(target: str | Path) -> str:
    """The database as logs and messages may name it: a URL loses its password."""
    if not is_postgres(target):
        return str(target)
    from rm_server.store.postgres import redacted

    return redacted(str(target))


def has_password(url: str) -> bool:
    """Whether a PostgreSQL URL carries a password (which belongs in ~/.pgpass or the environment,
    never on a command line: other users can read a process's arguments)."""
    from psycopg import conninfo

    try:
        return bool(conninfo.conninfo_to_dict(url).get("password"))
    except Exception:  # noqa: BLE001 - an unparsable URL is reported when it is used
        return False


async def open_database(target: str | Path, application_name: str = "rm-server") -> Database:
    """Open (and migrate) the database `target` names."""
    if is_postgres(target):
        # imported only for PostgreSQL: a SQLite server never loads the driver
        from rm_server.store.postgres import PostgresEngine

        return await Database.open(PostgresEngine(str(target), application_name))
    from rm_server.store.sqlite import SqliteEngine

    return await Database.open(SqliteEngine(target))
