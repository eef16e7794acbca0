"""PUT /fleet/policies/{name}: one backup policy onto many hosts, pushed and acked."""

import json
from datetime import datetime, timezone

import pytest

from rm_core import protocol as p
from tests.conftest import TestAgent, wait_for

POLICY = {"includes": ["/etc", "/home"], "excludes": ["*.tmp"], "retention": {"keep_daily": 7},
          "cron": "0 3 * * *", "timezone": "Europe/Berlin"}


async def test_policy_reaches_selected_hosts_and_is_acked(server):
    web1, tok1 = await server.enroll("web-1")
    web2, tok2 = await server.enroll("web-2")
    db1, _ = await server.enroll("db-1")
    a1, a2 = TestAgent(server, tok1), TestAgent(server, tok2)
    for a in (a1, a2):
        await a.connect()
        await a.expect("schedule.set")
    status, body = await server.call("PUT", "/fleet/policies/nightly", json={**POLICY, "hosts": {"q": "web"}})
    assert status == 200, body
    assert body == {"name": "nightly", "hosts": 2, "pushed": 2}
    for agent, host_id in ((a1, web1), (a2, web2)):
        pushed = await agent.expect("schedule.set")
        (spec,) = pushed.payload.schedules
        assert spec.name == "nightly" and spec.cron == "0 3 * * *" and spec.timezone == "Europe/Berlin"
        assert spec.source_groups[0].includes == ["/etc", "/home"] and spec.source_groups[0].tag == "nightly"
        await agent.send(p.ScheduleAck(version=pushed.payload.version))

        async def acked(host_id=host_id, version=pushed.payload.version):
            _, s = await server.call("GET", f"/hosts/{host_id}/schedules")
            return s["applied_version"] == s["version"] == version
        await wait_for(acked, what=f"ack of {host_id}")
    status, untouched = await server.call("GET", f"/hosts/{db1}/schedules")
    assert untouched["schedules"] == [] and untouched["version"] == 0

    # Again, changed: updated in place, nothing duplicated.
    status, body = await server.call("PUT", "/fleet/policies/nightly",
                                     json={**POLICY, "cron": "30 4 * * *", "hosts": {"ids": [web1]}})
    assert status == 200 and body["hosts"] == 1
    _, s = await server.call("GET", f"/hosts/{web1}/schedules")
    assert [x["cron"] for x in s["schedules"]] == ["30 4 * * *"]
    _, groups = await server.call("GET", f"/hosts/{web1}/source-groups")
    assert [g["name"] for g in groups["source_groups"]] == ["nightly"]
    assert s["schedules"][0]["source_group_ids"] == [groups["source_groups"][0]["id"]]
    _, audit = await server.call("GET", "/audit?limit=3")
    assert audit["entries"][0]["action"] == "fleet.policy"
    await a1.close()
    await a2.close()


async def test_policy_validation(server):
    status, body = await server.call("PUT", "/fleet/policies/x", json={**POLICY, "cron": "61 * * * *"})
    assert status == 400 and body["error"]["details"]["field"] == "cron"
    for tz in ("Mars/Olympus", "America", "Etc"):
        status, body = await server.call("PUT", "/fleet/policies/x", json={**POLICY, "timezone": tz})
        assert status == 400 and body["error"]["details"]["field"] == "timezone", (tz, body)
    status, body = await server.call("PUT", "/fleet/policies/x", json={**POLICY, "includes": []})
    assert status == 400 and body["error"]["details"]["fields"][0]["field"] == "includes"
    status, body = await server.call("PUT", "/fleet/policies/x", json={**POLICY, "hosts": {"status": "asleep"}})
    assert status == 400
    status, body = await server.call("PUT", "/fleet/policies/x", role="viewer", json=POLICY)
    assert status == 403


