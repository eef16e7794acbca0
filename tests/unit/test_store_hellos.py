"""store.hellos: what many hellos need, read per batch, must say what per-host reads say."""

from rm_core.api import ScheduleBody, SourceGroupBody
from rm_core.enums import ActorKind, JobKind
from rm_core.ids import new_id
from rm_server.store import SYSTEM, NewJob, Store


async def test_hello_states_match_the_per_host_reads(tmp_path):
    store = await Store.open(tmp_path / "s.db")
    try:
        hosts = [new_id() for _ in range(4)]
        async with store.db.write() as c:
            await c.executemany("INSERT INTO hosts (id, hostname, created_at) VALUES (?, ?, '2026-01-01T00:00:00+00:00')",
                                [(h, f"h{i}") for i, h in enumerate(hosts)])
        g = await store.schedules.create_group(SYSTEM, hosts[0], SourceGroupBody(name="etc", includes=["/etc"]))
        await store.schedules.create(SYSTEM, hosts[0], ScheduleBody(name="n", cron="0 2 * * *", source_group_ids=[g.id]))
        await store.hosts.set_json(SYSTEM, hosts[1], "bandwidth", {"upload_kib": 512})
        await store.credentials.put(SYSTEM, hosts[1], "repo", "rest:https://x/", b"sealed-blob", "fp")
        await store.jobs.create(SYSTEM, [NewJob(hosts[2], JobKind.check, ActorKind.system)])
        await store.jobs.create(SYSTEM, [NewJob(hosts[3], JobKind.init, ActorKind.system)])
        (running,) = await store.jobs.queued_for_host(hosts[3])
        await store.jobs.mark_dispatched(running.id)

        states = await store.hellos.states(hosts + ["no-such-host", hosts[0]])
        assert set(states) == set(hosts)
        payloads = await store.schedule_sets.payloads(hosts)
        for h in hosts:
            assert states[h].schedule_set == payloads[h]
            assert states[h].bandwidth == await store.hosts.get_json(h, "bandwidth")
            assert states[h].sealed == await store.credentials.all_for_host(h)
        assert states[hosts[1]].sealed == {"repo": b"sealed-blob"}
        assert [(s.active_jobs, s.queued_jobs, s.has_init_job) for s in (states[h] for h in hosts)] == [
            (False, False, False), (False, False, False), (False, True, False), (True, False, True)]
    finally:
        await store.close()
