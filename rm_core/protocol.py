"""The agent <-> server WebSocket protocol (docs/protocol.md).

Every frame is an envelope `{type, id, ref, ts, payload}`. Each message type has one
payload model; `parse_agent_message` / `parse_server_message` validate a raw frame into
the envelope subclass for its type, so handlers get typed payloads.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Dict, List, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from rm_core.bounds import INT64_MAX, MAX_KBPS, MAX_KEEP, Count, Int64, LogText, Shown, Timestamp
from rm_core.enums import ActorKind, CredentialSlot, JobKind, JobState
from rm_core.ids import new_id
from rm_core.times import utcnow


class Payload(BaseModel):
    # Unknown fields are kept out rather than rejected: a newer peer may add fields.
    # defer_build: a process builds validators only for the messages it actually handles
    # (the agent's idle memory is a target; building every schema at import cost ~13 MB).
    model_config = ConfigDict(extra="ignore", defer_build=True)


# ---------------------------------------------------------------- shared pieces


class Retention(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keep_last: int | None = Field(default=None, ge=0, le=MAX_KEEP)
    keep_hourly: int | None = Field(default=None, ge=0, le=MAX_KEEP)
    keep_daily: int | None = Field(default=None, ge=0, le=MAX_KEEP)
    keep_weekly: int | None = Field(default=None, ge=0, le=MAX_KEEP)
    keep_monthly: int | None = Field(default=None, ge=0, le=MAX_KEEP)
    keep_yearly: int | None = Field(default=None, ge=0, le=MAX_KEEP)
    keep_within: str | None = Field(default=None, max_length=40, pattern=r"^(\d{1,6}[yMdhms])+$")

    def is_empty(self) -> bool:
        """An empty policy would make `restic forget` remove every snapshot."""
        return all(v in (None, 0, "") for v in self.model_dump().values())


class SourceGroupSpec(Payload):
    id: str
    name: str
    includes: list[str] = []
    excludes: list[str] = []
    tag: str
    retention: Retention = Retention()
    pre_hook: str | None = None
    post_hook: str | None = None


class ScheduleSpec(Payload):
    id: str
    name: str
    cron: str | None = None
    timezone: str = "UTC"
    enabled: bool = True
    manual: bool = False
    source_groups: list[SourceGroupSpec] = []


class LogLine(Payload):
    seq: int = Field(ge=1, le=INT64_MAX)
    ts: Timestamp
    stream: Literal["stdout", "stderr", "agent"] = "stdout"
    text: LogText


class Bandwidth(Payload):
    upload_kbps: int | None = Field(default=None, ge=1, le=MAX_KBPS)
    download_kbps: int | None = Field(default=None, ge=1, le=MAX_KBPS)


class RepoCredentials(Payload):
    slot: CredentialSlot = CredentialSlot.repo
    url: str
    password: str | None = None
    rest_user: str | None = None
    rest_password: str | None = None


class SnapshotInfo(Payload):
    id: str
    short_id: str | None = None
    time: Timestamp
    hostname: str | None = None
    paths: list[str] = []
    tags: list[str] = []
    summary: dict[str, Any] | None = None
    original: str | None = None  # a copied snapshot: the id of the snapshot it was copied from


# ---------------------------------------------------------------- agent -> server


class Hello(Payload):
    protocol_version: int = Field(ge=0, le=2**31 - 1)
    agent_version: Shown
    hostname: Shown
    os: Shown = ""
    arch: Shown = ""
    restic_version: Shown | None = None
    applied_schedule_version: Count = 0
    running_jobs: list[str] = []
    outbox_high_seq: Count = 0
    # what the agent understands beyond its protocol version (rm_core.version.AGENT_FEATURES)
    features: List[Annotated[str, Field(max_length=64)]] = Field(default=[], max_length=64)


class Heartbeat(Payload):
    running_jobs: list[str] = []


class ScheduleAck(Payload):
    version: Count


class ScheduleFire(Payload):
    schedule_id: str
    scheduled_at: Timestamp
    fire_id: str


class JobStarted(Payload):
    job_id: str
    seq: Literal[1] = 1
    started_at: Timestamp
    kind: JobKind
    schedule_id: str | None = None
    source_group_id: str | None = None
    actor_kind: ActorKind | None = None


class JobProgress(Payload):
    job_id: str
    percent: float | None = Field(default=None, ge=0, le=100)
    bytes_done: Count | None = None
    bytes_total: Count | None = None
    files_done: Count | None = None
    files_total: Count | None = None
    eta_seconds: float | None = Field(default=None, ge=0, le=1e9)


class JobLog(Payload):
    job_id: str
    lines: list[LogLine] = Field(min_length=1)


class JobFinished(Payload):
    job_id: str
    seq: int = Field(ge=2, le=INT64_MAX)
    state: JobState
    exit_code: Int64 | None = None
    summary: dict[str, Any] | None = None
    error: str | None = None
    finished_at: Timestamp | None = None


class SnapshotsReport(Payload):
    snapshots: list[SnapshotInfo]


class RepoStats(Payload):
    total_size: Count | None = None
    total_file_count: Count | None = None
    snapshots_count: Count | None = None
    raw: dict[str, Any] | None = None


class CopyReport(Payload):
    """The copy repository's snapshots and size (feature "copy"): a message of its own, so a
    server that does not know copies answers unknown_type instead of taking it for the primary's."""

    snapshots: list[SnapshotInfo]
    stats: RepoStats | None = None


