"""Bounds on every value that comes from outside: what agents send (integers SQLite takes,
timestamps datetime takes, cut log lines, shown text) and what people type into request
bodies (names that show as what they are, integers restic can take, include paths that
mean the same on every host)."""

from __future__ import annotations

import functools
import sys
import unicodedata
from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import AfterValidator, Field, GetJsonSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

# Control characters (NUL, CR/LF, ESC …), format characters (the bidi overrides U+202A-E
# and isolates U+2066-9, zero-width marks) and line separators: a name holding them shows
# as something else in the console (U+202E turns "gpj.exe" into "exe.jpg") or breaks it.
_UNSHOWABLE = {"Cc", "Cf", "Zl", "Zp", "Cs"}


class States:
    """Writes a rule that a validator of the same annotation enforces into the JSON schema too,
    so the OpenAPI document (rm_server/openapi.py) states every rule the server keeps. The
    validator stays the one that decides (its message names the problem); schemathesis, run
    against the document in the tests, finds any gap between the two."""

    def __init__(self, **keywords: Any) -> None:
        self.keywords = keywords  # a value may be a function, called when a schema is made

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> dict[str, Any]:
        out = handler(schema)
        out.update({k: v() if callable(v) else v for k, v in self.keywords.items()})
        return out


# Every character str.isspace() (and so str.strip() and the regex \\s of Python) takes for
# whitespace, as escapes for a regex character class: none lies above U+3000.
SPACE_CLASS = "".join(f"\\u{c:04x}" for c in range(0x3001) if chr(c).isspace())


class Named(States):
    """States a schema that several fields share under one name: rm_server/openapi.py moves it
    to components/schemas/NAME and puts a $ref in each field (a 600-name enum once, not in
    every body that takes a time zone). Elsewhere it is an extension keyword validators skip."""

    def __init__(self, name: str, schema: Any, description: str = "") -> None:
        super().__init__(**{NAMED_KEY: lambda: {"name": name, "description": description,
                                                "schema": schema() if callable(schema) else schema}})


NAMED_KEY = "x-rm-named"


@functools.cache
def showable_pattern() -> str:
    """The JSON-schema statement of _showable below (the tests check they agree on every
    character). Made on first use: walking all of Unicode takes half a second, which an agent
    or a CLI start should not pay."""
    return f"^[^{_unshowable_class()}]*$"


@functools.cache
def _unshowable_class() -> str:
    """A regex character class of every character a name may not hold (surrogates aside: JSON
    text cannot carry a lone one). Characters above U+FFFF are written as themselves, which
    Python's re and ECMA-262 in unicode mode both read as one character."""
    ranges: list[tuple[int, int]] = []
    for code in range(sys.maxunicode + 1):
        if 0xD800 <= code <= 0xDFFF or unicodedata.category(chr(code)) not in _UNSHOWABLE:
            continue
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))

    def one(code: int) -> str:
        return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)

    return "".join(one(a) if a == b else f"{one(a)}-{one(b)}" for a, b in ranges)


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


Name = Annotated[str, AfterValidator(_showable),
                 States(pattern=showable_pattern, description="no control, format or bidi characters")]
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
@functools.cache
def plain_text_pattern() -> str:
    """_plain_text's rule for the API document: no unshowable character, not blank."""
    bad = _unshowable_class()
    return f"^[^{bad}]*[^{bad}{SPACE_CLASS}][^{bad}]*$"


@functools.cache
def absolute_path_pattern() -> str:
    """_plain_text's and _absolute's rule together (a leading / is not blank)."""
    return f"^/[^{_unshowable_class()}]*$"


_PLAIN = States(pattern=plain_text_pattern, description="no control or bidi characters, not blank")
_ABSOLUTE = States(pattern=absolute_path_pattern, description="absolute; no control or bidi characters")
PathPattern = Annotated[str, Field(max_length=MAX_PATH), AfterValidator(_plain_text), _PLAIN]
AbsolutePath = Annotated[str, Field(max_length=MAX_PATH), AfterValidator(_plain_text), AfterValidator(_absolute),
                         _ABSOLUTE]
IncludeList = Annotated[list[AbsolutePath], Field(max_length=MAX_PATHS)]
PathList = Annotated[list[PathPattern], Field(max_length=MAX_PATHS)]
# A repository URL (restic's -r): any scheme restic knows, nothing it or a shell could misread.
RepoUrl = Annotated[str, Field(min_length=1, max_length=MAX_URL), AfterValidator(_plain_text), _PLAIN]


def repository_url_problem(url: str) -> str | None:
    """Why a stored URL cannot be given to restic (the agent's check before it runs one: a
    URL stored before the server refused them may still reach it), or None."""
    ch = first_unshowable(url)
    if ch is not None:
        return f"the repository URL holds control or bidi character U+{ord(ch):04X}"
    if not url.strip():
        return "the repository URL is blank"
    return None
