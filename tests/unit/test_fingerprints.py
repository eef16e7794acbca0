"""rm_core.fingerprints: one spelling of a pinned certificate for agent and console."""

from __future__ import annotations

import pytest

from rm_core.fingerprints import FingerprintError, normalise_fingerprint


def test_fingerprint_normalised() -> None:
    assert normalise_fingerprint("AB:" * 31 + "AB") == "ab" * 32
    assert normalise_fingerprint("sha256:" + "0" * 64) == "0" * 64
    assert normalise_fingerprint(None) is None
    with pytest.raises(FingerprintError, match="64 hex"):
        normalise_fingerprint("abc")
