"""The webhook URL is a bearer secret for Slack/Teams-style hooks (item 11)."""

from __future__ import annotations

HOOK = "https://hooks.example.com/services/T000/B000/XXXXsecretXXXX"


async def test_webhook_url_hidden_from_viewers_and_redacted_in_audit(server):
    status, _ = await server.call("PUT", "/settings", role="admin", json={"webhook_url": HOOK})
    assert status == 200
    status, body = await server.call("GET", "/settings", role="admin")
    assert body["webhook_url"] == HOOK
    for role in ("viewer", "operator"):
        status, body = await server.call("GET", "/settings", role=role)
        assert status == 200 and "secret" not in str(body) and "hooks.example.com" in body["webhook_url"], body
    status, audit = await server.call("GET", "/audit", role="viewer")
    assert any(e["action"] == "settings.update" for e in audit["entries"])
    assert "XXXXsecretXXXX" not in str(audit)
