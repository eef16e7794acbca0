"""Restores and restore drills, the parts both sides agree on (pure, Python 3.9-compatible):
restic's include patterns, the restore job's params, a drill's params, sample and report.

Measured on restic 0.14.0 and 0.18.0: `restore SNAP --target T --include P` restores P (a
file, or a directory with everything below it) to T + P; an include is a pattern, so `*`,
`?`, `[` and `\\` in a real path are escaped with a backslash; `--verify` re-reads what was
written and compares it with the snapshot ("finished verifying N files")."""

from __future__ import annotations

import heapq
import random
import re
from datetime import datetime
from typing import Any, Dict, List, Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rm_core.protocol import RepoCredentials, SourceGroupSpec
from rm_core.restic import parse_json_line

_PATTERN_CHARS = re.compile(r"([*?\[\]\\])")


def include_pattern(path: str) -> str:
    """A literal path as a restic include pattern."""
    return _PATTERN_CHARS.sub(r"\\\1", path)


def check_restore_path(path: str) -> str:
    if not path.startswith("/") or "\0" in path or "\n" in path:
        raise ValueError(f"restore paths must be absolute, without NUL or newline: {path!r}")
    return path


class RestoreParams(BaseModel):
    """`command.run` params of a restore. `repo` is set only for a cross-host restore: the
    source host's credentials, for this one job, resolved by the server at dispatch time."""

    model_config = ConfigDict(extra="ignore")
    snapshot_id: str = Field(pattern=r"^[0-9a-f]{8,64}$|^latest$")
    paths: List[str] = []
    target: str
    verify: bool = False
    from_host_id: Optional[str] = None
    repo: Optional[RepoCredentials] = None

    @field_validator("repo", mode="before")
    @classmethod
    def _repo(cls, v: Any) -> Any:
        # `repo: "copy"` names the host's copy repository (the runner picked its credentials):
        # only another host's credentials come as an object
        return None if isinstance(v, str) else v

    @field_validator("paths")
    @classmethod
    def _paths(cls, v: List[str]) -> List[str]:
        return [check_restore_path(p) for p in v]

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        if not v.startswith("/") or "\0" in v:
            raise ValueError(f"target must be an absolute directory, got {v!r}")
        return v


def restore_args(params: RestoreParams) -> List[str]:
    args = ["restore", params.snapshot_id, "--target", params.target]
    for path in params.paths:
        args += ["--include", include_pattern(path)]
    if params.verify:
        args.append("--verify")
    return args


# ---------------------------------------------------------------- drills

DEFAULT_SAMPLE_FILES = 20
DEFAULT_SAMPLE_MB = 64


class DrillParams(BaseModel):
    """`command.run` params of a drill."""

    model_config = ConfigDict(extra="ignore")
    source_group: SourceGroupSpec
    sample_files: int = Field(default=DEFAULT_SAMPLE_FILES, ge=1)
    sample_mb: int = Field(default=DEFAULT_SAMPLE_MB, ge=1)
    seed: Optional[int] = None  # tests pin the sample


class SampleFile(BaseModel):
    path: str
    size: int
    mtime: Optional[str] = None  # as restic printed it (nanoseconds kept)


# A file node of `ls --json`, as Go's encoder writes it on 0.14 and 0.18. Inside a JSON string
# Go escapes every '"', so this byte sequence can only be the node's own type field: lines
# without it are skipped unparsed.
_FILE_MARK = '"type":"file"'
# The greedy byte-budget pass looks at this many times `max_files` candidates: enough that
# a few files too big for what is left of the budget do not shrink the sample, and still a
# handful of entries, not the whole snapshot.
_CANDIDATES_PER_FILE = 4


class SampleReservoir:
    """Draws a drill's random sample while `restic ls --json` streams by, one line at a time,
    without holding the listing: every file line gets a random key and only the lines with
    the smallest keys so far are parsed and kept (bottom-k sampling, a uniform random subset;
    at 100,000 files a few hundred lines are parsed). `sample()` then takes the candidates in
    key order while they fit: at most `max_files` files and `max_bytes` bytes; files larger
    than the whole byte budget are passed over (one huge file would make every drill the same)."""

    def __init__(self, max_files: int, max_bytes: int, rng: Optional[random.Random] = None) -> None:
        self.max_files, self.max_bytes = max_files, max_bytes
        self.rng = rng or random.Random()  # seeded from os.urandom; a sample need not be secret
        self.capacity = max_files * _CANDIDATES_PER_FILE
        self.files = 0  # file nodes seen
        self.snapshot: Optional[Dict[str, Any]] = None  # the snapshot line restic prints first
        self._heap: List[Tuple[float, int, SampleFile]] = []  # (-key, seq, file): the largest key on top

    def feed(self, line: str) -> None:
        if _FILE_MARK not in line:
            if self.snapshot is None and line.startswith("{"):
                msg = parse_json_line(line)
                if msg is not None and (msg.get("message_type") or msg.get("struct_type")) == "snapshot":
                    self.snapshot = msg
            return
        self.files += 1
        key = self.rng.random()
        if len(self._heap) >= self.capacity and -key <= self._heap[0][0]:
            return  # cheaper than every candidate kept: not parsed
        node = parse_json_line(line)
        if node is None or node.get("type") != "file" or not node.get("path"):
            return
        size = int(node.get("size") or 0)
        if size > self.max_bytes:
            return
        entry = (-key, self.files, SampleFile(path=str(node["path"]), size=size, mtime=node.get("mtime")))
        if len(self._heap) < self.capacity:
            heapq.heappush(self._heap, entry)
        else:
            heapq.heapreplace(self._heap, entry)

    def sample(self) -> List[SampleFile]:
        chosen: List[SampleFile] = []
        total = 0
        for _, _, f in sorted(self._heap, key=lambda e: -e[0]):
            if len(chosen) >= self.max_files:
                break
            if total + f.size > self.max_bytes:
                continue
            chosen.append(f)
            total += f.size
        return sorted(chosen, key=lambda f: f.path)


def mtime_ns(text: Optional[str]) -> Optional[int]:
    """restic's RFC 3339 time with up to nanoseconds -> ns since the epoch (None if unreadable)."""
    if not text:
        return None
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$", text)
    if not m:
        return None
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    whole = datetime.fromisoformat(m.group(1) + tz)
    frac = (m.group(2) or "").ljust(9, "0")
    return int(whole.timestamp()) * 1_000_000_000 + int(frac)


class DrillReport(BaseModel):
    """What a drill found; the job's summary."""

    snapshot_id: str
    files: int = 0  # restored and checked by restic --verify
    bytes: int = 0
    compared: int = 0  # also compared by SHA-256 with the live file (unchanged since the snapshot)
    skipped_changed: int = 0  # live file changed or gone since the snapshot: not compared
    mismatches: int = 0
    mismatched_paths: List[str] = []
    duration: float = 0.0
    # seconds per phase, measured by the agent as the drill ran: "sample" (restic ls + drawing),
    # "restore" (restic restore --verify, start to exit), "compare" (SHA-256), "cleanup" (temp dir)
    phases: Dict[str, float] = {}
    damage: Optional[str] = None  # what restic said when the repository could not give the data back
