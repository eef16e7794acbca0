"""The job.log fast path accepts only what the models accept, with the same lines; anything
else is left to the models (None), which accept it or name the problem."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from rm_core import protocol as p
from rm_core.bounds import MAX_LOG_LINE, TRUNCATED
from rm_core.log_frames import WireJobLog, parse_job_log, wire_job_log


def frame(lines, *, spaced: bool = False, **env) -> str:
    body = {"type": "job.log", "id": "01ABC", "ref": None, "ts": "2026-03-01T10:00:00Z",
            "payload": {"job_id": "01JOB", "lines": lines}, **env}
    return json.dumps(body) if spaced else json.dumps(body, separators=(",", ":"))


STAMPS = ["2026-03-01T10:00:00Z", "2026-03-01T10:00:00.000001+00:00", "2026-03-01T12:00:00.5+02:00",
          "2026-03-01T10:00:01.123456Z", "2026-03-01 10:00:00-05:30", "2026-03-01T10:00:00"]


@pytest.mark.parametrize("spaced", [False, True])
def test_fast_path_gives_what_the_models_give(spaced):
    lines = [{"seq": i + 2, "ts": t, "stream": s, "text": f"line {i}"}
             for i, (t, s) in enumerate(zip(STAMPS, ["stdout", "stderr", "agent"] * 2))]
    lines.append({"seq": 8, "ts": STAMPS[0], "text": "no stream: stdout"})
    lines.append({"seq": 9, "ts": STAMPS[0], "text": "x" * (MAX_LOG_LINE + 50), "extra": "ignored"})
    lines.append({"seq": 10, "ts": STAMPS[0], "text": "ünïcødé ✓"})
    raw = frame(lines, spaced=spaced)
    fast = parse_job_log(raw)
    slow = p.parse_agent_message(raw)
    assert fast is not None and fast.type == "job.log" and fast.id == slow.id == "01ABC"
    assert isinstance(fast.payload, WireJobLog)
    want = wire_job_log(slow.payload)
    assert fast.payload.job_id == want.job_id
    assert len(fast.payload.lines) == len(want.lines)
    for got, exp, sent in zip(fast.payload.lines, want.lines, lines):
        assert (got.seq, got.stream, got.text, got.size) == (exp.seq, exp.stream, exp.text, exp.size)
        assert got.ts == sent["ts"]  # the agent's text, as it came
        assert datetime.fromisoformat(got.ts.replace("Z", "+00:00")) == datetime.fromisoformat(
            exp.ts.replace("Z", "+00:00"))  # the same instant the models read
    assert fast.payload.lines[7].text.endswith(TRUNCATED) and len(fast.payload.lines[7].text) == MAX_LOG_LINE
    assert fast.payload.lines[8].size == len("ünïcødé ✓".encode())


GOOD = {"seq": 2, "ts": "2026-03-01T10:00:00Z", "stream": "stdout", "text": "t"}


@pytest.mark.parametrize("raw, models_refuse", [
    (frame([{**GOOD, "seq": 0}]), True),
    (frame([{**GOOD, "seq": 2**63}]), True),
    (frame([{**GOOD, "seq": "2"}]), False),  # lax models take it: theirs to judge
    (frame([{**GOOD, "seq": 2.0}]), False),
    (frame([{**GOOD, "seq": True}]), None),
    (frame([{**GOOD, "ts": "2026-13-01T10:00:00Z"}]), True),
    (frame([{**GOOD, "ts": "2026-02-30T10:00:00Z"}]), True),
    (frame([{**GOOD, "ts": "0001-01-01T00:00:00+14:00"}]), True),
    (frame([{**GOOD, "ts": "1970-01-01T00:00:00+01:00"}]), True),
    (frame([{**GOOD, "ts": "yesterday"}]), True),
    (frame([{**GOOD, "ts": "２０２６-03-01T10:00:00Z"}]), True),  # non-ASCII digits
    (frame([{**GOOD, "ts": 1772359200}]), False),
    (frame([{**GOOD, "stream": "stdin"}]), True),
    (frame([{k: v for k, v in GOOD.items() if k != "text"}]), True),
    (frame([{**GOOD, "text": 5}]), True),
    (frame([]), True),
    (frame([GOOD, "not a line"]), True),
    (frame([GOOD], payload={"job_id": 5, "lines": [GOOD]}), True),
    (frame([GOOD], payload=[]), True),
    (frame([GOOD], id=7), True),
    (frame([GOOD], ts="soon"), True),
    ('{"type":"job.log","id":"x","payload":{"job_id":"j","lines":[{"seq":2,"ts":"2026-03-01T10:00:00Z","text":"\\ud800"}]}}',
     None),
    ('{"type":"job.log", not json', True),
])
def test_anything_unusual_is_left_to_the_models(raw, models_refuse):
    assert parse_job_log(raw) is None
    if models_refuse is None:
        return  # either answer is the models' to give
    if models_refuse:
        with pytest.raises(p.ValidationError):
            p.parse_agent_message(raw)
    else:
        assert p.parse_agent_message(raw).type == "job.log"


def test_other_frames_are_not_touched():
    ack = p.encode(p.message(p.ScheduleAck(version=3)))
    assert parse_job_log(ack) is None
    assert parse_job_log(ack.encode()) is None
    # a job.log whose type is not the first key is valid, just not on the fast path
    raw = json.dumps({"id": "x", "type": "job.log", "payload": {"job_id": "j", "lines": [GOOD]}})
    assert parse_job_log(raw) is None and p.parse_agent_message(raw).type == "job.log"


def test_an_agents_own_encoding_takes_the_fast_path():
    # what rm_agent sends: p.encode of an Envelope with a dict payload, timestamps from rm_core.times.iso
    raw = p.encode(p.Envelope(type="job.log", payload={"job_id": "j", "lines": [
        {"seq": 2, "ts": "2026-03-01T10:00:00.250000+00:00", "stream": "stderr", "text": "a"},
        {"seq": 3, "ts": "2026-03-01T10:00:01+00:00", "stream": "stdout", "text": "b"}]}))
    env = parse_job_log(raw)
    assert env is not None and [ln.seq for ln in env.payload.lines] == [2, 3]
