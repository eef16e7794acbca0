"""rm-tui: the operator console; its flags, screens and keys are in docs/tui.md."""

from __future__ import annotations

import click

from rm_core.fingerprints import normalise_fingerprint

DEFAULT_SERVER = "http://127.0.0.1:8950"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--server", "server_url", envvar="RM_SERVER", default=DEFAULT_SERVER, show_default=True,
              help="Server URL (default from $RM_SERVER).")
@click.option("--fingerprint", default=None,
              help="Pin the server's TLS certificate: SHA-256 of its DER form, hex (colons allowed).")
@click.option("--readonly", is_flag=True, help="Hide and refuse every action that changes something.")
def main(server_url: str, fingerprint: str | None, readonly: bool) -> None:
    """Watch and drive a restic-manager fleet from the terminal."""
    from rm_tui.app import make_app

    try:
        fingerprint = normalise_fingerprint(fingerprint)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fingerprint") from None
    if fingerprint and not server_url.startswith("https://"):
        raise click.BadParameter("a pinned fingerprint needs an https:// server URL", param_hint="--server")
    make_app(server_url, fingerprint, readonly).run()


if __name__ == "__main__":
    main()