# ---------------------------------------------------------------- server -> agent


class HelloOk(Payload):
    server_version: str
    protocol_version: int


class Error(Payload):
    code: str
    message: str = ""


class ScheduleSet(Payload):
    version: int = Field(ge=0)
    schedules: list[ScheduleSpec]


class CommandRun(Payload):
    job_id: str
    kind: JobKind
    params: dict[str, Any] = {}


class CommandCancel(Payload):
    job_id: str


class ConfigUpdate(Payload):
    bandwidth: Bandwidth = Bandwidth()
    credentials: list[RepoCredentials] = []
    # The URLs the server's admin hands agents (`rm-server serve --agent-url`): an agent
    # enrolled before a replica was added learns it here. Empty: the server names none and
    # the agent keeps its own list. Checked by the agent with the enrollment rule
    # (rm_core/server_urls.py), not here: a list it refuses must not cost it the credentials.
    server_urls: list[str] = []


class Ack(Payload):
    job_id: str
    upto_seq: int = Field(ge=0)


# ---------------------------------------------------------------- live queries (rm_core/queries.py)
# Protocol 2. Optional[...] and typing.Dict/List so these build on Python 3.9 agents too.


class Query(Payload):
    """server -> agent: answer `kind` with `params` within `timeout_seconds` of receipt."""

    query_id: str = Field(min_length=1, max_length=64)
    kind: str  # a plain string: a kind the agent does not know gets query.error unknown_kind
    params: Dict[str, Any] = {}
    # Relative, not an absolute time: agent and server clocks need not agree.
    timeout_seconds: float = Field(default=30.0, gt=0, le=3600)


class QueryResult(Payload):
    """agent -> server: one chunk of the answer; the last has done=true and the info."""

    query_id: str
    seq: int = Field(ge=0)  # chunk number from 0; the server refuses a gap
    items: List[Dict[str, Any]] = []
    done: bool = False
    info: Dict[str, Any] = {}


class QueryError(Payload):
    """agent -> server: the query failed; `code` is one of rm_core.queries.ERR_*."""

    query_id: str
    code: str
    message: str = ""


# ---------------------------------------------------------------- envelopes


class Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)
    type: str
    id: str = Field(default_factory=new_id)
    ref: str | None = None
    ts: Timestamp = Field(default_factory=utcnow)
    payload: Any = None


