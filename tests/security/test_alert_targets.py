"""Where the server's alerts may go (issue 18 item 7): a webhook or channel never follows a
redirect, never targets a link-local address (cloud metadata) unless the admin starts the
server with --allow-link-local-alerts, and a channel's secrets never come back in errors."""

from __future__ import annotations

import aiohttp
import pytest

from rm_core.alerts import redact_channel_url
from rm_core.urls import is_link_local, url_host
from rm_server.alert_send import resolves_link_local, scrub, send
from rm_server.keys import NOTIFIER
from tests.alert_receivers import json_receiver
from tests.conftest import FakeClock, Server, set_webhook, sign_in_roles, start_server, wait_for


@pytest.mark.parametrize("address, expected", [
    ("169.254.169.254", True), ("169.254.0.1", True), ("fe80::1", True), ("[fe80::a:b]", True),
    ("fe80::1%eth0", True), ("febf::1", True), ("::ffff:169.254.169.254", True),
    ("127.0.0.1", False), ("10.0.0.1", False), ("::1", False), ("fec0::1", False), ("169.255.0.1", False),
    ("metadata.google.internal", False), ("", False),
])
def test_link_local_addresses(address, expected):
    assert is_link_local(address) is expected


@pytest.mark.parametrize("url, host", [
    ("http://169.254.169.254/latest/meta-data", "169.254.169.254"), ("json://u:p@[fe80::1]:80/x", "fe80::1"),
    ("mailto://smtp.example.com?to=a@b", "smtp.example.com"), ("slack://T0/B0/C0", "T0"), ("nonsense", None),
])
def test_url_host(url, host):
    assert url_host(url) == host


@pytest.mark.parametrize("url, shown", [
    ("json://user:pw@hooks.example.com:8080/x/y?token=abc", "json://hooks.example.com:8080/…"),
    ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ", "slack://T…2/…"),
    ("ntfy://mysecrettopic", "ntfy://m…c/…"),
    ("mailtos://user:app-pw@smtp.example.com?to=ops@example.com", "mailtos://smtp.example.com/…"),
    ("json://localhost/hook", "json://localhost/…"),
    ("tgram://123456789:ABCdef/-100123", "tgram://1…9/…"),
])
def test_channel_urls_show_scheme_and_host_only(url, shown):
    assert redact_channel_url(url) == shown


def test_an_error_text_loses_every_secret_part_of_the_url():
    url = "json://alerts:pa55word@hooks.example.com/path/t0ken123?+X-Key=hdr-secret&a=b"
    text = f"failed for {url}: user alerts pa55word at /path/t0ken123 header hdr-secret"
    out = scrub(text, url)
    for part in ("pa55word", "t0ken123", "hdr-secret", url):
        assert part not in out, out


def test_a_link_local_channel_is_refused_before_any_connection():
    # the literal check runs before Apprise is asked: nothing is sent to the address
    assert resolves_link_local("169.254.169.254") and resolves_link_local("fe80::1")
    assert not resolves_link_local("localhost") and not resolves_link_local("T1JJ3T3L2")
    error = send("json://169.254.169.254/latest", "t", "b", timeout=1)
    assert error is not None and error.startswith("refused:") and "--allow-link-local-alerts" in error


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/iam", "https://[fe80::1]/hook",
                                 "http://[::ffff:169.254.169.254]/x"])
async def test_a_link_local_webhook_is_refused_naming_the_field(server, url):
    status, body = await server.call("PUT", "/settings", json={"webhook_url": url})
    assert status == 400 and body["error"]["details"]["field"] == "webhook_url", body
    assert "--allow-link-local-alerts" in body["error"]["message"]


async def test_the_admin_may_allow_link_local_targets(tmp_path):
    runner, url, app = await start_server(tmp_path, allow_link_local_alerts=True)
    async with aiohttp.ClientSession() as http:
        srv = Server(url, app, http, tmp_path / "data", FakeClock())
        await sign_in_roles(srv)
        try:
            status, body = await srv.call("PUT", "/settings", json={"webhook_url": "http://169.254.169.254/x"})
            assert status == 200, body
            status, body = await srv.call("POST", "/notification-channels", json={
                "name": "meta", "url": "json://169.254.169.254/x", "events": ["host.stale"]})
            assert status == 201, body
        finally:
            await runner.cleanup()


async def test_the_webhook_does_not_follow_a_redirect(server):
    async with json_receiver() as rec:
        rec.statuses = [302]
        await set_webhook(server, rec.url + "/hook")
        host_id, _ = await server.enroll("h1")
        notifier = server.app[NOTIFIER]
        notifier.stale_changed(host_id, True)
        await wait_for(lambda: rec.paths and not notifier._tasks, what="the webhook post to end")
        assert rec.paths == ["/hook"]  # a followed redirect would have asked /elsewhere too
