"""Restores and restore drills, the parts both sides agree on (pure, Python 3.9-compatible):
restic's include patterns, the restore job's params, a drill's params, sample and report.

Measured on restic 0.14.0 and 0.18.0: `restore SNAP --target T --include P` restores P (a
file, or a directory with everything below it) to T + P; an include is a pattern, so `*`,
`?`, `[` and `\\` in a real path are escaped with a backslash; `--verify` re-reads what was
written and compares it with the snapshot ("finished verifying N files")."""

from __future__ import annotations

import random
import re
from datetime import datetime
from typing import Any, Dict, Iterable, List, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rm_core.protocol import RepoCredentials, SourceGroupSpec

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


def file_nodes(nodes: Iterable[Dict[str, Any]]) -> List[SampleFile]:
    return [SampleFile(path=str(n["path"]), size=int(n.get("size") or 0), mtime=n.get("mtime"))
            for n in nodes if n.get("type") == "file" and n.get("path")]


def choose_sample(files: List[SampleFile], max_files: int, max_bytes: int,
                  rng: Optional[random.Random] = None) -> List[SampleFile]:
    """A random sample: at most `max_files` files and `max_bytes` bytes in all; files larger than
    the whole byte budget are passed over (one huge file would make every drill the same)."""
    rng = rng or random.SystemRandom()
    order = list(files)
    rng.shuffle(order)
    chosen: List[SampleFile] = []
    total = 0
    for f in order:
        if len(chosen) >= max_files:
            break
        if total + f.size > max_bytes:
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
    damage: Optional[str] = None  # what restic said when the repository could not give the data back
