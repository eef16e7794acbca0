"""Bounds for what people type into request bodies: names that show as what they are,
integers restic can take, include paths that mean the same on every host."""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from rm_core.protocol import MAX_KBPS

# Control characters (NUL, CR/LF, ESC …), format characters (the bidi overrides U+202A-E
# and isolates U+2066-9, zero-width marks) and line separators: a name holding them shows
# as something else in the console (U+202E turns "gpj.exe" into "exe.jpg") or breaks it.
_UNSHOWABLE = {"Cc", "Cf", "Zl", "Zp", "Cs"}


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
