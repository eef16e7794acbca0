import stat

from tests.conftest import ADMIN_PASSWORD


async def test_bootstrap_token_is_single_use_and_file_removed(server):
    assert not (server.data_dir / "bootstrap-token").exists()
    status, body = await server.call("POST", "/auth/bootstrap", role=None,
                                     json={"token": "rmb_whatever", "username": "eve", "password": "x" * 12})
    assert status == 401
    assert body["error"]["code"] == "invalid_token"


async def test_bootstrap_file_is_private(tmp_path):
    from tests.conftest import start_server

    runner, url, app = await start_server(tmp_path)
    try:
        path = tmp_path / "data" / "bootstrap-token"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text().startswith("rmb_")
    finally:
        await runner.cleanup()


async def test_login_me_logout(server):
    token = await server.login("operator", ADMIN_PASSWORD)
    headers = {"Authorization": f"Bearer {token}"}
    status, me = await server.call("GET", "/me", role=None, headers=headers)
    assert status == 200 and me["username"] == "operator" and me["role"] == "operator"
    assert "password" not in str(me) and "hash" not in str(me)
    status, _ = await server.call("POST", "/auth/logout", role=None, headers=headers)
    assert status == 204
    status, body = await server.call("GET", "/me", role=None, headers=headers)
    assert status == 401


async def test_wrong_password_then_rate_limited(server):
    for _ in range(10):
        status, body = await server.call("POST", "/auth/login", role=None,
                                         json={"username": "viewer", "password": "wrong-password"})
        assert status == 401 and body["error"]["code"] == "invalid_credentials"
    status, body = await server.call("POST", "/auth/login", role=None,
                                     json={"username": "viewer", "password": ADMIN_PASSWORD})
    assert status == 429, body
    assert body["error"]["code"] == "rate_limited"
    assert body["error"]["details"]["retry_after"] > 0


async def test_session_expires(server):
    token = await server.login("viewer", ADMIN_PASSWORD)
    status, _ = await server.call("GET", "/me", role=None, headers={"Authorization": f"Bearer {token}"})
    assert status == 200  # the session is now remembered by the server: expiry must still apply
    server.clock.advance(13 * 3600)
    status, _ = await server.call("GET", "/me", role=None, headers={"Authorization": f"Bearer {token}"})
    assert status == 401


async def test_operator_management(server):
    status, ops = await server.call("GET", "/operators")
    assert status == 200 and {o["username"] for o in ops["operators"]} == {"admin", "operator", "viewer"}
    status, body = await server.call("POST", "/operators", json={"username": "admin", "password": "x" * 10,
                                                                 "role": "viewer"})
    assert status == 409
    status, body = await server.call("POST", "/operators", json={"username": "bob", "password": "short",
                                                                 "role": "viewer"})
    assert status == 400 and body["error"]["details"]["fields"][0]["field"] == "password"
    admin_id = next(o["id"] for o in ops["operators"] if o["username"] == "admin")
    status, body = await server.call("PATCH", f"/operators/{admin_id}", json={"role": "viewer"})
    assert status == 409, "the last admin cannot demote itself"
    viewer_id = next(o["id"] for o in ops["operators"] if o["username"] == "viewer")
    status, body = await server.call("PATCH", f"/operators/{viewer_id}", json={"disabled": True})
    assert status == 200 and body["disabled"] is True
    status, _ = await server.call("GET", "/me", role="viewer")
    assert status == 401, "disabling ends sessions"
    status, _ = await server.call("DELETE", f"/operators/{viewer_id}")
    assert status == 204


async def test_audit_records_mutations_without_secrets(server):
    await server.call("POST", "/operators", json={"username": "carol", "password": "s3cret-password", "role": "viewer"})
    status, body = await server.call("GET", "/audit?limit=5")
    assert status == 200
    actions = [e["action"] for e in body["entries"]]
    assert "operator.create" in actions
    assert "s3cret-password" not in str(body)
    entry = next(e for e in body["entries"] if e["action"] == "operator.create")
    assert entry["actor_name"] == "admin" and entry["details"]["username"] == "carol"


async def test_a_remembered_session_follows_role_changes_at_once(server):
    """The server remembers found sessions for a moment (a REST request's database trip less
    during a fleet push); a change made through the API must still apply to the very next request."""
    token = await server.login("operator", ADMIN_PASSWORD)
    headers = {"Authorization": f"Bearer {token}"}
    status, me = await server.call("GET", "/me", role=None, headers=headers)
    assert status == 200 and me["role"] == "operator"
    status, _ = await server.call("POST", "/operators", role=None, headers=headers,
                                  json={"username": "eve", "password": "x" * 12, "role": "viewer"})
    assert status == 403  # an operator is not an admin
    _, ops = await server.call("GET", "/operators")
    op_id = next(o["id"] for o in ops["operators"] if o["username"] == "operator")
    status, _ = await server.call("PATCH", f"/operators/{op_id}", json={"role": "admin"})
    assert status == 200
    status, me = await server.call("GET", "/me", role=None, headers=headers)
    assert status == 200 and me["role"] == "admin", "the promotion applies at once"
    status, _ = await server.call("PATCH", f"/operators/{op_id}", json={"role": "viewer"})
    assert status == 200
    status, _ = await server.call("POST", f"/hosts/none/jobs", role=None, headers=headers, json={"kind": "check"})
    assert status == 403, "the demotion applies at once"
    status, _ = await server.call("DELETE", f"/operators/{op_id}")
    assert status == 204
    status, _ = await server.call("GET", "/me", role=None, headers=headers)
    assert status == 401, "a deleted operator's session ends at once"
