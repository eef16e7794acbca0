"""Bounds on every value that comes from outside: what agents send (integers SQLite takes,
timestamps datetime takes, cut log lines, shown text) and what people type into request
bodies (names that show as what they are, integers restic can take, include paths that
mean the same on every host)."""

from __future__ import annotations

import unicodedata
from datetime import datetime, timezone
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

# Control characters (NUL, CR/LF, ESC …), format characters (the bidi overrides U+202A-E
# and isolates U+2066-9, zero-width marks) and line separators: a name holding them shows
# as something else in the console (U+202E turns "gpj.exe" into "exe.jpg") or breaks it.
_UNSHOWABLE = {"Cc", "Cf", "Zl", "Zp", "Cs"}


# ---------------------------------------------------------------- what agents send
# Every value an agent sends is bounded here, before it reaches the server's group-commit
# batches: one value SQLite or datetime cannot take (2**64, year 1 at +14:00) used to fail
# the whole batch, and with it other hosts' writes.

INT64_MAX = 2**63 - 1
Int64 = Annotated[int, Field(ge=-INT64_MAX - 1, le=INT64_MAX)]
Count = Annotated[int, Field(ge=0, le=INT64_MAX)]
# A log line longer than this is cut (the agent cuts first; the server enforces it):
# uncapped, 60 lines of 1 MiB grew the database 58 MB in seconds.
MAX_LOG_LINE = 8 * 1024
TRUNCATED = " …[truncated]"


def _in_range(value: datetime) -> datetime:
    try:
        utc = value.astimezone(timezone.utc) if value.tzinfo else value
    except OverflowError:
        raise ValueError("timestamp out of range") from None
    if not 1970 <= utc.year <= 9998:
        raise ValueError("timestamp must lie between 1970 and 9998")
    return value


def cut_log_line(text: str) -> str:
    if len(text) <= MAX_LOG_LINE:
        return text
    return text[: MAX_LOG_LINE - len(TRUNCATED)] + TRUNCATED


def _shown(text: str) -> str:
    # What an agent says about itself is shown in the console: control and bidi characters
    # become U+FFFD rather than refusing the hello of an agent with an odd uname.
    return "".join("\ufffd" if unicodedata.category(ch) in _UNSHOWABLE else ch for ch in text)


Timestamp = Annotated[datetime, AfterValidator(_in_range)]
Shown = Annotated[str, Field(max_length=256), AfterValidator(_shown)]
# Above these restic fails on every run (10**30 KiB/s overflows its option parsing); a
# million snapshots per bucket or 100 GiB/s is already far beyond any real policy.
MAX_KEEP = 1_000_000
MAX_KBPS = 100 * 1024 * 1024
LogText = Annotated[str, AfterValidator(cut_log_line)]


# ---------------------------------------------------------------- what people type


def _showable(text: str) -> str:
    for ch in text:
        if unicodedata.category(ch) in _UNSHOWABLE:
            raise PydanticCustomError("unshowable", "control or bidi character U+{code} is not allowed in a name",
                                      {"code": f"{ord(ch):04X}"})
    return text


def showable_name(text: str) -> str:
    """The same rule for a name that arrives outside a body (a path segment); ValueError."""
    try:
        return _showable(text)
    except PydanticCustomError as exc:
        raise ValueError(exc.message()) from None


Name = Annotated[str, AfterValidator(_showable)]
# restic takes larger values and then fails on every run (10**30 KiB/s, a year of timeout).
Kbps = Annotated[int, Field(ge=1, le=MAX_KBPS)]
MAX_TIMEOUT_SECONDS = 30 * 86400


def absolute_paths(paths: list[str]) -> list[str]:
    # restic resolves a relative include against the agent's working directory: it was
    # accepted here and failed on the host ("all target directories/files do not exist").
    for p in paths:
        if not p.startswith("/"):
            raise ValueError(f"include path {p!r} must be absolute (start with /)")
    return paths
