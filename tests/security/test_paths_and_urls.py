"""Paths and repository URLs people type become a host's source group and restic's
environment: anything restic or a console would misread is a 400 naming the field, and
nothing is stored (issue 18 item 6). One NUL in a repository URL used to make every later
job on the host fail with an agent traceback."""

from __future__ import annotations

import pytest

from tests.server.server_helpers import online_host

# What the attack used: relative, an option, bidi, BEL, newline, NUL, ESC, a long string
# (half a megabyte: aiohttp's client warns about sending more in one piece).
BAD_PATHS = ["srv/data", "--password-command=id", "/srv/\u202egpj.exe", "/srv/bell\x07", "/srv/two\nlines",
             "/srv/nul\x00", "/srv/esc\x1b[31m", "/" + "a" * 512 * 1024]
BAD_URLS = ["/srv/restic\x00", "rest:http://nas/\x1b[2J", "sftp:nas:/srv\r\nX-Injected: 1", "/srv/restic\n",
            "s3:s3.example/\u202ekcab", "/srv/\u2066iso", "/srv/bell\x07", "\u200b"]


def names(reply: dict) -> str:
    return reply["error"]["details"]["field"]


@pytest.mark.parametrize("path", BAD_PATHS, ids=range(len(BAD_PATHS)))
async def test_enrollment_token_initial_paths_follow_the_include_rules(server, path):
    status, reply = await server.call("POST", "/enrollment-tokens", role="operator",
                                      json={"name": "t", "initial_paths": ["/etc", path]})
    assert status == 400, reply
    assert names(reply).startswith("initial_paths"), reply
    status, listed = await server.call("GET", "/enrollment-tokens", role="operator")
    assert status == 200 and listed["tokens"] == [], listed


async def test_too_many_initial_paths_are_refused(server):
    status, reply = await server.call("POST", "/enrollment-tokens", role="operator",
                                      json={"initial_paths": [f"/srv/{i}" for i in range(1001)]})
    assert status == 400 and names(reply).startswith("initial_paths"), reply


@pytest.mark.parametrize("path", BAD_PATHS[2:], ids=range(len(BAD_PATHS) - 2))
async def test_source_group_includes_and_excludes_refuse_the_same(server, path):
    host_id, _ = await server.enroll()
    for body in ({"name": "g", "includes": [path]}, {"name": "g", "includes": ["/srv"], "excludes": [path]}):
        status, reply = await server.call("POST", f"/hosts/{host_id}/source-groups", role="operator", json=body)
        assert status == 400, reply
        assert names(reply).startswith(("includes", "excludes")), reply
    status, groups = await server.call("GET", f"/hosts/{host_id}/source-groups", role="viewer")
    assert status == 200 and groups["source_groups"] == [], groups


@pytest.mark.parametrize("url", BAD_URLS, ids=range(len(BAD_URLS)))
async def test_repository_urls_refuse_control_and_bidi_characters(server, url):
    host_id, _ = await server.enroll()
    _, before = await server.call("GET", "/enrollment-tokens", role="operator")
    for path in (f"/hosts/{host_id}/repo", f"/hosts/{host_id}/repo/admin-credentials"):
        status, reply = await server.call("PUT", path, role="operator", json={"url": url, "password": "long enough"})
        assert status == 400 and names(reply) == "url", (path, reply)
        assert "U+" in reply["error"]["message"] or "blank" in reply["error"]["message"], reply
    status, reply = await server.call("POST", "/enrollment-tokens", role="operator",
                                      json={"repo": {"url": url, "password": "long enough"}})
    assert status == 400 and names(reply) == "repo.url", reply
    status, _ = await server.call("GET", f"/hosts/{host_id}/repo", role="viewer")
    assert status == 404
    status, after = await server.call("GET", "/enrollment-tokens", role="operator")
    assert after == before


async def test_ordinary_repository_urls_and_paths_still_pass(server):
    host_id, _ = await server.enroll()
    status, reply = await server.call("PUT", f"/hosts/{host_id}/repo", role="operator",
                                      json={"url": "sftp:backup@nas:/srv/restic/Données été", "password": "long enough"})
    assert status == 200, reply
    status, reply = await server.call("POST", "/enrollment-tokens", role="operator",
                                      json={"initial_paths": ["/srv/Données été", "/home"]})
    assert status == 201, reply


async def test_a_restore_target_with_nul_is_refused_before_a_job_exists(server):
    host_id, _ = await online_host(server)
    for target in ("/var/tmp/x\x00y", "/var/tmp/\u202ex", "var/tmp"):
        status, reply = await server.call("POST", f"/hosts/{host_id}/jobs", role="operator",
                                          json={"kind": "restore", "snapshot_id": "latest", "target": target})
        assert status == 400 and names(reply) == "target", reply
    status, jobs = await server.call("GET", f"/jobs?host_id={host_id}", role="viewer")
    assert status == 200 and jobs["jobs"] == [], jobs
