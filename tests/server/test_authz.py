"""Every route, every role: who may call what. The table is the contract: each
route's role as docs/api.md lists it, and what each role may do (api.md, Conventions)."""

import pytest

from rm_server.api.common import route_role

V, O, A, PUB, AGENT = "viewer", "operator", "admin", "public", "agent"

ROUTES = {
    ("GET", "/healthz"): PUB,
    ("GET", "/metrics"): PUB,
    ("GET", "/install/install.sh"): PUB,
    ("GET", "/install/rm-agent.pyz"): PUB,
    ("GET", "/install/rm-agent.service"): PUB,
    ("GET", "/install/restic"): PUB,
    ("GET", "/install/SHA256SUMS"): PUB,
    ("POST", "/api/v1/auth/bootstrap"): PUB,
    ("POST", "/api/v1/auth/login"): PUB,
    ("POST", "/api/v1/auth/logout"): V,
    ("GET", "/api/v1/me"): V,
    ("GET", "/api/v1/operators"): A,
    ("POST", "/api/v1/operators"): A,
    ("PATCH", "/api/v1/operators/{id}"): A,
    ("DELETE", "/api/v1/operators/{id}"): A,
    ("POST", "/api/v1/enrollment-tokens"): O,
    ("GET", "/api/v1/enrollment-tokens"): O,
    ("DELETE", "/api/v1/enrollment-tokens/{id}"): O,
    ("POST", "/api/v1/agents/enroll"): PUB,
    ("GET", "/api/v1/hosts"): V,
    ("GET", "/api/v1/hosts/{id}"): V,
    ("PATCH", "/api/v1/hosts/{id}"): O,
    ("DELETE", "/api/v1/hosts/{id}"): O,
    ("PUT", "/api/v1/hosts/{id}/repo"): O,
    ("GET", "/api/v1/hosts/{id}/repo"): V,
    ("PUT", "/api/v1/hosts/{id}/repo/admin-credentials"): O,
    ("PUT", "/api/v1/hosts/{id}/repo/copy"): O,
    ("GET", "/api/v1/hosts/{id}/repo/copy"): V,
    ("DELETE", "/api/v1/hosts/{id}/repo/copy"): O,
    ("POST", "/api/v1/hosts/{id}/repo/rotate-key"): O,
    ("GET", "/api/v1/hosts/{id}/repo/rotate-key"): V,
    ("PUT", "/api/v1/hosts/{id}/bandwidth"): O,
    ("GET", "/api/v1/hosts/{id}/bandwidth"): V,
    ("GET", "/api/v1/hosts/{id}/snapshots"): V,
    ("GET", "/api/v1/hosts/{id}/snapshots/{sid}/ls"): V,
    ("GET", "/api/v1/hosts/{id}/snapshots/diff"): V,
    ("POST", "/api/v1/hosts/{id}/source-groups/{sid}/retention-preview"): V,
    ("GET", "/api/v1/hosts/{id}/source-groups/{sid}/drill"): V,
    ("PUT", "/api/v1/hosts/{id}/source-groups/{sid}/drill"): O,
    ("POST", "/api/v1/hosts/{id}/source-groups/{sid}/drill/run"): O,
    ("GET", "/api/v1/hosts/{id}/source-groups/{sid}/history"): V,
    ("GET", "/api/v1/hosts/{id}/anomalies"): V,
    ("POST", "/api/v1/hosts/{id}/anomalies/acknowledge"): O,
    ("POST", "/api/v1/hosts/{id}/jobs"): O,
    ("GET", "/api/v1/jobs"): V,
    ("GET", "/api/v1/jobs/{id}"): V,
    ("POST", "/api/v1/jobs/{id}/cancel"): O,
    ("GET", "/api/v1/jobs/{id}/logs"): V,
    ("GET", "/api/v1/hosts/{id}/source-groups"): V,
    ("POST", "/api/v1/hosts/{id}/source-groups"): O,
    ("GET", "/api/v1/hosts/{id}/source-groups/{sid}"): V,
    ("PUT", "/api/v1/hosts/{id}/source-groups/{sid}"): O,
    ("DELETE", "/api/v1/hosts/{id}/source-groups/{sid}"): O,
    ("POST", "/api/v1/hosts/{id}/source-groups/{sid}/run"): O,
    ("GET", "/api/v1/hosts/{id}/schedules"): V,
    ("POST", "/api/v1/hosts/{id}/schedules"): O,
    ("GET", "/api/v1/hosts/{id}/schedules/{sid}"): V,
    ("PUT", "/api/v1/hosts/{id}/schedules/{sid}"): O,
    ("DELETE", "/api/v1/hosts/{id}/schedules/{sid}"): O,
    ("POST", "/api/v1/hosts/{id}/schedules/{sid}/run"): O,
    ("GET", "/api/v1/hosts/{id}/maintenance"): V,
    ("PUT", "/api/v1/hosts/{id}/maintenance"): O,
    ("GET", "/api/v1/audit"): V,
    ("GET", "/api/v1/settings"): V,
    ("PUT", "/api/v1/settings"): A,
    ("PUT", "/api/v1/fleet/policies/{name}"): O,
    ("GET", "/api/v1/fleet/crons"): V,
    ("GET", "/api/v1/fleet/growth"): V,
    ("POST", "/api/v1/fleet/rotate-key"): O,
    ("GET", "/api/v1/openapi.json"): V,
    ("GET", "/api/v1/notification-channels"): A,
    ("POST", "/api/v1/notification-channels"): A,
    ("GET", "/api/v1/notification-channels/{id}"): A,
    ("PUT", "/api/v1/notification-channels/{id}"): A,
    ("DELETE", "/api/v1/notification-channels/{id}"): A,
    ("POST", "/api/v1/notification-channels/{id}/test"): A,
    ("GET", "/api/v1/agent/ws"): AGENT,
    ("GET", "/api/v1/events"): V,
}
RANK = {V: 0, O: 1, A: 2}


