"""The SQLite-built schedule.set payload must equal the model-built one, field for field."""

from rm_core import protocol as p
from rm_core.api import ScheduleBody, SourceGroupBody
from rm_core.ids import new_id
from rm_server.store import SYSTEM, Store


async def test_sql_schedule_sets_match_models(tmp_path):
    store = await Store.open(tmp_path / "s.db")
    try:
        hosts = [new_id() for _ in range(3)]
        async with store.db.write() as c:
            await c.executemany("INSERT INTO hosts (id, hostname, created_at) VALUES (?, ?, '2026-01-01T00:00:00+00:00')",
                                [(h, f"h{i}") for i, h in enumerate(hosts)])
        a = await store.schedules.create_group(SYSTEM, hosts[0], SourceGroupBody(
            name="etc", includes=["/etc"], excludes=["*.tmp"], retention={"keep_daily": 7}, pre_hook="echo hi"))
        b = await store.schedules.create_group(SYSTEM, hosts[0], SourceGroupBody(
            name="home", includes=["/home", "/root"], tag="home-t", retention={"keep_within": "30d"}))
        await store.schedules.create(SYSTEM, hosts[0], ScheduleBody(
            name="nightly", cron="0 2 * * *", timezone="Europe/Berlin", source_group_ids=[b.id, a.id]))
        await store.schedules.create(SYSTEM, hosts[0], ScheduleBody(
            name="adhoc", manual=True, enabled=False, source_group_ids=[a.id]))
        await store.schedules.create_group(SYSTEM, hosts[1], SourceGroupBody(name="x", includes=["/x"]))
        payloads = await store.schedule_sets.payloads(hosts)
        assert set(payloads) == set(hosts)
        for host_id in hosts:
            from_sql = p.ScheduleSet.model_validate_json(payloads[host_id])
            assert from_sql == await store.schedules.schedule_set(host_id), host_id
        first = p.ScheduleSet.model_validate_json(payloads[hosts[0]])
        assert [s.name for s in first.schedules] == ["adhoc", "nightly"]
        assert [g.name for g in first.schedules[1].source_groups] == ["home", "etc"], "group order is kept"
        assert p.ScheduleSet.model_validate_json(payloads[hosts[2]]).schedules == []
        frame = p.parse_server_message(p.encode_raw("schedule.set", payloads[hosts[0]], ref="r"))
        assert frame.type == "schedule.set" and frame.ref == "r" and frame.payload == first
    finally:
        await store.close()
