"""A throwaway PostgreSQL cluster for tests and benches: initdb + pg_ctl on a temp dir, on a
free port, trust authentication on loopback only, durability off (nothing here must
survive a crash of the machine, and fsync per commit would measure the disk).

PostgreSQL refuses to run as root: as root the cluster runs as the `postgres` user that
Debian's package creates (scripts/test installs it when missing)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.processes import free_port

USER = "rm"


def pg_bin() -> Path | None:
    """Where initdb and pg_ctl are: $RM_PG_BIN, PATH, or Debian's /usr/lib/postgresql/N/bin."""
    if os.environ.get("RM_PG_BIN"):
        return Path(os.environ["RM_PG_BIN"])
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


# The test clusters' settings: durability off (see the module's doc), room for every lane of
# many servers at once.
SETTINGS = {"listen_addresses": "127.0.0.1", "fsync": "off", "synchronous_commit": "off",
            "full_page_writes": "off", "max_connections": "400", "shared_buffers": "128MB"}


class PgCluster:
    def __init__(self, base: Path | None = None, settings: dict[str, str] | None = None) -> None:
        """`settings` override SETTINGS (bench/replicas.py turns durability back on)."""
        self.bin = pg_bin()
        if self.bin is None:
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql, or set RM_PG_BIN)")
        self._tmp = None if base is not None else tempfile.mkdtemp(prefix="rm-pg-")
        self.base = Path(base or self._tmp)
        self.data = self.base / "pgdata"
        self.sockets = self.base / "sock"
        self.port = free_port()
        self.settings = {**SETTINGS, **(settings or {})}
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> "PgCluster":
        self.base.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        if self.as_user:
            pw = pwd.getpwnam("postgres")
            for path in (self.base, self.sockets):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")
        return self.resume()

    def halt(self) -> None:
        """Shut the server down as an operator would (`pg_ctl stop -m fast`: sessions ended,
        data kept); `resume()` starts it again on the same port."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def resume(self) -> "PgCluster":
        options = f"-p {self.port} -k {self.sockets} " + " ".join(f"-c {k}={v}" for k, v in self.settings.items())
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.base / "log"),
                  "-w", "-t", "60", "start")
        return self

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str, template: str | None = None) -> str:
        """CREATE DATABASE name [TEMPLATE t]; returns its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.url(name)

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                            "-w", "stop"], capture_output=True, timeout=60)
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


# The test run's cluster (tests/conftest.py starts it with RM_TEST_DATABASE=postgresql) and the
# databases made in it, by data dir. Kept here, not in conftest: a test that imports
# tests.conftest gets a second copy of that module, but one copy of this one.
SUITE: dict[str, Any] = {}


SEED = "rm_seed"  # a database where admin, operator and viewer exist (tests/conftest.py: seeded)


def suite_cluster() -> PgCluster:
    """This worker's cluster, started on first use with a migrated template database
    (rm_template); tests/conftest.py stops it when the session ends."""
    if "cluster" not in SUITE:
        import asyncio

        from rm_server.store import Store

        cluster = PgCluster().start()
        try:
            url = cluster.create_database("rm_template")

            async def migrate() -> None:
                await (await Store.open(url)).close()

            asyncio.run(migrate()) if not _loop_running() else _migrate_in_thread(migrate)
        except BaseException:
            cluster.stop()
            raise
        SUITE.update(cluster=cluster, databases={})
    return SUITE["cluster"]  # type: ignore[no-any-return]


def _loop_running() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _migrate_in_thread(migrate: Any) -> None:
    """asyncio.run() cannot nest inside a running loop (a test's): run it on a thread."""
    import asyncio
    import threading

    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(migrate())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def test_database(data_dir: Path, template: str = "rm_template") -> str:
    """The PostgreSQL URL for the server of this data dir: one database per data dir (from the
    migrated template), so a server restarted on the same dir finds its data."""
    cluster = suite_cluster()
    key = str(data_dir)
    databases = SUITE["databases"]
    if key not in databases:
        databases[key] = cluster.create_database(f"t{len(databases)}", template=template)
    return databases[key]  # type: ignore[no-any-return]


def seed_database() -> str:
    """The empty migrated database the seed is made in (then the template of each test's)."""
    return suite_cluster().create_database(SEED, template="rm_template")


def shared_or_own() -> Iterator[PgCluster]:
    """This worker's cluster, for tests that need PostgreSQL whichever backend the rest of
    the run uses (replicas, migrate-store)."""
    yield suite_cluster()
