"""rm_core.api.ErrorBody: the one reader of the server's error envelope (agent CLI, console)."""

from __future__ import annotations

from rm_core.api import ErrorBody


def test_error_envelope_is_read_and_a_missing_one_names_the_status() -> None:
    body = {"error": {"code": "token_invalid", "message": "enrollment token expired", "details": {"x": 1}}}
    assert ErrorBody.from_envelope(body, 401) == ErrorBody(code="token_invalid", message="enrollment token expired",
                                                          details={"x": 1})
    assert ErrorBody.from_envelope("<html>bad gateway</html>", 502) == ErrorBody(
        code="http_error", message="server answered HTTP 502")
    assert ErrorBody.from_envelope({"error": {"details": None}}, 500) == ErrorBody(code="error", message="HTTP 500")
