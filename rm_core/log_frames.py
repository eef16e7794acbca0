"""`job.log` frames without pydantic models: the server's busiest frame, validated once here.

A frame carries up to a few hundred lines; as models (an envelope, a `JobLog`, one `LogLine`
per line, each timestamp parsed to a datetime and written back as text) its parse was a
third of the server's loop during log ingest. The fast path below reads the frame with
`json.loads` and checks each line with plain comparisons, keeping the agent's timestamp text
as it came. It accepts only a strict subset of what the models accept, with the same
result; anything else (an odd timestamp spelling, a float seq, a missing field) returns
None and the caller parses the frame with the models, which accept it or name the problem.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, List, NamedTuple, Optional

from rm_core.bounds import INT64_MAX, MAX_LOG_LINE, cut_log_line
from rm_core.protocol import Envelope, JobLog

STREAMS = frozenset(("stdout", "stderr", "agent"))
# ISO 8601 as agents write it (rm_core.times.iso: "+00:00"; pydantic: "Z"); ASCII digits only.
_ISO = re.compile(r"([0-9]{4})-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
                  r"(?:Z|[+-][0-9]{2}:[0-9]{2})?", re.ASCII)
# The prefix an encoded job.log starts with (pydantic: no spaces; json.dumps: ", ").
_PREFIXES = ('{"type":"job.log"', '{"type": "job.log"')


class WireLine(NamedTuple):
    """One accepted log line: the columns stored, in order, plus its text's size in bytes."""

    seq: int
    ts: str
    stream: str
    text: str
    size: int

    def as_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.ts, "stream": self.stream, "text": self.text}


class WireJobLog(NamedTuple):
    job_id: str
    lines: List[WireLine]


def _timestamp_ok(text: Any) -> bool:
    """True when the models would take `text` as a Timestamp and datetime reads it back.

    Years at the edge of the models' range (1970, 9998, where the offset decides) are left
    to the models."""
    if type(text) is not str:
        return False
    m = _ISO.fullmatch(text)
    if m is None or not 1971 <= int(m.group(1)) <= 9997:
        return False
    try:
        datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:  # month 13, 31 February, hour 24 ...
        return False
    return True


def _line(item: Any, stamps: set[str]) -> Optional[WireLine]:
    if type(item) is not dict:
        return None
    seq, ts, text = item.get("seq"), item.get("ts"), item.get("text")
    stream = item.get("stream", "stdout")
    if (type(seq) is not int or not 1 <= seq <= INT64_MAX or type(text) is not str or type(ts) is not str
            or stream not in STREAMS):
        return None
    if ts not in stamps:  # a batch mostly shares a few timestamps: check each spelling once
        if not _timestamp_ok(ts):
            return None
        stamps.add(ts)
    if len(text) > MAX_LOG_LINE:
        text = cut_log_line(text)
    try:
        size = len(text.encode())
    except UnicodeEncodeError:  # a lone surrogate: SQLite could not store it, let the models refuse it
        return None
    return WireLine(seq, ts, stream, text, size)


def parse_job_log(raw: Any) -> Optional[Envelope]:
    """The envelope of a well-formed `job.log` frame with a WireJobLog payload, or None.

    None means "not on the fast path": another type, or anything the models must judge."""
    if type(raw) is not str or not raw.startswith(_PREFIXES):
        return None
    try:
        frame = json.loads(raw)
    except ValueError:
        return None
    if type(frame) is not dict or frame.get("type") != "job.log":
        return None
    env_id, ref, env_ts, payload = frame.get("id"), frame.get("ref"), frame.get("ts"), frame.get("payload")
    if (type(env_id) is not str or not (ref is None or type(ref) is str) or type(payload) is not dict
            or ("ts" in frame and not _timestamp_ok(env_ts))):
        return None
    job_id, items = payload.get("job_id"), payload.get("lines")
    if type(job_id) is not str or not job_id.isascii() or type(items) is not list or not items:
        return None
    stamps: set[str] = set()
    lines = []
    for item in items:
        line = _line(item, stamps)
        if line is None:
            return None
        lines.append(line)
    # model_construct: every field was checked above; building the models is the cost avoided.
    # (The envelope's ts was checked too; no handler reads it, so it keeps the default.)
    return Envelope.model_construct(type="job.log", id=env_id, ref=ref, payload=WireJobLog(job_id, lines))


def wire_job_log(ev: JobLog) -> WireJobLog:
    """A JobLog parsed by the models (the slow path) in the fast path's shape."""
    stamps = ev.model_dump(mode="json", include={"lines": {"__all__": {"ts"}}})["lines"]
    return WireJobLog(ev.job_id, [WireLine(ln.seq, stamp["ts"], ln.stream, ln.text, len(ln.text.encode()))
                                  for ln, stamp in zip(ev.lines, stamps)])


def as_wire(ev: Any) -> WireJobLog:
    return ev if isinstance(ev, WireJobLog) else wire_job_log(ev)
