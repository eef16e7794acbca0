"""Credentials in repository URLs never shown: passwords with '/' or spaces (item 16)."""

from __future__ import annotations

import pytest

from rm_core.urls import redact_url


@pytest.mark.parametrize("url,secret", [
    ("rest:https://user:ab/cd@host/", "ab/cd"),
    ("rest:https://user:ab cd@host/", "ab cd"),
    ("rest:https://user:p@ss@host:8000/repo", "p@ss"),
])
def test_redact_url_hides_awkward_passwords(url, secret):
    shown = redact_url(url)
    assert secret not in shown and "host" in shown, shown


@pytest.mark.parametrize("password", ["ab/cd", "ab cd"])
async def test_repo_url_with_awkward_password_is_redacted_in_the_api(server, password):
    host_id, _ = await server.enroll()
    url = f"rest:https://user:{password}@backup.example/web-1"
    status, body = await server.call("PUT", f"/hosts/{host_id}/repo", role="operator",
                                     json={"url": url, "password": "repo-pass"})
    assert status == 200, body
    status, body = await server.call("GET", f"/hosts/{host_id}/repo", role="viewer")
    assert password not in body["url"] and "backup.example" in body["url"], body
    status, audit = await server.call("GET", "/audit", role="viewer")
    assert password not in str(audit)
