"""Pinned server certificates: the one spelling of a SHA-256 fingerprint (agent and console)."""

from __future__ import annotations


class FingerprintError(ValueError):
    """Not a SHA-256 hex digest; the message shows what was given."""


def normalise_fingerprint(fp: str | None) -> str | None:
    """Lowercase hex SHA-256 of the DER certificate; colons, spaces and a `sha256:` prefix accepted."""
    if not fp:
        return None
    clean = fp.replace(":", "").replace(" ", "").strip().lower()
    if clean.startswith("sha256"):
        clean = clean[len("sha256"):].lstrip("=")
    if len(clean) != 64 or any(c not in "0123456789abcdef" for c in clean):
        raise FingerprintError(f"fingerprint {fp!r} is not a SHA-256 hex digest (64 hex characters)")
    return clean
