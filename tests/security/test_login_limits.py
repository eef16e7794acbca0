"""Sign-in limits: concurrency cannot bypass them (item 1), and nobody can lock the owner
out (item 7)."""

from __future__ import annotations

import asyncio

from rm_server.keys import LIMITER
from tests.conftest import ADMIN_PASSWORD
from tests.security.helpers import client_from, custom_server, login

WRONG = "wrong-password"


async def test_concurrent_wrong_logins_cannot_pass_the_limit(server):
    """60 concurrent guesses for one user, the right password as #50: at most the allowed
    10 are checked and the right one, arriving after them, is refused."""
    attempts = [login(server.http, server, "operator", ADMIN_PASSWORD if i == 49 else WRONG) for i in range(60)]
    results = await asyncio.gather(*attempts)
    statuses = [status for status, _ in results]
    assert statuses.count(401) <= 10, statuses
    assert statuses[49] == 429, results[49]
    assert statuses.count(200) == 0
    assert all(s in (401, 429) for s in statuses)


async def test_failures_from_one_address_do_not_lock_out_the_owner(server):
    """Ten (and more) wrong passwords for the admin from 127.0.0.2 leave the admin free to
    sign in from 127.0.0.1 at once."""
    async with client_from("127.0.0.2") as attacker:
        results = [await login(attacker, server, "admin", WRONG) for _ in range(15)]
    assert [s for s, _ in results[:10]] == [401] * 10
    assert {s for s, _ in results[10:]} == {429}
    async with client_from("127.0.0.1") as owner:
        status, body = await login(owner, server, "admin", ADMIN_PASSWORD)
    assert status == 200, body


async def test_backoff_not_lockout_on_the_same_address(server):
    """Even from the attacker's own address the owner gets in after a short wait (the
    limiter's clock is moved, not slept on)."""
    limiter = server.app[LIMITER]
    now = [1000.0]
    limiter.clock = lambda: now[0]
    for _ in range(10):
        status, _ = await login(server.http, server, "viewer", WRONG)
        assert status == 401
    status, body = await login(server.http, server, "viewer", ADMIN_PASSWORD)
    assert status == 429 and 1 <= body["error"]["details"]["retry_after"] <= 2, body
    now[0] += 2
    status, body = await login(server.http, server, "viewer", ADMIN_PASSWORD)
    assert status == 200, body


async def test_forwarded_for_ignored_unless_the_proxy_is_trusted(server):
    """Without --trusted-proxy a client cannot buy fresh attempts by inventing addresses."""
    for i in range(10):
        status, _ = await login(server.http, server, "viewer", WRONG, {"X-Forwarded-For": f"198.51.100.{i}"})
        assert status == 401
    status, _ = await login(server.http, server, "viewer", WRONG, {"X-Forwarded-For": "198.51.100.99"})
    assert status == 429


async def test_behind_a_trusted_proxy_clients_are_told_apart(tmp_path):
    """Behind the documented TLS proxy every request comes from the proxy's address; with
    the proxy trusted, one attacker behind it does not lock out the owner behind it."""
    async with custom_server(tmp_path, trusted_proxies=frozenset({"127.0.0.1"})) as srv:
        for _ in range(12):
            status, _ = await login(srv.http, srv, "admin", WRONG, {"X-Forwarded-For": "203.0.113.9"})
            assert status in (401, 429)
        status, body = await login(srv.http, srv, "admin", ADMIN_PASSWORD, {"X-Forwarded-For": "198.51.100.7"})
        assert status == 200, body


async def test_ipv6_addresses_of_one_network_share_one_limit(tmp_path):
    """One IPv6 host holds a whole /64 (2^64 addresses): keyed on the exact address, each
    guess could come from a fresh one. Addresses are grouped by /64; another /64 (the owner)
    is not slowed, and IPv4-mapped addresses count as the IPv4 address they carry."""
    async with custom_server(tmp_path, trusted_proxies=frozenset({"127.0.0.1"})) as srv:
        for i in range(10):
            status, _ = await login(srv.http, srv, "admin", WRONG, {"X-Forwarded-For": f"2001:db8:1:2::{i + 1:x}"})
            assert status == 401
        for fresh in ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2:abcd::1"):
            status, _ = await login(srv.http, srv, "admin", WRONG, {"X-Forwarded-For": fresh})
            assert status == 429, fresh
        status, body = await login(srv.http, srv, "admin", ADMIN_PASSWORD, {"X-Forwarded-For": "2001:db8:1:3::1"})
        assert status == 200, body
        for _ in range(10):
            status, _ = await login(srv.http, srv, "viewer", WRONG, {"X-Forwarded-For": "::ffff:192.0.2.7"})
            assert status == 401
        status, _ = await login(srv.http, srv, "viewer", WRONG, {"X-Forwarded-For": "192.0.2.8"})
        assert status == 401  # another IPv4 address: its own limit
        status, _ = await login(srv.http, srv, "viewer", WRONG, {"X-Forwarded-For": "192.0.2.7"})
        assert status == 429