def app_routes(app):
    return {(r.method, r.resource.canonical): r.handler for r in app.router.routes() if r.method != "HEAD"}


async def test_every_route_is_in_the_table_with_its_marker(server):
    found = app_routes(server.app)
    assert set(found) == set(ROUTES), set(found) ^ set(ROUTES)
    for key, handler in found.items():
        assert str(route_role(handler)) == ROUTES[key], key


@pytest.mark.parametrize("key", [k for k, v in ROUTES.items() if v not in (PUB,)], ids=lambda k: f"{k[0]} {k[1]}")
async def test_route_needs_a_token(server, key):
    method, path = key
    status, body = await server.call(method, server.url + path.replace("{id}", "x").replace("{sid}", "y").replace("{name}", "z"), role=None)
    assert status == 401, body
    assert body["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("key", [k for k, v in ROUTES.items() if v in RANK], ids=lambda k: f"{k[0]} {k[1]}")
async def test_roles(server, key):
    method, path = key
    url = server.url + path.replace("{id}", "nohost").replace("{sid}", "noitem").replace("{name}", "nopolicy")
    needed = ROUTES[key]
    for role in (V, O, A):
        if key == ("POST", "/api/v1/auth/logout"):
            continue  # would end the session the other checks use; tested in test_auth
        # An invalid body on purpose: authorization must be decided before validation.
        status, body = await server.call(method, url, role=role, data=b"{not json")
        if RANK[role] >= RANK[needed]:
            assert status not in (401, 403), (role, status, body)
        else:
            assert status == 403, (role, status, body)
            assert body["error"]["code"] == "forbidden"


async def test_agent_token_is_not_an_operator_token(server):
    _, agent_token = await server.enroll()
    status, body = await server.call("GET", "/hosts", role=None, headers={"Authorization": f"Bearer {agent_token}"})
    assert status == 401
