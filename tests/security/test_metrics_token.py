"""/metrics shows fleet size and job counts: not to anyone who can reach the port."""

from __future__ import annotations

from tests.security.helpers import custom_server


async def test_metrics_needs_the_metrics_token_or_a_session(server):
    status, body = await server.call("GET", f"{server.url}/metrics", role=None)
    assert status == 401 and body["error"]["code"] == "unauthorized", body
    status, _ = await server.call("GET", f"{server.url}/metrics", role=None,
                                  headers={"Authorization": "Bearer rmm_not-the-token"})
    assert status == 401
    token_file = server.data_dir / "metrics-token"
    assert token_file.stat().st_mode & 0o077 == 0
    status, text = await server.call("GET", f"{server.url}/metrics", role=None,
                                     headers={"Authorization": f"Bearer {token_file.read_text().strip()}"})
    assert status == 200 and "rm_hosts" in text
    status, text = await server.call("GET", f"{server.url}/metrics", role="viewer")
    assert status == 200 and "rm_jobs" in text


async def test_public_metrics_flag_opens_it(tmp_path):
    async with custom_server(tmp_path, public_metrics=True) as srv:
        status, text = await srv.call("GET", f"{srv.url}/metrics", role=None)
        assert status == 200 and "rm_hosts" in text
