"""Failed sign-ins are recorded: one audit entry and one log line each (who tried which
username from where, never the password), and a flood of them costs the audit a bounded
number of rows a minute, the rest counted in one summary entry."""

from __future__ import annotations

import logging

from rm_server.keys import SIGN_INS
from tests.conftest import ADMIN_PASSWORD, wait_for
from tests.security.helpers import client_from, custom_server, login

SECRET_GUESS = "hunter2-never-recorded"


async def audit(server, action: str) -> list[dict]:
    status, body = await server.call("GET", "/audit?limit=500")
    assert status == 200, body
    return [e for e in body["entries"] if e["action"] == action]


async def test_each_failed_sign_in_is_in_the_audit_and_the_log_without_the_password(server, caplog):
    caplog.set_level(logging.INFO, logger="rm_server")
    async with client_from("127.0.0.3") as client:
        assert (await login(client, server, "operator", SECRET_GUESS))[0] == 401
        assert (await login(client, server, "nobody-here", SECRET_GUESS))[0] == 401
    status, _ = await server.call("PATCH", f"/operators/{await operator_id(server, 'viewer')}",
                                  json={"disabled": True})
    assert status == 200
    assert (await login(server.http, server, "viewer", ADMIN_PASSWORD))[0] == 401
    assert (await login(server.http, server, "admin", ADMIN_PASSWORD))[0] == 200  # a success is not a failure

    failed = await audit(server, "auth.login_failed")
    by_user = {e["target"]: e for e in failed}
    assert set(by_user) == {"operator", "nobody-here", "viewer"}, failed
    assert by_user["operator"]["details"] == {"username": "operator", "address": "127.0.0.3",
                                              "reason": "wrong_password"}
    assert by_user["nobody-here"]["details"]["reason"] == "unknown_user"
    assert by_user["viewer"]["details"] == {"username": "viewer", "address": "127.0.0.1", "reason": "disabled"}
    assert by_user["operator"]["actor_kind"] == "client" and by_user["operator"]["actor_name"] == "127.0.0.3"

    lines = [r.getMessage() for r in caplog.records if "sign-in failed" in r.getMessage()]
    assert len(lines) == 3, lines
    assert any("'operator'" in ln and "127.0.0.3" in ln and "wrong password" in ln for ln in lines), lines
    _, everything = await server.call("GET", "/audit?limit=500")
    assert SECRET_GUESS not in str(everything) and ADMIN_PASSWORD not in str(everything)
    assert SECRET_GUESS not in caplog.text and ADMIN_PASSWORD not in caplog.text


async def operator_id(server, username: str) -> str:
    status, ops = await server.call("GET", "/operators")
    assert status == 200, ops
    return next(o["id"] for o in ops["operators"] if o["username"] == username)


async def test_a_flood_of_failures_is_counted_not_listed(tmp_path):
    """20 addresses behind a trusted proxy, 2 wrong passwords each (40 failures, none refused
    by the per-address limit): the audit lists the first 10 of the window, and when the
    window closes one summary entry counts the other 30."""
    async with custom_server(tmp_path, trusted_proxies=frozenset({"127.0.0.1"}), sign_in_audit_per_window=10,
                             sign_in_audit_window_seconds=3600) as srv:
        for i in range(20):
            for _ in range(2):
                status, _ = await login(srv.http, srv, "admin", SECRET_GUESS, {"X-Forwarded-For": f"198.51.100.{i}"})
                assert status == 401
        assert len(await audit(srv, "auth.login_failed")) == 10
        assert await audit(srv, "auth.login_failed_summary") == []
        await srv.app[SIGN_INS].close_window()  # what the window's timer does at its end
        (summary,) = await audit(srv, "auth.login_failed_summary")
        assert summary["details"] == {"unlisted": 30, "listed": 10, "window_seconds": 3600}, summary
        assert summary["actor_kind"] == "system"
        # The next window lists again.
        assert (await login(srv.http, srv, "admin", SECRET_GUESS, {"X-Forwarded-For": "203.0.113.1"}))[0] == 401
        assert len(await audit(srv, "auth.login_failed")) == 11


async def test_the_summary_is_written_when_the_window_ends_even_if_the_flood_stopped(tmp_path):
    async with custom_server(tmp_path, sign_in_audit_per_window=1, sign_in_audit_window_seconds=2) as srv:
        for _ in range(3):
            assert (await login(srv.http, srv, "operator", SECRET_GUESS))[0] == 401
        summary = await wait_for(lambda: audit(srv, "auth.login_failed_summary"), 15, "the summary entry")
        assert summary[0]["details"]["unlisted"] == 2, summary
