"""The type check (docs/architecture.md, "Types"): mypy, strict, with pydantic's plugin, over
the packages pyproject.toml's [tool.mypy] names, with no error and no module exempt.

mypy keeps its cache in .cache/mypy: after a small change a run takes a second or two; on a
fresh clone the first takes tens of seconds (beside the other tests, on the other worker).
The probes show the settings catch what a looser check let through; they are checked in the
same run as the packages."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
# Every package of the product (issue 22).
CHECKED = {"rm_core", "rm_server", "rm_agent", "rm_tui"}


def mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mypy", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)


def check_with_probes(probes: Path) -> subprocess.CompletedProcess[str]:
    """One mypy run for the packages and both probes below: on a fresh clone each run costs
    tens of CPU seconds, mostly loading the same packages and plugin (three runs took 26 + 36
    + 30 s), so one test makes it and checks the three things it shows."""
    (probes / "probe.py").write_text(PROBE)
    (probes / "store_probe.py").write_text(STORE_PROBE)
    # The packages as directories: mypy takes packages (-p) or files, not both in one run.
    return mypy(*sorted(CHECKED), str(probes / "probe.py"), str(probes / "store_probe.py"))


def errors_in(res: subprocess.CompletedProcess[str], name: str) -> list[str]:
    """mypy's error lines for the file named `name` (an error's path is relative when it is
    under ROOT, absolute for a probe in a temporary directory)."""
    return [line for line in res.stdout.splitlines() if ": error: " in line and Path(line.split(":")[0]).name == name]


def test_the_configuration_exempts_nothing():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config["strict"] is True
    assert "ignore-without-code" in config["enable_error_code"]  # every ignore names the one error it hides
    assert set(config["packages"]) >= CHECKED
    for key in ("ignore_errors", "disable_error_code", "follow_imports", "ignore_missing_imports"):
        assert key not in config, key
    for override in config.get("overrides", []):
        assert not set(override) & {"ignore_errors", "disable_error_code", "follow_imports"}, override


def test_mypy_finds_no_error_and_the_probes_are_caught(tmp_path):
    checked = check_with_probes(tmp_path)
    packages_have_no_error(checked)
    the_settings_catch_what_they_are_for(checked)
    store_rows_may_be_none(checked)


def packages_have_no_error(checked: subprocess.CompletedProcess[str]) -> None:
    assert checked.returncode == 1 and not checked.stderr.strip(), checked.stdout + checked.stderr  # the probes' errors
    errors = [line for line in checked.stdout.splitlines() if ": error: " in line]
    outside = [line for line in errors if Path(line.split(":")[0]).name not in ("probe.py", "store_probe.py")]
    assert errors and not outside, "\n".join(outside)
    summary = re.search(r"checked (\d+) source files", checked.stdout)
    assert summary, checked.stdout
    checked_files = int(summary.group(1))
    modules = sum(1 for pkg in CHECKED for _ in (ROOT / pkg).rglob("*.py"))
    assert checked_files >= modules + 2, (checked_files, modules)  # every module of every package, and the probes


PROBE = '''
import sqlite3
from typing import Any


class Tab:  # a mixin reading what its host class owns
    def title(self) -> str:
        return self.hostname


class Hosts:
    def list(self) -> list[str]:
        return []

    def names(self) -> list[str]:  # `list` here is the method above, not the builtin
        return []


def first(conn: sqlite3.Connection) -> int:
    row: sqlite3.Row | None = conn.execute("SELECT 1").fetchone()
    return row[0]


class App:
    pass


class Screen:
    app: App

    def client(self) -> Any:
        return self.app.client


def untyped(x):
    return x
'''


def the_settings_catch_what_they_are_for(checked: subprocess.CompletedProcess[str]) -> None:
    found = {line.split(": error: ", 1)[1] for line in errors_in(checked, "probe.py")}
    assert found >= {
        '"Tab" has no attribute "hostname"  [attr-defined]',
        'Function "probe.Hosts.list" is not valid as a type  [valid-type]',
        'Value of type "Row | None" is not indexable  [index]',
        '"App" has no attribute "client"  [attr-defined]',
        "Function is missing a type annotation  [no-untyped-def]",
    }, checked.stdout


# The store's rows (rm_server/store/db.py's Row): a lookup that may find nothing gives
# `Row | None`, whichever way it is read; the lines marked `# caught` must be errors, and a
# checked row or one() must not be.
STORE_PROBE = '''
from rm_server.store.base import Tx
from rm_server.store.db import Conn, Database, one


async def on_a_reader(db: Database) -> int:
    row = await db.fetchone("SELECT count(*) FROM hosts")
    return int(row[0])  # caught


async def in_a_transaction(tx: Tx) -> str:
    row = await tx.fetchone("SELECT kind FROM jobs WHERE id = ?", ("j",))
    return str(row["kind"])  # caught


def on_the_writer_thread(conn: Conn) -> int:
    (n,) = conn.execute("SELECT count(*) FROM hosts").fetchone()  # caught
    return int(n)


async def checked(db: Database) -> int:
    row = await db.fetchone("SELECT hostname FROM hosts WHERE id = ?", ("h",))
    if row is None:
        return 0
    return len(row["hostname"]) + int(one(await db.fetchone("SELECT count(*) FROM hosts"))[0])
'''


def store_rows_may_be_none(checked: subprocess.CompletedProcess[str]) -> None:
    caught = {n for n, line in enumerate(STORE_PROBE.splitlines(), start=1) if line.endswith("# caught")}
    errors = {int(line.split(":")[1]) for line in errors_in(checked, "store_probe.py")}
    assert errors == caught, checked.stdout
