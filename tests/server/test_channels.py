"""Notification channels against real receivers: Apprise json:// to a local HTTP endpoint,
mailto:// to a local SMTP server (aiosmtpd), a failing channel, and a 500-host storm."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest

from rm_core.ids import new_id
from rm_server.keys import ALERTS, MASTER_KEY, NOTIFIER
from rm_server.store.common import iso
from tests.alert_receivers import json_receiver, smtp_receiver
from tests.conftest import FakeClock, Server, sign_in_roles, start_server, wait_for
from tests.server.server_helpers import finished, make_group, online_host, started

SECRET = "s3cr3t-T0ken-XYZ"


@pytest.fixture
async def server(tmp_path) -> AsyncIterator[Server]:
    """The usual server, with alert timings a test can wait for (digests after 0.3 s, the
    first retry after 0.25-0.5 s) and host.offline after 10 minutes of its fake clock."""
    clock = FakeClock()
    runner, url, app = await start_server(tmp_path, clock, alert_group_wait=0.3, alert_retry_base=0.5,
                                          alert_send_timeout=3.0, alert_offline_after=600.0)
    async with aiohttp.ClientSession() as http:
        srv = Server(url, app, http, tmp_path / "data", clock)
        await sign_in_roles(srv)
        try:
            yield srv
        finally:
            await runner.cleanup()


async def channel(server: Server, url: str, events: list[str], name: str = "ops", **kw) -> dict:
    status, body = await server.call("POST", "/notification-channels",
                                     json={"name": name, "url": url, "events": events, **kw})
    assert status == 201, body
    return body


async def get_channel(server: Server, cid: str) -> dict:
    status, body = await server.call("GET", f"/notification-channels/{cid}")
    assert status == 200, body
    return body


# ------------------------------------------------------------------ the resource


async def test_crud_keeps_the_url_secret_everywhere(server, caplog):
    caplog.set_level(logging.DEBUG)
    async with json_receiver() as rec:
        url = rec.url.replace("http://", f"json://alerts:{SECRET}@") + f"/hook/{SECRET}?+X-Token={SECRET}"
        made = await channel(server, url, ["backup.failed", "host.offline"], min_interval_s=60)
        assert made["url"].startswith("json://127.0.0.1:") and SECRET not in str(made), made
        assert made["events"] == ["backup.failed", "host.offline"] and made["min_interval_s"] == 60
        assert made["failures"] == 0 and made["last_error"] is None and made["pending"] == 0
        status, listed = await server.call("GET", "/notification-channels")
        assert status == 200 and [c["id"] for c in listed["channels"]] == [made["id"]]
        # the test message carries the secret header to the service, which is the point
        status, tested = await server.call("POST", f"/notification-channels/{made['id']}/test")
        assert status == 200 and tested["ok"] is True, tested
        assert rec.received[0]["title"] == "[restic-manager] test message"
        assert tested["channel"]["last_sent_at"] is not None

        status, changed = await server.call("PUT", f"/notification-channels/{made['id']}",
                                            json={"name": "ops 2", "url": rec.channel_url(), "events": ["check.failed"]})
        assert status == 200 and changed["name"] == "ops 2" and changed["events"] == ["check.failed"], changed
        assert changed["min_interval_s"] == 300  # the default: Alertmanager's group_interval
        await channel(server, rec.channel_url(), ["drill.failed"], name="other")
        status, body = await server.call("PUT", f"/notification-channels/{made['id']}",
                                         json={"name": "other", "url": rec.channel_url(), "events": ["drill.failed"]})
        assert status == 409 and body["error"]["details"]["field"] == "name", body
        status, body = await server.call("POST", "/notification-channels",
                                         json={"name": "other", "url": rec.channel_url(), "events": ["drill.failed"]})
        assert status == 409, body

    status, audit = await server.call("GET", "/audit", role="viewer")
    actions = [e["action"] for e in audit["entries"]]
    assert {"channel.create", "channel.update", "channel.test"} <= set(actions), actions
    assert SECRET not in str(audit)
    assert SECRET not in caplog.text
    raw = b"".join(p.read_bytes() for p in server.data_dir.glob("server.db*"))
    assert SECRET.encode() not in raw  # sealed at rest, not merely hidden in replies

    status, _ = await server.call("DELETE", f"/notification-channels/{made['id']}")
    assert status == 204
    status, body = await server.call("GET", f"/notification-channels/{made['id']}")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, _ = await server.call("DELETE", f"/notification-channels/{made['id']}")
    assert status == 404


@pytest.mark.parametrize("body, field", [
    ({"name": "x", "url": "hooks.example.com/x", "events": ["backup.failed"]}, "url"),
    ({"name": "x", "url": "json://a\nb", "events": ["backup.failed"]}, "url"),
    ({"name": "x", "url": "json://169.254.169.254/latest", "events": ["backup.failed"]}, "url"),
    ({"name": "x", "url": "jsons://[fe80::1]:8080/x", "events": ["backup.failed"]}, "url"),
    ({"name": "x", "url": "json://[::ffff:169.254.169.254]/x", "events": ["backup.failed"]}, "url"),
    ({"name": "x", "url": "nosuchservice://h.example.com/x", "events": ["backup.failed"]}, "url"),
    ({"name": "x", "url": "slack://", "events": ["backup.failed"]}, "url"),
    ({"name": "x", "url": "json://h.example.com", "events": ["backup.exploded"]}, "events.0"),
    ({"name": "x", "url": "json://h.example.com", "events": []}, "events"),
    ({"name": "x", "url": "json://h.example.com", "events": ["host.stale", "host.stale"]}, "events"),
    ({"name": "x", "url": "json://h.example.com", "events": ["host.stale"], "min_interval_s": -1}, "min_interval_s"),
    ({"name": "", "url": "json://h.example.com", "events": ["host.stale"]}, "name"),
    ({"name": "a\u202eb", "url": "json://h.example.com", "events": ["host.stale"]}, "name"),
    ({"url": "json://h.example.com", "events": ["host.stale"]}, "name"),
    ({"name": "x", "url": "json://h.example.com", "events": ["host.stale"], "colour": "red"}, "colour"),
])
async def test_bad_bodies_are_a_400_naming_the_field(server, body, field):
    status, reply = await server.call("POST", "/notification-channels", json=body)
    assert status == 400, reply
    assert reply["error"]["details"]["field"] == field, reply


async def test_a_failing_channel_answers_502_with_the_services_error_and_shows_it(server):
    async with json_receiver() as rec:
        rec.statuses = [500]
        made = await channel(server, rec.channel_url(SECRET), ["backup.failed"])
        status, body = await server.call("POST", f"/notification-channels/{made['id']}/test")
        assert status == 502 and body["error"]["code"] == "channel_failed", body
        assert "500" in body["error"]["message"] and SECRET not in str(body), body
        shown = await get_channel(server, made["id"])
        assert shown["failures"] == 1 and "500" in shown["last_error"] and shown["last_error_at"], shown
        # fixed: the next test goes through, the run of failures ends, the last error stays visible
        status, body = await server.call("POST", f"/notification-channels/{made['id']}/test")
        assert status == 200, body
        assert body["channel"]["failures"] == 0 and body["channel"]["last_error"] == shown["last_error"]
    # nobody listens there any more
    status, body = await server.call("POST", f"/notification-channels/{made['id']}/test")
    assert status == 502 and "connection" in body["error"]["message"].lower(), body


# ------------------------------------------------------------------ events reach the receivers


async def test_a_failed_backup_reaches_json_and_mail_channels(server):
    async with json_receiver() as rec, smtp_receiver() as smtp:
        await channel(server, rec.channel_url(), ["backup.failed"], name="hook")
        await channel(server, smtp.channel_url(), ["backup.failed", "repo.unreachable"], name="mail")
        await channel(server, rec.channel_url("checks"), ["check.failed"], name="checks only")
        host_id, agent = await online_host(server, "db-7")
        group = await make_group(server, host_id)
        status, job = await server.call("POST", f"/hosts/{host_id}/jobs", role="operator",
                                        json={"kind": "backup", "source_group_id": group["id"]})
        assert status == 202, job
        await agent.expect("command.run")
        await agent.send(started(job["id"]))
        await agent.send(finished(job["id"], 2, state="failed", exit_code=1,
                                  error="repository server unreachable: dial tcp 10.0.0.9:8000: connection refused"))
        await wait_for(lambda: rec.received and len(smtp.messages) >= 2, what="the hook's digest and two mails")
        digest = rec.received[0]
        assert rec.paths == ["/hook"]  # the check.failed channel got nothing
        assert digest["title"] == "[restic-manager] db-7: backup failed", digest
        assert host_id in digest["message"] and "connection refused" in digest["message"]
        mails = sorted(smtp.text(i) for i in range(2))
        assert "db-7: backup failed" in mails[0] and "db-7: repository unreachable" in mails[1], mails
        await agent.close()


async def test_a_500_host_storm_is_one_digest_per_channel(server):
    clock: FakeClock = server.clock
    seen = iso(clock.now - timedelta(minutes=1))
    ids = [new_id() for _ in range(500)]
    async with server.store.db.write() as c:
        await c.executemany("INSERT INTO hosts (id, hostname, status, last_seen, created_at) VALUES (?, ?, 'offline', ?, ?)",
                            [(h, f"web-{i:03d}", seen, seen) for i, h in enumerate(ids)])
    async with json_receiver() as rec, smtp_receiver() as smtp:
        hook = await channel(server, rec.channel_url(), ["host.offline"], name="hook")
        mail = await channel(server, smtp.channel_url(), ["host.offline", "backup.failed"], name="mail")
        notifier = server.app[NOTIFIER]
        assert await notifier.check_offline() == []  # 1 minute away is not news
        clock.advance(660)
        assert len(await notifier.check_offline()) == 500
        assert await notifier.check_offline() == []  # raised once per absence
        await wait_for(lambda: rec.received and smtp.messages, what="a digest on each channel")
        for cid in (hook["id"], mail["id"]):
            await wait_for(lambda: server.app[ALERTS].pending(cid)[0] == 0, what="nothing left to send")
        assert len(rec.received) == 1 and len(smtp.messages) == 1
        digest = rec.received[0]
        assert digest["title"] == "[restic-manager] host offline on 500 hosts", digest
        assert "500 occurrences on 500 hosts" in digest["message"] and "… and 450 more" in digest["message"]
        assert "web-000" in digest["message"]
        assert "host offline on 500 hosts" in smtp.text(0)


async def test_a_failing_channel_is_retried_with_backoff_and_keeps_what_came_meanwhile(server):
    async with json_receiver() as rec:
        rec.statuses = [500, 503]
        made = await channel(server, rec.channel_url(), ["host.stale"], min_interval_s=0)
        host_ids = [(await server.enroll(f"h{i}"))[0] for i in range(3)]
        notifier = server.app[NOTIFIER]
        notifier.stale_changed(host_ids[0], True)
        await wait_for(lambda: _failures(server, made["id"]), what="the first try's failure recorded")
        shown = await get_channel(server, made["id"])
        assert len(rec.times) == 1 and shown["failures"] == 1 and shown["pending"] == 1 and shown["next_retry_at"], shown
        notifier.stale_changed(host_ids[1], True)  # joins the waiting digest
        notifier.stale_changed(host_ids[2], True)
        await wait_for(lambda: rec.received, what="delivery after two failures")
        assert len(rec.times) == 3
        first_wait, second_wait = rec.times[1] - rec.times[0], rec.times[2] - rec.times[1]
        assert first_wait >= 0.25 and second_wait >= 0.5, (first_wait, second_wait)  # 0.5 s, then 1 s, jittered
        assert "3 occurrences on 3 hosts" in rec.received[0]["message"], rec.received
        await wait_for(lambda: _failures(server, made["id"], 0), what="the delivery recorded")
        shown = await get_channel(server, made["id"])
        assert "503" in shown["last_error"] and shown["pending"] == 0, shown


async def test_a_hanging_service_never_holds_the_server(server):
    async with json_receiver() as rec:
        rec.hang = asyncio.Event()
        made = await channel(server, rec.channel_url(), ["host.stale"])
        host_id, _ = await server.enroll("h1")
        server.app[NOTIFIER].stale_changed(host_id, True)
        await wait_for(lambda: rec.times, what="the send to begin")
        worst = 0.0
        for _ in range(20):  # while the send hangs in its worker thread
            t0 = time.perf_counter()
            status, _ = await server.call("GET", f"{server.url}/healthz", role=None)
            worst = max(worst, time.perf_counter() - t0)
            assert status == 200
        assert worst < 0.5, worst
        # the send gives up after its timeout and counts as a failure
        await wait_for(lambda: get_channel(server, made["id"]), what="channel readable")
        await wait_for(lambda: _failures(server, made["id"]), timeout=15, what="the timed-out send recorded")


async def _failures(server: Server, cid: str, expected: int | None = None) -> bool:
    failures = (await get_channel(server, cid))["failures"]
    return failures >= 1 if expected is None else failures == expected


async def test_each_event_reaches_only_the_channels_that_follow_it(server):
    """Job outcomes, stale hosts, overdue drills and the anomaly hook, each through the real
    server path, each to the one channel that follows its event."""
    events = ["backup.warning", "check.failed", "drill.failed", "host.stale", "drill.overdue", "backup.anomaly",
              "repo.unreachable"]
    async with json_receiver() as rec:
        ids = {event: (await channel(server, rec.channel_url(event), [event], name=event))["id"] for event in events}
        host_id, agent = await online_host(server, "app-3")
        group = await make_group(server, host_id)
        for kind, state, error in (("backup", "warning", "some source files could not be read"),
                                   ("check", "failed", "Fatal: pack 0a1b is damaged"),
                                   ("drill", "failed", "2 of 20 restored files differ"),
                                   ("forget", "failed", "repository server unreachable: dial tcp: i/o timeout"),
                                   ("backup", "succeeded", None)):
            body = {"kind": kind, **({"source_group_id": group["id"]} if kind in ("backup", "drill") else {})}
            status, job = await server.call("POST", f"/hosts/{host_id}/jobs", role="operator", json=body)
            assert status == 202, job
            await agent.expect("command.run")
            await agent.send(started(job["id"], kind=kind))
            await agent.send(finished(job["id"], 2, state=state, exit_code=0 if state == "succeeded" else 1,
                                      error=error))
        notifier = server.app[NOTIFIER]
        notifier.stale_changed(host_id, True)
        notifier.stale_changed(host_id, False)  # recovery: the webhook's business, no channel event
        notifier.drill_overdue_changed(True, {"host_id": host_id, "source_group_id": group["id"], "max_age_hours": 48})
        notifier.backup_anomaly(host_id, "added 40 GB, 200 x its usual", job_id="j-1")
        notifier.backup_anomaly(host_id, "added 40 GB, 200 x its usual", job_id="j-1")  # the same one again
        await wait_for(lambda: len(rec.received) >= len(events), what="one message per followed event")
        for event in events:
            await wait_for(lambda: server.app[ALERTS].pending(ids[event])[0] == 0, what=f"{event} sent")
        assert sorted(rec.paths) == sorted(f"/{e}" for e in events), rec.paths  # one each, nothing else
        by_path = dict(rec.messages)
        assert by_path["/check.failed"]["title"] == "[restic-manager] app-3: repository check failed"
        assert "pack 0a1b is damaged" in by_path["/check.failed"]["message"]
        assert "2 of 20 restored files differ" in by_path["/drill.failed"]["message"]
        assert "i/o timeout" in by_path["/repo.unreachable"]["message"]
        assert "1 occurrence on 1 host" in by_path["/backup.anomaly"]["message"]
        assert "no good drill in 48 h" in by_path["/drill.overdue"]["message"]
        await agent.close()


async def test_a_channel_saved_elsewhere_is_followed_after_a_refresh(server):
    """Replicas share the store: what another one saved reaches this one's dispatcher when it
    reloads the channels (every sweep interval), and a deletion stops it."""
    from rm_core.alerts import AlertEvent, AlertSubject
    from rm_server.store import SYSTEM

    alerts = server.app[ALERTS]
    host_id, _ = await server.enroll("h1")
    async with json_receiver() as rec:
        row = await server.store.channels.create(  # as another replica's ChannelService would
            SYSTEM, "elsewhere", lambda cid: server.app[MASTER_KEY].seal(rec.channel_url().encode(), f"channel:{cid}"),
            "json://127.0.0.1/…", ["host.stale"], 0)
        assert alerts.raise_event(AlertEvent.host_stale, AlertSubject(host_id)) == 0  # not known yet
        await alerts.load()
        assert alerts.raise_event(AlertEvent.host_stale, AlertSubject(host_id)) == 1
        await wait_for(lambda: rec.received, what="the digest through the refreshed channel")
        await server.store.channels.delete(SYSTEM, row.id)
        await alerts.load()
        assert alerts.raise_event(AlertEvent.host_stale, AlertSubject(host_id)) == 0
