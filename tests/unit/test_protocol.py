"""Every protocol message survives encode -> parse with its type and payload intact."""

from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from rm_core import protocol as p
from rm_core.enums import JobKind, JobState

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
GROUP = p.SourceGroupSpec(id="g1", name="etc", includes=["/etc"], tag="etc", retention=p.Retention(keep_daily=7))

SAMPLES: dict[str, p.Payload] = {
    "hello": p.Hello(protocol_version=1, agent_version="1.0", hostname="h", os="linux", arch="x86_64",
                     restic_version="0.14.0", applied_schedule_version=3, running_jobs=["j1"], outbox_high_seq=9),
    "heartbeat": p.Heartbeat(running_jobs=["j1"]),
    "schedule.ack": p.ScheduleAck(version=4),
    "schedule.fire": p.ScheduleFire(schedule_id="s1", scheduled_at=NOW, fire_id="f1"),
    "job.started": p.JobStarted(job_id="j1", started_at=NOW, kind=JobKind.backup, schedule_id="s1",
                                source_group_id="g1", actor_kind="schedule"),
    "job.progress": p.JobProgress(job_id="j1", percent=42.5, bytes_done=10, bytes_total=20, files_done=1,
                                  files_total=2, eta_seconds=3),
    "job.log": p.JobLog(job_id="j1", lines=[p.LogLine(seq=2, ts=NOW, stream="stderr", text="x")]),
    "job.finished": p.JobFinished(job_id="j1", seq=3, state=JobState.warning, exit_code=3, summary={"a": 1},
                                  error="some files unreadable"),
    "snapshots.report": p.SnapshotsReport(snapshots=[p.SnapshotInfo(id="ab" * 32, time=NOW, paths=["/etc"])]),
    "repo.stats": p.RepoStats(total_size=100, total_file_count=3, snapshots_count=1),
    "copy.report": p.CopyReport(snapshots=[p.SnapshotInfo(id="cd" * 32, time=NOW, tags=["etc"], original="ab" * 32)],
                                stats=p.RepoStats(total_size=90, snapshots_count=1)),
    "hello.ok": p.HelloOk(server_version="1", protocol_version=1),
    "error": p.Error(code="protocol_too_old", message="upgrade"),
    "schedule.set": p.ScheduleSet(version=2, schedules=[p.ScheduleSpec(id="s1", name="nightly", cron="0 2 * * *",
                                                                       source_groups=[GROUP])]),
    "command.run": p.CommandRun(job_id="j1", kind=JobKind.restore, params={"snapshot_id": "latest"}),
    "command.cancel": p.CommandCancel(job_id="j1"),
    "config.update": p.ConfigUpdate(bandwidth=p.Bandwidth(upload_kbps=100),
                                    credentials=[p.RepoCredentials(url="/r", password="pw")]),
    "ack": p.Ack(job_id="j1", upto_seq=7),
    "query": p.Query(query_id="q1", kind="snapshot.ls", params={"snapshot_id": "ab" * 4, "path": "/etc"},
                     timeout_seconds=10),
    "query.result": p.QueryResult(query_id="q1", seq=0, items=[{"name": "passwd", "type": "file"}], done=True,
                                  info={"truncated": False}),
    "query.error": p.QueryError(query_id="q1", code="snapshot_not_found", message="no snapshot abababab"),
}


def test_every_type_has_a_sample():
    assert set(SAMPLES) == set(p.AGENT_TO_SERVER) | set(p.SERVER_TO_AGENT)


@pytest.mark.parametrize("type_", sorted(SAMPLES))
def test_round_trip(type_):
    payload = SAMPLES[type_]
    env = p.message(payload, ref="r1")
    assert env.type == type_
    parse = p.parse_agent_message if type_ in p.AGENT_TO_SERVER else p.parse_server_message
    back = parse(p.encode(env))
    assert back.type == type_ and back.id == env.id and back.ref == "r1"
    assert type(back.payload) is type(payload)
    assert back.payload == payload


def test_direction_is_enforced():
    with pytest.raises(p.UnknownMessageType):
        p.parse_agent_message(p.encode(p.message(SAMPLES["hello.ok"])))


def test_unknown_type_keeps_envelope_for_the_reply():
    with pytest.raises(p.UnknownMessageType) as info:
        p.parse_agent_message('{"type": "future.thing", "id": "abc", "payload": {}}')
    assert info.value.type == "future.thing" and info.value.envelope.id == "abc"


@pytest.mark.parametrize("raw", ["not json", "[]", '{"payload": {}}', '{"type": "job.log", "payload": {"job_id": "j"}}',
                                 '{"type": "job.finished", "payload": {"job_id": "j", "seq": 1, "state": "succeeded"}}'])
def test_malformed_frames_raise_validation_error(raw):
    with pytest.raises(ValidationError):
        p.parse_agent_message(raw)


def test_empty_retention_is_detected():
    assert p.Retention().is_empty()
    assert p.Retention(keep_last=0).is_empty()
    assert not p.Retention(keep_within="7d").is_empty()


def test_encode_raw_many_frames_parse_with_distinct_ids():
    from rm_core import protocol as p
    payloads = ['{"version": 3, "schedules": []}', '{"version": 4, "schedules": []}']
    frames = p.encode_raw_many("schedule.set", payloads)
    parsed = [p.parse_server_message(f) for f in frames]
    assert [e.payload.version for e in parsed] == [3, 4]
    assert all(e.type == "schedule.set" and e.ref is None for e in parsed)
    assert len({e.id for e in parsed}) == 2
