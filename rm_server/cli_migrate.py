"""`rm-server migrate-store`: move a SQLite server's data into PostgreSQL (store/migrate_store.py),
then say what the operator does next (docs/operations.md, "PostgreSQL and replicas")."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from rm_server.cli_admin import warn_password_on_argv
from rm_server.store.backends import is_postgres

if TYPE_CHECKING:  # at run time imported by the command only: other commands never load psycopg
    from rm_server.store.migrate_store import Report


@click.command("migrate-store")
@click.option("--from-data-dir", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The data dir of the SQLite server to copy (stopped).")
@click.option("--to", "url", envvar="RM_DATABASE_URL", required=True, metavar="URL", show_envvar=True,
              help="postgresql://USER@HOST:PORT/DB, an empty database. Put its password in ~/.pgpass or "
                   "RM_DATABASE_URL, not here: other users can read a process's arguments.")
@click.pass_context
def migrate_store(ctx: click.Context, data_dir: Path, url: str) -> None:
    """Copy a SQLite server's data into an empty PostgreSQL database and verify it."""
    from rm_server.store.migrate_store import Mismatch, Refused, Report, migrate

    if not is_postgres(url):
        raise click.BadParameter("give a postgresql://USER@HOST:PORT/DB URL", param_hint="--to")
    warn_password_on_argv(ctx, "url", url)
    try:
        report = migrate(data_dir / "server.db", url, lambda line: click.echo(line, err=True))
    except Refused as exc:
        raise click.ClickException(str(exc)) from None
    except Mismatch as exc:
        _summary(exc.report)
        raise click.ClickException(
            f"the copy read back from PostgreSQL differs from the source in {exc}; nothing was committed, "
            f"{exc.report.target} is empty again") from None
    _summary(report)
    _next_steps(report, data_dir)


def _summary(report: Report) -> None:
    click.echo(f"{'table':<24}{'rows':>10}  {'sha256 (first 16)':<18} verified")
    for t in report.tables:
        if t.skipped:
            click.echo(f"{t.name:<24}{'-':>10}  {'-':<18} not copied: {t.skipped}")
            continue
        state = "ok" if t.matches else f"MISMATCH: PostgreSQL has {t.target_rows} rows, sha256 {t.target_checksum}"
        click.echo(f"{t.name:<24}{t.rows:>10}  {t.checksum[:16]:<18} {state}")
    nul = sum(t.nul_rows for t in report.tables)
    if nul:
        click.echo(f"{nul} rows held a NUL character in text, which PostgreSQL cannot store: it is U+FFFD now, "
                   "as a server on PostgreSQL stores it")


def _next_steps(report: Report, data_dir: Path) -> None:
    copied = [t for t in report.tables if not t.skipped]
    click.echo(f"{len(copied)} tables, {sum(t.rows for t in copied)} rows copied into {report.target}; "
               "every row count and checksum matches the source.")
    for name, last in report.identities.items():
        click.echo(f"{name} continues after {last}.")
    key = data_dir / "master.key"
    click.echo("Next:")
    click.echo(f"  1. Keep the SQLite server stopped for good: {data_dir} no longer receives what the fleet does.")
    click.echo(f"  2. Give every replica the master key {key} (mode 0600; every stored credential is sealed with it) "
               "and start each with: rm-server serve --database URL --master-key-file FILE (the URL's password in "
               "~/.pgpass or RM_DATABASE_URL).")
    if not key.exists():
        click.echo(f"     warning: {key} does not exist: without the key the server used, stored credentials and "
                   "notification channels cannot be opened", err=True)
    click.echo("  3. Give every replica the TLS certificate and key the old server used (with --self-signed: "
               f"{data_dir / 'tls-cert.pem'} and {data_dir / 'tls-key.pem'}) as --tls-cert/--tls-key, so agents and "
               "consoles keep the fingerprint they pinned.")
    click.echo("  4. Point the name the agents use at the replicas (a load balancer or DNS): docs/operations.md, "
               "\"PostgreSQL and replicas\".")
