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


# Paths and URLs people type become restic's arguments and environment on a host: a NUL
# there made every later job on the host fail ("embedded null byte"), a newline or bidi
# mark shows as another path in the console. The bounds keep one body from storing
# megabytes that every host list and job then carries.
MAX_PATH = 4096  # PATH_MAX on Linux
MAX_PATHS = 1000  # includes or excludes of one source group
MAX_URL = 2048


def first_unshowable(text: str) -> str | None:
    """The first control, bidi or other unshowable character of `text`, if any."""
    return next((ch for ch in text if unicodedata.category(ch) in _UNSHOWABLE), None)


def _plain_text(text: str) -> str:
    ch = first_unshowable(text)
    if ch is not None:
        raise PydanticCustomError("control_character", "control or bidi character U+{code} is not allowed",
                                  {"code": f"{ord(ch):04X}"})
    if not text.strip():
        raise PydanticCustomError("blank", "must not be blank")
    return text


def _absolute(path: str) -> str:
    if not path.startswith("/"):
        raise PydanticCustomError("not_absolute", "path '{path}' must be absolute (start with /)",
                                  {"path": path[:200]})
    return path


# An exclude may be a pattern ("*.tmp"); an include and a restore target are absolute paths.
PathPattern = Annotated[str, Field(max_length=MAX_PATH), AfterValidator(_plain_text)]
AbsolutePath = Annotated[str, Field(max_length=MAX_PATH), AfterValidator(_plain_text), AfterValidator(_absolute)]
IncludeList = Annotated[list[AbsolutePath], Field(max_length=MAX_PATHS)]
PathList = Annotated[list[PathPattern], Field(max_length=MAX_PATHS)]
# A repository URL (restic's -r): any scheme restic knows, nothing it or a shell could misread.
RepoUrl = Annotated[str, Field(min_length=1, max_length=MAX_URL), AfterValidator(_plain_text)]


def repository_url_problem(url: str) -> str | None:
    """Why a stored URL cannot be given to restic (the agent's check before it runs one: a
    URL stored before the server refused them may still reach it), or None."""
    ch = first_unshowable(url)
    if ch is not None:
        return f"the repository URL holds control or bidi character U+{ord(ch):04X}"
    if not url.strip():
        return "the repository URL is blank"
    return None
