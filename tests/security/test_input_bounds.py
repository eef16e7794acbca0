"""Bad input anywhere gets a 400 naming the problem, never a 500 or a value restic chokes
on later (items 8, 9, 14, 17's relative paths)."""

from __future__ import annotations

import re

import pytest

from rm_server.api.common import route_role
from tests.server.server_helpers import make_group

HUGE = 10**30


@pytest.mark.parametrize("before", ["99999999999999999999", "²", "٣٣", "-1", "1e3", " 1"])
async def test_audit_before_rejects_overflow_and_non_ascii_digits(server, before):
    status, body = await server.call("GET", f"/audit?before={before}", role="viewer")
    assert status == 400 and body["error"]["details"]["field"] == "before", (status, body)


@pytest.mark.parametrize("tz", ["America", "Europe", "Etc", "../../etc/passwd"])
async def test_timezones_that_name_a_directory_are_refused(server, tz):
    host_id, _ = await server.enroll()
    group = await make_group(server, host_id)
    status, body = await server.call("POST", f"/hosts/{host_id}/schedules", role="operator", json={
        "name": "n", "cron": "0 3 * * *", "timezone": tz, "source_group_ids": [group["id"]]})
    assert status == 400, body
    status, body = await server.call("PUT", "/fleet/policies/p", role="operator", json={
        "includes": ["/etc"], "cron": "0 3 * * *", "timezone": tz})
    assert status == 400, body


async def test_every_get_route_survives_hostile_query_values(server):
    """A sweep: every GET route (ids made up), with overflowing and odd query values."""
    host_id, _ = await server.enroll()
    query = "limit=99999999999999999999&before=%C2%B2&after_seq=99999999999999999999&after=%00&state=%E2%80%AE"
    seen = 0
    for route in server.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if route.method != "GET" or not path or route_role(route.handler) == "agent" or path.endswith("/events"):
            continue
        url = re.sub(r"\{id\}", host_id, path)
        url = re.sub(r"\{[a-z_]+\}", "x", url)
        status, body = await server.call("GET", f"{server.url}{url}?{query}", role="admin")
        assert status < 500, (url, status, body)
        seen += 1
    assert seen >= 15


@pytest.mark.parametrize("path,body", [
    ("/hosts/{h}/bandwidth", {"upload_kbps": HUGE}),
    ("/hosts/{h}/bandwidth", {"download_kbps": HUGE}),
    ("/hosts/{h}/source-groups", {"name": "g", "includes": ["/etc"], "retention": {"keep_daily": HUGE}}),
    ("/hosts/{h}/source-groups", {"name": "g", "includes": ["/etc"], "retention": {"keep_within": "99999999999y"}}),
    ("/hosts/{h}/jobs", {"kind": "check", "limit_upload_kbps": HUGE}),
    ("/hosts/{h}/jobs", {"kind": "check", "timeout_seconds": HUGE}),
    ("/enrollment-tokens", {"ttl_seconds": HUGE}),
])
async def test_huge_integers_are_refused_with_the_field_named(server, path, body):
    host_id, _ = await server.enroll()
    method = "PUT" if path.endswith("bandwidth") else "POST"
    status, reply = await server.call(method, path.format(h=host_id), role="operator", json=body)
    assert status == 400, reply
    assert reply["error"]["details"]["field"], reply


BAD_NAMES = ["evil\u202egpj.exe", "nul\x00byte", "two\r\nlines", "esc\x1b[31mred", "iso\u2066late", "zw\u200bsp"]


@pytest.mark.parametrize("name", BAD_NAMES)
async def test_control_and_bidi_characters_are_refused_in_names(server, name):
    host_id, _ = await server.enroll()
    group = await make_group(server, host_id)
    attempts = [
        ("PATCH", f"/hosts/{host_id}", {"hostname": name}),
        ("POST", f"/hosts/{host_id}/source-groups", {"name": name, "includes": ["/srv"]}),
        ("POST", f"/hosts/{host_id}/schedules", {"name": name, "cron": "0 3 * * *", "source_group_ids": [group["id"]]}),
        ("POST", "/enrollment-tokens", {"name": name}),
    ]
    for method, path, body in attempts:
        status, reply = await server.call(method, path, role="operator", json=body)
        assert status == 400, (path, reply)
        assert "U+" in reply["error"]["message"], reply
    from urllib.parse import quote
    status, reply = await server.call("PUT", f"/fleet/policies/{quote(name)}", role="operator",
                                      json={"includes": ["/etc"], "cron": "0 3 * * *"})
    assert status == 400, reply


async def test_ordinary_unicode_names_still_pass(server):
    host_id, _ = await server.enroll()
    status, body = await server.call("POST", f"/hosts/{host_id}/source-groups", role="operator",
                                     json={"name": "Données été 🌞", "includes": ["/srv"]})
    assert status == 201, body


@pytest.mark.parametrize("path", ["srv/data", "./data", "~/data", "data"])
async def test_relative_include_paths_are_refused_at_the_door(server, path):
    host_id, _ = await server.enroll()
    status, body = await server.call("POST", f"/hosts/{host_id}/source-groups", role="operator",
                                     json={"name": "g", "includes": [path]})
    assert status == 400 and "absolute" in body["error"]["message"], body
    status, body = await server.call("PUT", "/fleet/policies/p", role="operator",
                                     json={"includes": [path], "cron": "0 3 * * *"})
    assert status == 400 and "absolute" in body["error"]["message"], body
