"""Log lines keep the agent's instant: stored in one call per batch, read back the same."""

from datetime import datetime, timedelta, timezone

from rm_core import protocol as p
from rm_core.enums import ActorKind, JobKind
from rm_core.ids import new_id
from rm_server.store import SYSTEM, NewJob, Store


async def test_log_timestamps_survive_storage(tmp_path):
    store = await Store.open(tmp_path / "s.db")
    try:
        host = new_id()
        async with store.db.write() as c:
            await c.execute("INSERT INTO hosts (id, hostname, created_at) VALUES (?, 'h', '2026-01-01T00:00:00+00:00')",
                            (host,))
        (job,) = await store.jobs.create(SYSTEM, [NewJob(host, JobKind.check, ActorKind.system)])
        await store.jobs.apply_started(host, p.JobStarted(job_id=job.id, kind="check", started_at=datetime.now(timezone.utc)), True)
        sent = ["2026-03-01T10:00:00Z", "2026-03-01T10:00:00.000001+00:00", "2026-03-01T12:00:00.5+02:00",
                "2026-03-01T10:00:01.123456Z"]
        log = p.JobLog(job_id=job.id, lines=[p.LogLine(seq=i + 2, ts=t, text=f"l{i}") for i, t in enumerate(sent)])
        # seq 2 again plus a gap after 5: only the contiguous new lines are kept
        again = p.JobLog(job_id=job.id, lines=[p.LogLine(seq=5, ts=sent[3], text="l3"),
                                               p.LogLine(seq=7, ts=sent[0], text="gap")])
        (first, second) = await store.jobs.apply_logs([(host, log), (host, again)])
        assert first.acked_seq == 5 and second.acked_seq == 5
        page = await store.jobs.logs(job.id, 0, 100)
        assert [ln.seq for ln in page.lines] == [2, 3, 4, 5]
        expected = [datetime.fromisoformat(t) for t in sent]
        assert [ln.ts for ln in page.lines] == expected  # the same instants (aware datetimes compare by instant)
        assert page.lines[2].ts.astimezone(timezone.utc) == datetime(2026, 3, 1, 10, 0, 0, 500000, tzinfo=timezone.utc)
        assert all(ln.ts.utcoffset() is not None for ln in page.lines)
        assert timedelta(0) <= page.lines[3].ts - page.lines[0].ts < timedelta(seconds=2)
    finally:
        await store.close()

