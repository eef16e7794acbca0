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



async def _stored(tmp_path, name, frames, parse):
    """Rows and counters after applying `frames` (raw job.log payload dicts) parsed by `parse`."""
    store = await Store.open(tmp_path / f"{name}.db")
    store.jobs.log_head, store.jobs.log_tail = 3, 4
    try:
        host = "01HOST"
        async with store.db.write() as c:
            await c.execute("INSERT INTO hosts (id, hostname, created_at) VALUES (?, 'h', '2026-01-01T00:00:00+00:00')",
                            (host,))
        (job,) = await store.jobs.create(SYSTEM, [NewJob(host, JobKind.check, ActorKind.system)])
        await store.jobs.apply_started(host, p.JobStarted(job_id=job.id, kind="check", started_at=datetime.now(timezone.utc)), True)
        acks = []
        for lines in frames:
            raw = p.encode(p.Envelope(type="job.log", payload={"job_id": job.id, "lines": lines}))
            (applied,) = await store.jobs.apply_logs([(host, parse(raw).payload)])
            acks.append((applied.acked_seq, [ln.seq for ln in applied.lines]))
        rows = await store.db.fetchall("SELECT seq, stream, text FROM job_logs WHERE job_id = ? ORDER BY seq", (job.id,))
        counts = await store.db.fetchone("SELECT acked_seq, log_lines, log_dropped, log_bytes FROM jobs WHERE id = ?",
                                         (job.id,))
        return acks, [tuple(r) for r in rows], tuple(counts)
    finally:
        await store.close()


async def test_fast_and_model_paths_store_the_same_rows(tmp_path):
    from rm_core.log_frames import parse_job_log

    ts = "2026-03-01T10:00:00.000001+00:00"
    line = lambda seq, text="x": {"seq": seq, "ts": ts, "stream": "stdout", "text": f"{text}{seq}"}  # noqa: E731
    frames = [[line(s) for s in range(2, 6)],
              [line(4), line(5), line(6)],          # resent lines are skipped
              [line(7), line(9)],                   # a gap: only 7 is taken
              [line(s, "é" * 3) for s in range(8, 16)]]  # beyond head + tail: the middle is dropped
    fast = await _stored(tmp_path, "fast", frames, parse_job_log)
    assert all(parse_job_log(p.encode(p.Envelope(type="job.log", payload={"job_id": "j", "lines": f})))
               for f in frames)  # every frame took the fast path
    slow = await _stored(tmp_path, "slow", frames, p.parse_agent_message)
    assert fast == slow
    acks, rows, (acked, n, dropped, size) = fast
    assert [a for a, _ in acks] == [5, 6, 7, 15]
    assert [r[0] for r in rows] == [2, 3, 4, 12, 13, 14, 15] and dropped == 7 and n == 7 == len(rows)
    assert size == sum(len(r[2].encode()) for r in rows)
