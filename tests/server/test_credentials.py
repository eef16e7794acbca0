"""Repository credentials: write-only, sealed at rest, pushed to the agent, never echoed; auto-init; bandwidth."""

from __future__ import annotations

import logging

import bcrypt

from rm_core import protocol as p
from tests.conftest import TestAgent, wait_for
from tests.server.server_helpers import dump_database, online_host

REPO_PASSWORD = "s3cret-repo-pass-XYZ"
REST_PASSWORD = "rest-pa55-QQQ"


async def sealed_blobs(server) -> tuple[bytes, str]:
    rows = await server.store.db.fetchall("SELECT sealed FROM repo_credentials")
    return b"".join(bytes(r[0]) for r in rows), await dump_database(server.store)


async def test_put_repo_is_write_only_and_sealed(server, caplog):
    caplog.set_level(logging.DEBUG)
    host_id, _ = await server.enroll()
    url = f"rest:http://alice:{REST_PASSWORD}@backup.example:8000/web-1"
    status, body = await server.call("PUT", f"/hosts/{host_id}/repo", role="operator",
                                     json={"url": url, "password": REPO_PASSWORD})
    assert status == 200, body
    assert body["password"] is None and body["htpasswd_line"] is None
    assert REST_PASSWORD not in body["url"] and "backup.example" in body["url"]
    assert body["key_fingerprint"] and REPO_PASSWORD not in str(body)

    status, body = await server.call("GET", f"/hosts/{host_id}/repo", role="viewer")
    assert status == 200 and REPO_PASSWORD not in str(body) and REST_PASSWORD not in str(body)
    assert "password" not in body

    blobs, dump = await sealed_blobs(server)
    assert blobs and REPO_PASSWORD.encode() not in blobs and REST_PASSWORD.encode() not in blobs
    assert REPO_PASSWORD not in dump and REST_PASSWORD not in dump

    status, audit = await server.call("GET", "/audit", role="viewer")
    assert any(e["action"] == "repo.repo_credentials" for e in audit["entries"])
    assert REPO_PASSWORD not in str(audit) and REST_PASSWORD not in str(audit)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert REPO_PASSWORD not in text and REST_PASSWORD not in text

    status, _ = await server.call("PUT", f"/hosts/{host_id}/repo", role="viewer", json={"url": "/x"})
    assert status == 403
    status, _ = await server.call("GET", "/hosts/nope/repo", role="viewer")
    assert status == 404


async def test_repo_body_validation(server):
    host_id, _ = await server.enroll()
    status, body = await server.call("PUT", f"/hosts/{host_id}/repo", role="operator",
                                     json={"url": "/srv/r", "password": "x", "generate_password": True})
    assert status == 400
    status, body = await server.call("PUT", f"/hosts/{host_id}/repo", role="operator", json={"password": "x"})
    assert status == 400 and body["error"]["details"]["field"] == "url"
    status, body = await server.call("GET", f"/hosts/{host_id}/repo", role="viewer")
    assert status == 404


async def test_generate_password_returned_once_with_htpasswd(server):
    host_id, agent = await online_host(server)
    status, body = await server.call("PUT", f"/hosts/{host_id}/repo", role="operator",
                                     json={"url": "rest:http://backup.example:8000/web-1", "generate_password": True,
                                           "rest_user": "web-1"})
    assert status == 200, body
    password = body["password"]
    assert password and len(password) >= 32
    user, _, hashed = body["htpasswd_line"].partition(":")
    assert user == "web-1" and hashed.startswith("$2")

    update = await agent.expect("config.update")
    (creds,) = [c for c in update.payload.credentials if c.slot == "repo"]
    assert creds.password == password and creds.rest_user == "web-1" and creds.rest_password
    assert bcrypt.checkpw(creds.rest_password.encode(), hashed.encode())
    assert not bcrypt.checkpw(b"wrong", hashed.encode())

    status, again = await server.call("GET", f"/hosts/{host_id}/repo", role="admin")
    assert password not in str(again) and creds.rest_password not in str(again)
    blobs, dump = await sealed_blobs(server)
    assert password.encode() not in blobs and password not in dump and creds.rest_password not in dump
    status, hosts = await server.call("GET", "/hosts")
    assert password not in str(hosts)


async def test_credentials_pushed_on_hello_and_master_key_private(server):
    host_id, token = await server.enroll()
    status, _ = await server.call("PUT", f"/hosts/{host_id}/repo", role="operator",
                                  json={"url": "/srv/restic/web-1", "password": REPO_PASSWORD})
    assert status == 200
    status, _ = await server.call("PUT", f"/hosts/{host_id}/repo/admin-credentials", role="operator",
                                  json={"url": "/srv/restic/web-1", "password": "admin-" + REPO_PASSWORD})
    assert status == 200
    status, info = await server.call("GET", f"/hosts/{host_id}/repo", role="viewer")
    assert info["has_admin_credentials"] is True
    agent = TestAgent(server, token)
    await agent.connect()
    await agent.expect("schedule.set")
    update = await agent.expect("config.update")
    by_slot = {c.slot.value: c for c in update.payload.credentials}
    assert by_slot["repo"].password == REPO_PASSWORD and by_slot["admin"].password == "admin-" + REPO_PASSWORD
    key = server.data_dir / "master.key"
    assert key.stat().st_mode & 0o777 == 0o600