# type name -> payload model, split by direction
AGENT_TO_SERVER: dict[str, type[Payload]] = {
    "hello": Hello,
    "heartbeat": Heartbeat,
    "schedule.ack": ScheduleAck,
    "schedule.fire": ScheduleFire,
    "job.started": JobStarted,
    "job.progress": JobProgress,
    "job.log": JobLog,
    "job.finished": JobFinished,
    "snapshots.report": SnapshotsReport,
    "repo.stats": RepoStats,
    "copy.report": CopyReport,
    "query.result": QueryResult,
    "query.error": QueryError,
    # an agent answers a server frame of a type it does not know with error{unknown_type}
    "error": Error,
}
SERVER_TO_AGENT: dict[str, type[Payload]] = {
    "hello.ok": HelloOk,
    "error": Error,
    "schedule.set": ScheduleSet,
    "command.run": CommandRun,
    "command.cancel": CommandCancel,
    "config.update": ConfigUpdate,
    "ack": Ack,
    "query": Query,
}
_TYPE_OF: dict[type[Payload], str] = {
    model: name for table in (AGENT_TO_SERVER, SERVER_TO_AGENT) for name, model in table.items()
}


def _envelope_class(name: str, model: type[Payload]) -> type[Envelope]:
    cls_name = "".join(part.title() for part in name.replace(".", "_").split("_")) + "Message"
    return type(
        cls_name,
        (Envelope,),
        {"__annotations__": {"type": Literal[name], "payload": model}, "__module__": __name__},
    )


_AGENT_ENVELOPES = [_envelope_class(n, m) for n, m in AGENT_TO_SERVER.items()]
_SERVER_ENVELOPES = [_envelope_class(n, m) for n, m in SERVER_TO_AGENT.items()]


@functools.cache
def _adapter(direction: str) -> TypeAdapter[Envelope]:
    """Built on first use: the server needs only the agent direction, the agent the other.

    The union of one envelope class per message type is built at run time from the tables
    above; a type checker cannot see its members, so it is typed as what it validates to."""
    envelopes = _AGENT_ENVELOPES if direction == "agent" else _SERVER_ENVELOPES
    union: Any = Annotated[Union[tuple(envelopes)], Field(discriminator="type")]
    return TypeAdapter(union)


class UnknownMessageType(ValueError):
    """The frame is a valid envelope, but of a type this side does not handle."""

    def __init__(self, type_: str, envelope: Envelope) -> None:
        super().__init__(f"unknown message type {type_!r}")
        self.type = type_
        self.envelope = envelope


def _parse(raw: str | bytes, direction: str) -> Envelope:
    # One pass for the common case; the bare envelope is parsed only to explain a failure.
    try:
        return _adapter(direction).validate_json(raw)
    except ValidationError as exc:
        if not any(e["type"] == "union_tag_invalid" for e in exc.errors()):
            raise
        bare = Envelope.model_validate_json(raw)
        raise UnknownMessageType(bare.type, bare) from None


def parse_agent_message(raw: str | bytes) -> Envelope:
    """Validate a frame sent by an agent. Raises ValidationError or UnknownMessageType."""
    return _parse(raw, "agent")


def parse_server_message(raw: str | bytes) -> Envelope:
    """Validate a frame sent by the server. Raises ValidationError or UnknownMessageType."""
    return _parse(raw, "server")


def message(payload: Payload, ref: str | None = None) -> Envelope:
    """Wrap a payload in an envelope of its type."""
    return Envelope(type=_TYPE_OF[type(payload)], ref=ref, payload=payload)


def encode(env: Envelope) -> str:
    return env.model_dump_json(exclude_none=False)


def encode_raw(type_: str, payload_json: str, ref: str | None = None) -> str:
    """An envelope around a payload that is already JSON (built elsewhere, e.g. by SQLite).

    The caller vouches that the payload is valid for `type_`."""
    head = Envelope(type=type_, ref=ref).model_dump_json(exclude={"payload"})
    return f"{head[:-1]},\"payload\":{payload_json}}}"


def encode_raw_many(type_: str, payloads: list[str]) -> list[str]:
    """`encode_raw` for many payloads (a fleet push): the envelope is serialized once and each
    frame gets its own id, instead of one envelope model per frame."""
    env = Envelope(type=type_)
    head = env.model_dump_json(exclude={"payload"})[:-1]
    return [f"{head.replace(env.id, new_id(), 1)},\"payload\":{payload}}}" for payload in payloads]


__all__ = [name for name in dir() if not name.startswith("_")] + ["ValidationError"]
