"""`rm-server operator …` and `rm-server host …`: what an admin does without the console,
straight on the database: SQLite in the data dir, or the replicas' PostgreSQL (--database).
Safe while servers run: SQLite serialises the writers through its own locks, PostgreSQL through
its transactions, and the servers see the change (docs/operations.md, "Admin commands")."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import click
from pydantic import BaseModel, ValidationError

from rm_core.api import Operator, OperatorCreate
from rm_core.enums import Role
from rm_server.config import data_dir_default
from rm_server.security import hash_password
from rm_server.startup import database_error, why
from rm_server.store import Actor, Conflict, NotFound, SchemaTooNew, Store
from rm_server.store.backends import has_password, is_postgres, shown

T = TypeVar("T")

DATA_DIR = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=data_dir_default,
    show_default="$RM_DATA_DIR or ~/.local/share/restic-manager", help="Where the database and keys live.",
)


def warn_password_on_argv(ctx: click.Context, param: str, url: str | None) -> None:
    """A password in a URL given as an argument is readable by every user (ps): say so."""
    if url is None or ctx.get_parameter_source(param) is not click.core.ParameterSource.COMMANDLINE:
        return
    if has_password(url):
        click.echo("warning: the database password is on the command line, where other users can read it; "
                   "put it in ~/.pgpass (or RM_DATABASE_URL) instead", err=True)


def _database_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    if not is_postgres(value):
        raise click.BadParameter("give a postgresql://USER@HOST:PORT/DB URL (without it: SQLite in the data dir)")
    warn_password_on_argv(ctx, param.name or "database", value)
    return value


DATABASE = click.option(
    "--database", envvar="RM_DATABASE_URL", default=None, metavar="URL", callback=_database_url,
    help="postgresql://USER@HOST:PORT/DB: the replicas' database (default: SQLite in the data dir). Put its "
         "password in ~/.pgpass or RM_DATABASE_URL, not here: other users can read a process's arguments.",
)


def _actor() -> Actor:
    return Actor("cli", None, os.environ.get("SUDO_USER") or os.environ.get("USER") or "cli")


def _with_store(data_dir: Path, database: str | None, job: Callable[[Store], Awaitable[T]], *,
                create: bool = False) -> T:
    """Run `job` on the store: the PostgreSQL database given, else the data dir's SQLite file."""
    db = data_dir / "server.db"
    if database is None and not create and not db.exists():
        raise click.ClickException(f"no database at {db}; is --data-dir right (or $RM_DATA_DIR)?")

    async def run() -> T:
        if database is None and create:
            data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = await Store.open(database or db, application_name="rm-server admin")
        try:
            return await job(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except (Conflict, NotFound, SchemaTooNew) as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:
        if database_error(exc) is None:
            raise
        raise click.ClickException(f"cannot use the database {shown(database or db)}: {why(exc)}") from None


def _password(given: str | None) -> str:
    if given is not None:
        return given
    # Confirm when a person types it; a script piping it in gives it once.
    tty = sys.stdin.isatty()
    return click.prompt("Password", hide_input=tty, confirmation_prompt=tty)


def _check(name: str, password: str, role: Role) -> None:
    try:
        OperatorCreate(username=name, password=password, role=role)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise click.UsageError(problems) from None


async def _find(store: Store, name: str) -> Operator:
    for op in await store.operators.all():
        if op.username == name:
            return op
    raise click.ClickException(f"no operator named {name!r} (rm-server operator list shows them)")


# For scripts: the collection as GET /api/v1/<key> answers it (docs/api.md), one JSON document.
JSON_OUT = click.option("--json", "as_json", is_flag=True,
                        help="Print {\"<plural>\": [...]} as the REST API answers it, for scripts.")


def _print_json(key: str, items: Sequence[BaseModel]) -> None:
    click.echo(json.dumps({key: [item.model_dump(mode="json") for item in items]}, indent=2))


PASSWORD = click.option("--password", envvar="RM_OPERATOR_PASSWORD", default=None, show_envvar=True,
                        help="Prompted for when not given (avoid the flag: argv is visible to other users).")


@click.group()
def operator() -> None:
    """Manage operator accounts."""


@operator.command("list")
@DATA_DIR
@DATABASE
@JSON_OUT
def operator_list(data_dir: Path, database: str | None, as_json: bool) -> None:
    """List operators: name, role, state."""
    ops = _with_store(data_dir, database, lambda s: s.operators.all())
    if as_json:
        _print_json("operators", ops)
        return
    for op in ops:
        click.echo(f"{op.username:<24} {op.role.value:<9} {'disabled' if op.disabled else 'active'}")
    if not ops:
        click.echo("no operators yet (rm-server operator add NAME --role admin)")


@operator.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@DATA_DIR
@DATABASE
@PASSWORD
def operator_add(name: str, role: str, data_dir: Path, database: str | None, password: str | None) -> None:
    """Create an operator account."""
    password = _password(password)
    _check(name, password, Role(role))
    op = _with_store(data_dir, database, lambda s: s.operators.create(_actor(), name, Role(role), hash_password(password)),
                     create=True)
    if op.role == Role.admin:
        # An admin exists: the one-time bootstrap token has nothing left to open.
        (data_dir / "bootstrap-token").unlink(missing_ok=True)
    click.echo(f"operator {op.username} ({op.role.value}) created")


@operator.command("passwd")
@click.argument("name")
@DATA_DIR
@DATABASE
@PASSWORD
def operator_passwd(name: str, data_dir: Path, database: str | None, password: str | None) -> None:
    """Set an operator's password (signs their sessions out)."""
    password = _password(password)

    async def job(store: Store) -> Operator:
        op = await _find(store, name)
        _check(name, password, op.role)
        return await store.operators.update(_actor(), op.id, role=None, password_hash=hash_password(password),
                                            disabled=None)

    _with_store(data_dir, database, job)
    click.echo(f"password of {name} changed; their sessions are signed out")


@operator.command("disable")
@click.argument("name")
@click.option("--enable", is_flag=True, help="Enable the account again instead.")
@DATA_DIR
@DATABASE
def operator_disable(name: str, enable: bool, data_dir: Path, database: str | None) -> None:
    """Disable an operator (signs them out) or, with --enable, enable them again."""

    async def job(store: Store) -> Operator:
        op = await _find(store, name)
        return await store.operators.update(_actor(), op.id, role=None, password_hash=None, disabled=not enable)

    _with_store(data_dir, database, job)
    click.echo(f"operator {name} {'enabled' if enable else 'disabled'}")


@operator.command("remove")
@click.argument("name")
@DATA_DIR
@DATABASE
def operator_remove(name: str, data_dir: Path, database: str | None) -> None:
    """Delete an operator account."""

    async def job(store: Store) -> None:
        op = await _find(store, name)
        await store.operators.delete(_actor(), op.id)

    _with_store(data_dir, database, job)
    click.echo(f"operator {name} removed")


@click.group()
def host() -> None:
    """Inspect and remove enrolled hosts."""


@host.command("list")
@DATA_DIR
@DATABASE
@JSON_OUT
def host_list(data_dir: Path, database: str | None, as_json: bool) -> None:
    """List hosts: id, name, status, last seen (the server's view of them)."""
    hosts = _with_store(data_dir, database, lambda s: s.hosts.page())
    if as_json:
        _print_json("hosts", hosts)
        return
    for h in hosts:
        seen = h.last_seen.isoformat(timespec="seconds") if h.last_seen else "never"
        click.echo(f"{h.id}  {h.hostname:<24} {h.status.value:<8} last seen {seen}")
    if not hosts:
        click.echo("no hosts enrolled yet")


@host.command("remove")
@click.argument("host_id")
@DATA_DIR
@DATABASE
def host_remove(host_id: str, data_dir: Path, database: str | None) -> None:
    """Delete a host and its agent token (the agent is refused from then on)."""
    _with_store(data_dir, database, lambda s: s.hosts.delete(_actor(), host_id))
    click.echo(f"host {host_id} removed; uninstall its agent with: "
               "sh /usr/local/lib/restic-manager/install.sh --uninstall --purge")