async def test_auto_init_on_first_connect_with_credentials(server):
    host_id, token = await server.enroll()
    agent = TestAgent(server, token)
    await agent.connect()
    await agent.expect("config.update")
    # No credentials: no init.
    status, jobs = await server.call("GET", "/jobs", params={"host_id": host_id, "kind": "init"})
    assert jobs["jobs"] == []
    status, _ = await server.call("PUT", f"/hosts/{host_id}/repo", role="operator",
                                  json={"url": "/srv/restic/web-1", "password": REPO_PASSWORD})
    await agent.expect("config.update")
    run = await agent.expect("command.run")
    assert run.payload.kind == "init"
    assert REPO_PASSWORD not in str(run.payload.params)
    init = (await server.call("GET", f"/jobs/{run.payload.job_id}"))[1]
    assert init["actor_kind"] == "system"
    # "already exists" is the agent's call: it reports succeeded. Reconnecting makes no second init.
    await agent.send(p.JobStarted(job_id=init["id"], started_at=init["created_at"], kind="init"))
    await agent.expect("ack")
    await agent.send(p.JobFinished(job_id=init["id"], seq=2, state="succeeded", exit_code=0))
    await agent.expect("ack")
    await agent.close()
    await wait_for(lambda: host_id not in server.hub.connections, what="disconnect")
    again = TestAgent(server, token)
    await again.connect()
    await again.expect("config.update")
    status, jobs = await server.call("GET", "/jobs", params={"host_id": host_id, "kind": "init"})
    assert len(jobs["jobs"]) == 1


async def test_auto_init_dispatched_once_when_credentials_came_first(server):
    host_id, token = await server.enroll()
    await server.call("PUT", f"/hosts/{host_id}/repo", role="operator",
                      json={"url": "/srv/restic/web-1", "password": REPO_PASSWORD})
    agent = TestAgent(server, token)
    await agent.connect()
    run = await agent.expect("command.run")
    assert run.payload.kind == "init"
    await agent.send(p.Heartbeat())
    status, jobs = await server.call("GET", "/jobs", params={"host_id": host_id, "kind": "init"})
    assert [j["id"] for j in jobs["jobs"]] == [run.payload.job_id]
    assert [e.type for e in agent.received].count("command.run") == 1


async def test_every_repository_change_inits_once_however_often_it_changes_offline(server):
    """A corrected URL gets its own init (the first one may have failed on a typo); two
    corrections while the host is offline leave one init waiting, sent at reconnect."""
    host_id, token = await server.enroll()
    agent = TestAgent(server, token)
    await agent.connect()
    await server.call("PUT", f"/hosts/{host_id}/repo", json={"url": "/srv/restic/wbe-1", "password": REPO_PASSWORD})
    first = await agent.expect("command.run")
    await agent.send(p.JobStarted(job_id=first.payload.job_id, started_at=server.clock.now, kind="init"))
    await agent.send(p.JobFinished(job_id=first.payload.job_id, seq=2, state="failed", exit_code=1))
    await agent.close()
    await wait_for(lambda: host_id not in server.hub.connections, what="disconnect")
    for url in ("/srv/restic/web-l", "/srv/restic/web-1"):
        status, body = await server.call("PUT", f"/hosts/{host_id}/repo", role="operator",
                                         json={"url": url, "generate_password": True})
        assert status == 200, body
    _, jobs = await server.call("GET", "/jobs", params={"host_id": host_id, "kind": "init"})
    assert [j["state"] for j in jobs["jobs"]] == ["queued", "failed"], jobs
    again = TestAgent(server, token)
    await again.connect()
    run = await again.expect("command.run")
    assert run.payload.kind == "init" and run.payload.job_id == jobs["jobs"][0]["id"]
    update = [e for e in again.received if e.type == "config.update"][-1]
    assert update.payload.credentials[0].url == "/srv/restic/web-1"


async def test_bandwidth_pushes_config_update(server):
    host_id, agent = await online_host(server)
    status, body = await server.call("PUT", f"/hosts/{host_id}/bandwidth", role="operator",
                                     json={"upload_kbps": 512, "download_kbps": 2048})
    assert status == 200 and body["upload_kbps"] == 512
    update = await agent.expect("config.update")
    assert update.payload.bandwidth.upload_kbps == 512 and update.payload.bandwidth.download_kbps == 2048
    status, body = await server.call("GET", f"/hosts/{host_id}/bandwidth", role="viewer")
    assert body == {"upload_kbps": 512, "download_kbps": 2048}
    status, body = await server.call("PUT", f"/hosts/{host_id}/bandwidth", role="operator", json={"upload_kbps": 0})
    assert status == 400 and body["error"]["details"]["field"] == "upload_kbps"
    status, _ = await server.call("PUT", f"/hosts/{host_id}/bandwidth", role="viewer", json={})
    assert status == 403


async def test_no_token_in_responses_audit_or_logs(server, caplog):
    caplog.set_level(logging.DEBUG)
    status, tok = await server.call("POST", "/enrollment-tokens", json={
        "repo": {"url": "/srv/r", "password": REPO_PASSWORD}})
    assert status == 201
    enroll_token = tok["token"]
    status, body = await server.call("POST", "/agents/enroll", role=None, json={
        "token": enroll_token, "hostname": "h", "os": "linux", "arch": "x86_64", "agent_version": "t"})
    agent_token = body["agent_token"]
    host_id = body["host_id"]
    agent = TestAgent(server, agent_token)
    await agent.connect()
    await agent.expect("config.update")
    secrets = [enroll_token, agent_token, REPO_PASSWORD, *server.tokens.values()]
    dumps = []
    for path in ("/enrollment-tokens", "/hosts", f"/hosts/{host_id}", f"/hosts/{host_id}/repo", "/audit",
                 "/jobs", "/me", "/operators"):
        status, body = await server.call("GET", path)
        dumps.append(str(body))
    text = "\n".join(dumps)
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for secret in secrets:
        assert secret not in text
        assert secret not in logs
