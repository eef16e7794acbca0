"""Failed sign-ins slow down whoever makes them, never the account's owner elsewhere.

Two keys per attempt: the client address with the username (guessing one password) and
the address alone (spraying many usernames); an IPv6 address counts as its /64. The first `allowed` failures in the window
cost nothing; each further one doubles the wait before the next attempt (1 s, 2 s, 4 s …,
at most the window). A lockout per username would let anyone lock the admin out from
anywhere; keyed by address, the owner signing in from another address is never slowed,
and even from the attacker's own address gets in after the wait.

An attempt counts from the moment it is admitted, before the password hash is awaited:
guesses sent concurrently cannot all pass the check while none has failed yet.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from rm_server.errors import TooManyRequests

# Spraying many usernames from one address gets this many times the per-user allowance.
SPRAY_FACTOR = 5


@dataclass
class Attempt:
    keys: tuple[tuple[str, int], ...]
    pair: str
    done: bool = False


class LoginLimiter:
    def __init__(self, allowed: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.allowed = allowed
        self.window = window
        self.clock = clock
        self.failures: dict[str, deque[float]] = {}
        self.inflight: dict[str, int] = {}
        # Replicas (app.py): a failure here is told to the others, so spreading guesses over
        # replicas buys nothing; theirs arrive through failed_elsewhere().
        self.on_failure: Callable[[list[str]], None] | None = None

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self.failures.get(key)
        if q is None:
            return deque()
        while q and q[0] < now - self.window:
            q.popleft()
        if not q:
            del self.failures[key]
        return q

    def _wait(self, key: str, allowed: int, now: float) -> float:
        """Seconds before `key` may try again (0: now)."""
        recent = self._recent(key, now)
        busy = self.inflight.get(key, 0)
        over = len(recent) + busy - allowed
        if over < 0:
            return 0.0
        if busy:
            return 1.0  # the outcome of the attempts in flight decides the next wait
        delay = min(self.window, 2.0 ** over)
        return max(0.0, recent[-1] + delay - now)

    def begin(self, address: str, username: str) -> Attempt:
        """Admit one attempt or raise 429; the caller must `finish` it whatever happens."""
        now = self.clock()
        address = limited_as(address)
        pair = f"{address}|{username.lower()}"
        keys = ((pair, self.allowed), (address, self.allowed * SPRAY_FACTOR))
        wait = max(self._wait(key, allowed, now) for key, allowed in keys)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise TooManyRequests(f"too many failed sign-ins from this address; try again in {retry} s",
                                  {"retry_after": retry})
        for key, _ in keys:
            self.inflight[key] = self.inflight.get(key, 0) + 1
        return Attempt(keys, pair)

    def finish(self, attempt: Attempt, ok: bool) -> None:
        if attempt.done:
            return
        attempt.done = True
        now = self.clock()
        for key, _ in attempt.keys:
            left = self.inflight.get(key, 0) - 1
            if left > 0:
                self.inflight[key] = left
            else:
                self.inflight.pop(key, None)
            if not ok:
                self.failures.setdefault(key, deque()).append(now)
        if ok:
            self.failures.pop(attempt.pair, None)
        elif self.on_failure is not None:
            self.on_failure([key for key, _ in attempt.keys])

    def failed_elsewhere(self, keys: list[str]) -> None:
        """Failures another replica saw count here too, from now."""
        now = self.clock()
        for key in keys:
            self.failures.setdefault(key, deque()).append(now)


def limited_as(address: str) -> str:
    """The key an address is limited under: an IPv6 address by its /64 (one host or one
    customer holds a whole /64, 2^64 fresh addresses to guess from), an IPv4-mapped IPv6
    address as the IPv4 address it carries, anything else as it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return address


def client_address(remote: str | None, forwarded_for: str | None, trusted: frozenset[str]) -> str:
    """The address a request came from. X-Forwarded-For is believed only when the peer is a
    configured trusted proxy (anyone can send the header); the rightmost entry not itself a
    trusted proxy is the client, since a client can prepend whatever it likes."""
    remote = remote or "unknown"
    if not forwarded_for or remote not in trusted:
        return remote
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        try:
            addr = str(ipaddress.ip_address(hop))
        except ValueError:
            return remote
        if addr not in trusted:
            return addr
    return remote
