"""Monotonic ULIDs: 26 Crockford base32 chars, strictly increasing within a process.

The first 48 bits are the creation time in milliseconds, the last 80 are random. Two ids
made in the same millisecond (or after the clock stepped back) would sort at random, so,
as the ULID spec's monotonic mode does, the second one is the first plus one: listings
ordered by id are then ordered by creation, which paging and the job list rely on.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Optional

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
_lock = threading.Lock()
_last = 0  # the last value handed out by the clock path


# Two digits per lookup (10 bits): a fleet push makes thousands of ids at once, and a
# Python step per digit showed in its profile.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_SHIFTS = tuple(range(120, -1, -10))


def _encode(value: int) -> str:
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


def new_id(now_ms: Optional[int] = None) -> str:
    """Return a new id, greater than every id this process made before from the clock.

    An explicit ``now_ms`` (benchmarks seeding history) makes an id for that instant and
    leaves the monotonic sequence alone.
    """
    if now_ms is not None:
        return _encode((now_ms << _RANDOM_BITS) | int.from_bytes(os.urandom(10), "big"))
    global _last
    with _lock:
        value = (int(time.time() * 1000) << _RANDOM_BITS) | int.from_bytes(os.urandom(10), "big")
        if value <= _last:
            value = _last + 1  # same millisecond or a clock step back: keep the order
        _last = value
    return _encode(value)


def new_ids(count: int) -> list[str]:
    """`count` ids from one clock reading, each greater than the one before (one lock, not
    `count`): what a fleet push needs for thousands of new rows."""
    global _last
    with _lock:
        value = (int(time.time() * 1000) << _RANDOM_BITS) | int.from_bytes(os.urandom(10), "big")
        if value <= _last:
            value = _last + 1
        values = range(value, value + count)
        _last = value + count - 1 if count else _last
    return [_encode(v) for v in values]


def id_time_ms(ident: str) -> int:
    """Milliseconds since the epoch encoded in an id made by new_id."""
    value = 0
    for ch in ident[:10]:
        value = value * 32 + _ALPHABET.index(ch)
    return value  # 10 chars = 50 bits = the 48-bit timestamp behind two zero bits