async def test_policy_events_carry_versions_and_crons_and_crons_list_groups_hosts(server):
    """Consoles follow a fleet push from its events alone (no reload of the host list), and
    read every host's crons in one small reply to compute next runs by their own clock."""
    from tests.server.test_events import events

    web1, _ = await server.enroll("web-1")
    web2, _ = await server.enroll("web-2")
    db1, _ = await server.enroll("db-1")
    status, body = await server.call("GET", "/fleet/crons", role="viewer")
    assert (status, body) == (200, {"crons": []})
    ev = await events(server)
    status, body = await server.call("PUT", "/fleet/policies/nightly", json={**POLICY, "hosts": {"q": "web"}})
    assert status == 200, body
    for host_id in (web1, web2):
        frame = await ev.next("schedule.updated", lambda f, h=host_id: f["payload"]["host_id"] == h)
        assert frame["payload"] == {"host_id": host_id, "version": 1, "applied_version": 0,
                                    "crons": [{"cron": "0 3 * * *", "timezone": "Europe/Berlin"}]}
    # one host's own schedule (and a manual one, which has no next run) beside the policy's
    group = (await server.call("POST", f"/hosts/{web1}/source-groups", json={"name": "db", "includes": ["/db"]}))[1]
    for body in ({"name": "hourly", "cron": "5 * * * *", "source_group_ids": [group["id"]]},
                 {"name": "by-hand", "manual": True, "source_group_ids": [group["id"]]}):
        status, made = await server.call("POST", f"/hosts/{web1}/schedules", json=body)
        assert status == 201, made
    frame = await ev.next("schedule.updated", lambda f: f["payload"]["host_id"] == web1
                          and f["payload"]["version"] == 4)
    assert sorted(c["cron"] for c in frame["payload"]["crons"]) == ["0 3 * * *", "5 * * * *"], "manual left out"
    status, body = await server.call("GET", "/fleet/crons", role="viewer")
    assert status == 200
    assert [(c["cron"], c["timezone"], sorted(c["host_ids"])) for c in body["crons"]] == [
        ("0 3 * * *", "Europe/Berlin", sorted([web1, web2])), ("5 * * * *", "UTC", [web1])]
    assert db1 not in str(body)
    await ev.ws.close()


async def offline_hosts(store, n: int) -> list[str]:
    """`n` hosts written straight into the store, as a large enrolled fleet whose agents are away."""
    from rm_core.ids import new_ids

    ids = new_ids(n)
    created = datetime.now(timezone.utc).isoformat()
    await store.db.write_in_thread(lambda conn: conn.executemany(
        "INSERT INTO hosts (id, hostname, status, os, arch, agent_version, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(h, f"fleet-{i:04d}", "offline", "linux", "x86_64", "test", created) for i, h in enumerate(ids)]))
    return ids


async def test_a_first_policy_on_a_large_fleet_is_read_back_by_index(server, database):
    """A fleet's first policy adds a schedule and a source group per host where there were
    none. PostgreSQL plans by statistics that autovacuum refreshes up to a minute later; left
    saying "empty", the push's schedule-set read scanned every source group once per host
    (70 s for 19k hosts). Every scan of those tables in that read happens once, not per host."""
    if database != "postgresql":
        pytest.skip("PostgreSQL's planner statistics")
    from rm_server.keys import STORE
    from rm_server.store.lanes import LaneName
    from rm_server.store.schedule_sets import schedule_set_json

    store = server.app[STORE]
    ids = await offline_hosts(store, 2000)
    status, body = await server.call("PUT", "/fleet/policies/nightly", json=POLICY)
    assert status == 200 and body["hosts"] == 2000, body

    chunk = ids[:1000]
    sql = (f"EXPLAIN (ANALYZE, FORMAT JSON) SELECT h.id, {schedule_set_json(store.fleet.d)} FROM hosts h"
           f" WHERE h.id IN ({','.join('?' * len(chunk))})")
    (row,) = await store.db.lane(LaneName.BULK).call(lambda conn: conn.execute(sql, chunk).fetchall())
    plan = row[0] if isinstance(row[0], list) else json.loads(row[0])

    def nodes(node):
        yield node
        for child in node.get("Plans", []):
            yield from nodes(child)

    per_host = [(n["Relation Name"], n["Actual Loops"]) for n in nodes(plan[0]["Plan"])
                if n["Node Type"] == "Seq Scan" and n.get("Relation Name") in ("source_groups", "schedules",
                                                                                "schedule_groups")
                and n["Actual Loops"] > 1]
    assert per_host == [], f"scanned whole tables once per host: {per_host}"


async def test_host_updates_find_room_on_their_own_page(server, database):
    """Every hello, ack and finished backup updates its host's row: a fleet push is 19k of
    them. With room left on each page (fillfactor 70, migration 0009) PostgreSQL updates in
    place and writes no index entry (a HOT update); on full pages none can."""
    if database != "postgresql":
        pytest.skip("PostgreSQL's page fill")
    from rm_server.keys import STORE

    store = server.app[STORE]
    ids = await offline_hosts(store, 2000)
    created = datetime.now(timezone.utc).isoformat()
    acked = ids[::3]  # a third of the fleet acks in one transaction: its new row versions fit the room

    def ack(conn):
        conn.execute(f"UPDATE hosts SET applied_schedule_version = applied_schedule_version + 1, last_seen = ?"
                     f" WHERE id IN ({','.join('?' * len(acked))})", (created, *acked))
        # this transaction's own counts (the statistics views lag behind other sessions)
        return conn.execute("SELECT pg_stat_get_xact_tuples_updated('hosts'::regclass),"
                            " pg_stat_get_xact_tuples_hot_updated('hosts'::regclass)").fetchone()

    updated, hot = await store.db.write_in_thread(ack)
    assert updated == len(acked) and hot >= 0.9 * updated, (updated, hot)
