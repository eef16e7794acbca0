"""ULID-style ids: 26 Crockford base32 chars, sortable by creation time."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(now_ms: int | None = None) -> str:
    """Return a new id; ids made later sort after ids made earlier (to the millisecond)."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def id_time_ms(ident: str) -> int:
    """Milliseconds since the epoch encoded in an id made by new_id."""
    value = 0
    for ch in ident[:10]:
        value = value * 32 + _ALPHABET.index(ch)
    return value  # 10 chars = 50 bits = the 48-bit timestamp behind two zero bits
