"""The SQLite backend: the embedded default, one file in the data dir.

Only SQLite ever opens the database file. POSIX advisory locks belong to the process, and
closing *any* descriptor of a file drops every lock the process holds on it: a stray
`os.open`/`os.close` of server.db in the server let another process (`rm-server operator
list`, `backup-db`) believe it was the last user, checkpoint and delete the WAL under the
running server, and writes the API had confirmed were lost (SQLite's "How To Corrupt An
SQLite Database File", §2.2; tests/reliability/test_second_process.py). The file is made
private with chmod, which opens nothing."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from rm_server.store.db import Conn, SchemaTooNew
from rm_server.store.dialect import SqliteDialect
from rm_server.store.lanes import LaneName


def _private(path: str) -> None:
    """The database holds sealed credentials, token hashes and the audit log: owner only,
    whatever umask it was created under. SQLite gives -wal and -shm the database file's
    mode when it creates them, so fixing the main file before WAL is on covers them; chmod
    of existing ones fixes older data dirs."""
    for name in (path, path + "-wal", path + "-shm", path + "-journal"):
        try:
            os.chmod(name, 0o600)
        except FileNotFoundError:
            pass


class SqliteEngine:
    dialect = SqliteDialect()
    begin = "BEGIN IMMEDIATE"
    version_sql = "PRAGMA data_version"

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.where = self.path

    def connect(self, lane: LaneName) -> Conn:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        try:
            conn.row_factory = sqlite3.Row
            if lane is LaneName.WRITER:
                _private(self.path)  # before WAL exists: -wal and -shm inherit the mode
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA synchronous = NORMAL")
            # 16 MiB of page cache per connection (the default is 2 MiB): at 19k hosts the hot
            # tables outgrow the default and every write re-reads pages.
            conn.execute("PRAGMA cache_size = -16384")
            if lane is LaneName.WRITER:
                conn.execute("PRAGMA journal_mode = WAL")
                _private(self.path)
            else:
                # A reader's first read checks the schema, which a corrupt file fails at once.
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self, conn: Conn) -> None:
        assert isinstance(conn, sqlite3.Connection)
        conn.close()

    def broken(self, conn: Conn) -> bool:
        return False  # a file does not go away under an open connection

    def disconnected(self, exc: BaseException) -> bool:
        return False

    def migrate(self, conn: Conn, known: list[tuple[int, str, str]]) -> None:
        assert isinstance(conn, sqlite3.Connection)
        (current,) = conn.execute("PRAGMA user_version").fetchone()
        if current > len(known):
            raise SchemaTooNew(
                f"database schema version {current} is newer than this rm-server understands "
                f"({len(known)}); run the newer rm-server or restore a backup"
            )
        for number, name, sql in known[current:]:
            try:
                # Each script holds its own BEGIN ... PRAGMA user_version = N; COMMIT.
                conn.executescript(sql)
            except Exception:
                if conn.in_transaction:
                    conn.rollback()
                raise
            (now,) = conn.execute("PRAGMA user_version").fetchone()
            if now != number:
                raise RuntimeError(f"migration {name} did not set user_version to {number}")

    @staticmethod
    def backup(conn: Conn, out: str) -> None:
        """Online backup (SQLite's backup API) of the database `conn` reads: consistent while
        the server keeps writing. Runs on a reader lane's thread."""
        assert isinstance(conn, sqlite3.Connection)
        target = sqlite3.connect(out)
        try:
            conn.backup(target)
        finally:
            target.close()

