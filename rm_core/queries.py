"""Live queries, server -> agent: look inside a host's repository without making a job.

The server sends `query {query_id, kind, params, timeout_seconds}`; the agent answers with
one or more `query.result {query_id, seq, items[], done, info}` frames (items streamed in
chunks, `info` on the last one) or with `query.error {query_id, code, message}`.
Kinds: `snapshot.ls`, `snapshot.diff`, `forget.preview`. The params and the REST shapes of
the answers live here too, so both sides validate against the same models.

Written for Python 3.9 agents: Optional[...] rather than `X | None` in pydantic fields.
"""

from __future__ import annotations

import posixpath
from datetime import datetime
from typing import Annotated, Any, Dict, List, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rm_core.protocol import Query, QueryError, QueryResult, RepoCredentials, Retention  # noqa: F401 (re-exported)

# The hello feature of agents that answer `query`; other agents never get one.
QUERY_FEATURE = "query"

KIND_LS = "snapshot.ls"
KIND_DIFF = "snapshot.diff"
KIND_FORGET_PREVIEW = "forget.preview"
QUERY_KINDS = (KIND_LS, KIND_DIFF, KIND_FORGET_PREVIEW)

MAX_LS_LIMIT = 5000
DEFAULT_LS_LIMIT = 1000
MAX_DIFF_LIMIT = 10000
DEFAULT_DIFF_LIMIT = 1000
MAX_PATH_LENGTH = 4096
# What an agent answers is bounded too: one hostile `ls` answer of 60 entries of 3.9 MB
# names took the server to 1 GB and sent a viewer 240 MB. A name is one path segment
# (255 bytes on Linux filesystems); a path inside a snapshot may be deeper than PATH_MAX.
MAX_ANSWER_BYTES = 16 * 1024 * 1024  # items and info of one answer, as JSON
MAX_NAME_LENGTH = 1024
MAX_ANSWER_PATH = 16 * 1024
MAX_LABEL = 256  # hostnames, tags, reasons in a retention preview
SNAPSHOT_ID_PATTERN = r"^[0-9a-f]{8,64}$"
SnapshotId = Annotated[str, Field(pattern=SNAPSHOT_ID_PATTERN)]
# What normalize_dir takes, stated for the REST reference: absolute, no NUL, no "." or ".."
# segment (the empty string too: the ls query's default, /).
_SEGMENT = r"([^/\u0000.][^/\u0000]*|\.[^/\u0000.][^/\u0000]*|\.\.[^/\u0000]+)"
DIR_PATTERN = f"^(/{_SEGMENT}?)*$"

# query.error codes (the server maps each to an HTTP status)
ERR_UNKNOWN_KIND = "unknown_kind"
ERR_INVALID_PARAMS = "invalid_params"
ERR_SNAPSHOT_NOT_FOUND = "snapshot_not_found"
ERR_PATH_NOT_FOUND = "path_not_found"
ERR_NOT_A_DIRECTORY = "not_a_directory"
ERR_NO_REPOSITORY = "no_repository"
ERR_BUSY = "agent_busy"
ERR_TIMEOUT = "agent_timeout"
ERR_EMPTY_RETENTION = "empty_retention"


# ---------------------------------------------------------------- params


def normalize_dir(path: str) -> str:
    """An absolute directory path in the form restic prints it: '/', '/etc', '/a b/c'."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError("path must be an absolute directory such as /etc")
    if "\0" in path:
        raise ValueError("path must not contain a NUL character")
    if len(path) > MAX_PATH_LENGTH:
        raise ValueError(f"path is longer than {MAX_PATH_LENGTH} characters")
    if any(part in (".", "..") for part in path.split("/")):
        raise ValueError("path must not contain '.' or '..' segments")
    norm = posixpath.normpath(path)
    return "/" if norm in ("/", "//") else norm.rstrip("/")


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LsParams(Params):
    snapshot_id: SnapshotId
    path: str = "/"
    after: Optional[str] = Field(default=None, max_length=MAX_PATH_LENGTH)
    limit: int = Field(default=DEFAULT_LS_LIMIT, ge=1, le=MAX_LS_LIMIT)
    repo: Optional[RepoCredentials] = None  # set by the server only: another host's repository

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        return normalize_dir(v)

    @field_validator("after")
    @classmethod
    def _name(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and ("\0" in v or "/" in v):
            raise ValueError("after must be a single entry name (no '/' or NUL)")
        return v or None


class DiffParams(Params):
    from_snapshot: SnapshotId
    to_snapshot: SnapshotId
    limit: int = Field(default=DEFAULT_DIFF_LIMIT, ge=1, le=MAX_DIFF_LIMIT)
    repo: Optional[RepoCredentials] = None  # set by the server only: another host's repository


class ForgetPreviewParams(Params):
    tag: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:=-]+$")
    retention: Retention


PARAMS: Dict[str, type[BaseModel]] = {KIND_LS: LsParams, KIND_DIFF: DiffParams, KIND_FORGET_PREVIEW: ForgetPreviewParams}


# ---------------------------------------------------------------- answers (items + REST shapes)


class LsEntry(BaseModel):
    name: str = Field(max_length=MAX_NAME_LENGTH)
    type: str = Field(pattern=r"^(file|dir|symlink|other)$")
    size: int = 0  # bytes for files; 0 for everything else
    mtime: Optional[datetime] = None
    mode: int = 0  # st_mode as stat(2) gives it: type bits + permissions (0o100644)


class LsPage(BaseModel):
    path: str = Field(max_length=MAX_ANSWER_PATH)
    entries: List[LsEntry]
    truncated: bool
    # pass as `after` for the next page (the last name of this one) while truncated
    next_after: Optional[str] = Field(default=None, max_length=MAX_NAME_LENGTH)


class DiffChange(BaseModel):
    path: str = Field(max_length=MAX_ANSWER_PATH)  # directories end in '/' as restic prints them
    change: str = Field(pattern=r"^(added|removed|modified|type_changed|metadata|other)$")
    modifier: str = ""  # restic's own letters: + - M T U


class DiffResult(BaseModel):
    from_snapshot: str
    to_snapshot: str
    summary: Dict[str, Any] = {}  # restic's statistics: changed_files, added{}, removed{}
    changes: List[DiffChange]
    counts: Dict[str, int] = {}  # per change kind, over all changes (not only those returned)
    total_changes: int = 0
    truncated: bool = False


class RetentionSnapshot(BaseModel):
    action: str = Field(pattern=r"^(keep|remove)$")
    id: str = Field(max_length=64)
    short_id: str = Field(default="", max_length=64)
    time: Optional[datetime] = None
    hostname: Optional[str] = Field(default=None, max_length=MAX_LABEL)
    paths: List[Annotated[str, Field(max_length=MAX_ANSWER_PATH)]] = Field(default=[], max_length=1000)
    tags: List[Annotated[str, Field(max_length=MAX_LABEL)]] = Field(default=[], max_length=100)
    reasons: List[Annotated[str, Field(max_length=MAX_LABEL)]] = Field(default=[], max_length=50)


class RetentionPreviewBody(BaseModel):
    """POST .../retention-preview: the policy to try; none = the group's current one."""

    model_config = ConfigDict(extra="forbid")
    retention: Optional[Retention] = None


class RetentionPreview(BaseModel):
    source_group_id: str
    tag: str
    retention: Retention
    keep: List[RetentionSnapshot]
    remove: List[RetentionSnapshot]
    keep_count: int
    remove_count: int
