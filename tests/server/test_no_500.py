"""Bad input anywhere gets a 4xx envelope: every route, as admin, with hostile bodies and ids."""

import pytest

from tests.server.test_authz import ROUTES

BODIES = [b"", b"{}", b"[]", b"null", b"12", b'"x"', b"{\"a\":", b'{"kind": "restore"}',
          b'{"kind": "backup", "source_group_id": "nope"}', b'{"name": "' + b"x" * 5000 + b'"}',
          b'{"cron": "* * *", "name": "n", "source_group_ids": ["x"]}', b'{"url": ""}',
          b'{"username": "\\u0000", "password": "p", "role": "god"}', b'{"includes": [""], "name": "n"}',
          b'{"ttl_seconds": 1e309}', b'{"hosts": {"ids": "all"}}', "{\"name\": \"\u00e9\u00e9\"}".encode()]
IDS = ["x", "%00", "..%2F..", "a" * 300]


@pytest.mark.parametrize("key", [k for k, v in ROUTES.items() if v != "agent" and k[1] != "/api/v1/auth/logout"],
                         ids=lambda k: f"{k[0]} {k[1]}")
async def test_no_route_answers_500(server, key):
    method, path = key
    host_id, _ = await server.enroll()
    _, group = await server.call("POST", f"/hosts/{host_id}/source-groups", json={"name": "g", "includes": ["/etc"]})
    _, sched = await server.call("POST", f"/hosts/{host_id}/schedules",
                                 json={"name": "s", "cron": "0 1 * * *", "source_group_ids": [group["id"]]})
    _, job = await server.call("POST", f"/hosts/{host_id}/jobs", json={"kind": "init"})
    real = (host_id, sched["id"] if "schedules" in path else group["id"], job["id"])
    for ident in IDS + [real]:
        host, sub, job_id = ident if isinstance(ident, tuple) else (ident, ident, ident)
        if "/jobs/{id}" in path:
            host = job_id
        url = server.url + path.replace("{id}", host).replace("{sid}", sub).replace("{name}", sub)
        for body in BODIES:
            status, reply = await server.call(method, url, data=body, headers={"Content-Type": "application/json"})
            assert status < 500, (method, url, body[:80], status, reply)
            if status >= 400:
                assert set(reply) == {"error"}, reply
