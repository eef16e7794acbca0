"""Pure restic helpers shared by agent and server (what restic does: docs/restic.md).

Nothing here runs a process: argument building, redaction, output parsing and exit-code
classification, so both sides agree on what restic said.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import quote

from rm_core.enums import JobState
from rm_core.protocol import Retention
from rm_core.urls import REDACTED, redact_url

# ---------------------------------------------------------------- versions


def parse_version(text: str) -> tuple[int, int, int] | None:
    """`restic 0.14.0 compiled with go1.19.8 on linux/amd64` -> (0, 14, 0); None if unknown."""
    m = re.search(r"restic\s+v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


# ---------------------------------------------------------------- retention


class EmptyRetentionPolicy(ValueError):
    """`restic forget` without any --keep-* would remove every snapshot."""


_KEEP_FLAGS = (
    ("keep_last", "--keep-last"),
    ("keep_hourly", "--keep-hourly"),
    ("keep_daily", "--keep-daily"),
    ("keep_weekly", "--keep-weekly"),
    ("keep_monthly", "--keep-monthly"),
    ("keep_yearly", "--keep-yearly"),
    ("keep_within", "--keep-within"),
)


def retention_args(retention: Retention | dict[str, Any] | None) -> list[str]:
    """Turn a retention policy into `--keep-*` arguments; refuse an empty policy."""
    if retention is None:
        retention = Retention()
    elif isinstance(retention, dict):
        retention = Retention.model_validate(retention)
    if retention.is_empty():
        raise EmptyRetentionPolicy(
            "retention policy is empty: restic forget would remove every snapshot; "
            "set at least one keep_* value on the source group"
        )
    args: list[str] = []
    for attr, flag in _KEEP_FLAGS:
        value = getattr(retention, attr)
        if value in (None, 0, ""):
            continue
        args += [flag, str(value)]
    return args


def forget_args(tag: str, retention: Retention | dict[str, Any] | None) -> list[str]:
    """`forget --json --tag T --keep-*` for one source group (never with --prune)."""
    if not tag:
        raise ValueError("source group has no tag: forget would touch every snapshot")
    return ["forget", "--json", "--tag", tag, *retention_args(retention)]


# ---------------------------------------------------------------- redaction (URLs: rm_core.urls)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Hide `user:pass@` in URLs and every known secret value in a line."""
    text = redact_url(text)
    for secret in sorted((s for s in secrets if s and len(s) >= 3), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
        quoted = quote(secret, safe="")
        if quoted != secret:
            text = text.replace(quoted, REDACTED)
    return text


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


def strip_ansi(text: str) -> str:
    """restic decorates terminal output with escape codes (e.g. "\\x1b[2K"); drop them."""
    return _ANSI.sub("", text)


# ---------------------------------------------------------------- JSON output


def parse_json_line(line: str) -> dict[str, Any] | None:
    """A line of `--json` output as a dict, or None when it is not a JSON object."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@dataclass
class Progress:
    percent: float | None = None
    bytes_done: int | None = None
    bytes_total: int | None = None
    files_done: int | None = None
    files_total: int | None = None
    eta_seconds: float | None = None


def progress_from_status(msg: dict[str, Any]) -> Progress | None:
    """A `backup --json` status message as progress (fields are sparse on purpose)."""
    if msg.get("message_type") != "status":
        return None
    pct = msg.get("percent_done")
    return Progress(
        percent=None if pct is None else max(0.0, min(100.0, float(pct) * 100.0)),
        bytes_done=msg.get("bytes_done"),
        bytes_total=msg.get("total_bytes"),
        files_done=msg.get("files_done"),
        files_total=msg.get("total_files"),
        eta_seconds=msg.get("seconds_remaining"),
    )


BACKUP_SUMMARY_FIELDS = (
    "files_new",
    "files_changed",
    "files_unmodified",
    "dirs_new",
    "dirs_changed",
    "dirs_unmodified",
    "data_blobs",
    "tree_blobs",
    "data_added",
    "total_files_processed",
    "total_bytes_processed",
    "total_duration",
    "snapshot_id",
)


def backup_summary(msg: dict[str, Any]) -> dict[str, Any] | None:
    """The summary of `backup --json`, limited to the documented fields."""
    if msg.get("message_type") != "summary":
        return None
    return {k: msg[k] for k in BACKUP_SUMMARY_FIELDS if k in msg}


def error_message(msg: dict[str, Any]) -> str | None:
    """restic's `{"message_type":"error"|"exit_error"}` as text, or None for other messages.

    restic 0.14 serialises Go's error value itself: `{}` or `{"Op":"open","Path":…,"Err":13}`
    (an errno); newer versions send `{"message": "…"}`."""
    kind = msg.get("message_type")
    if kind == "exit_error":
        return str(msg.get("message") or f"restic exited with {msg.get('code')}")
    if kind != "error":
        return None
    err = msg.get("error")
    text = ""
    if isinstance(err, dict):
        text = str(err.get("message") or "")
        if not text and err.get("Op"):
            errno = err.get("Err")
            reason = os.strerror(errno).lower() if isinstance(errno, int) else "failed"
            text = f"{err['Op']} {err.get('Path') or ''}: {reason}".replace(" :", ":")
    elif err:
        text = str(err)
    item = msg.get("item")
    text = text or str(msg.get("message") or "") or "could not be read"
    if item and str(item) not in text:
        text = f"{item}: {text}"
    if msg.get("during") == "scan":
        text += " (while scanning)"
    return text


def load_json_document(stdout: str) -> Any:
    """The JSON document restic printed with --json (None for no output); ValueError when none parses."""
    stdout = stdout.strip()
    if not stdout:
        return None
    try:
        return json.loads(stdout)
    except ValueError:
        # Some versions print a trailing status line; take the last line that parses.
        for line in reversed(stdout.splitlines()):
            try:
                return json.loads(line)
            except ValueError:
                continue
    raise ValueError("restic printed no JSON document")


def parse_snapshots(stdout: str) -> list[dict[str, Any]]:
    """`snapshots --json` -> list of snapshot dicts (id, short_id, time, hostname, paths, tags)."""
    doc = load_json_document(stdout)
    if doc is None:
        return []
    if not isinstance(doc, list):
        raise ValueError("restic snapshots --json did not print an array")
    out = []
    for snap in doc:
        if not isinstance(snap, dict) or "id" not in snap:
            continue
        out.append(
            {
                "id": snap["id"],
                "short_id": snap.get("short_id") or snap["id"][:8],
                "time": snap.get("time"),
                "hostname": snap.get("hostname"),
                "paths": snap.get("paths") or [],
                "tags": snap.get("tags") or [],
                "summary": snap.get("summary"),
                "original": snap.get("original"),
            }
        )
    return out


def parse_forget(stdout: str) -> dict[str, Any]:
    """`forget --json` -> {"keep": n, "remove": n, "removed_ids": [...]} over all groups."""
    doc = load_json_document(stdout)
    keep = remove = 0
    removed: list[str] = []
    for group in doc or []:
        if not isinstance(group, dict):
            continue
        keep += len(group.get("keep") or [])
        rm = group.get("remove") or []
        remove += len(rm)
        removed += [s.get("id", "") for s in rm if isinstance(s, dict)]
    return {"keep": keep, "remove": remove, "removed_ids": removed}


def parse_stats(stdout: str) -> dict[str, Any]:
    """`stats --json --mode raw-data` -> the dict (total_size, total_file_count, snapshots_count...)."""
    doc = load_json_document(stdout)
    if not isinstance(doc, dict):
        raise ValueError("restic stats --json did not print an object")
    return doc


def check_passed(text: str) -> bool:
    """`check` text output (JSON only from 0.18) said the repository is fine."""
    return "no errors were found" in text


def check_summary(stdout: str) -> dict[str, Any] | None:
    """`check --json` (restic >= 0.18): the summary message, or None when there is none."""
    for line in reversed(stdout.splitlines()):
        msg = parse_json_line(line)
        if msg is not None and msg.get("message_type") == "summary":
            return msg
    return None


CHECK_JSON_SINCE = (0, 18, 0)


def forget_removal_error(stderr: str) -> str | None:
    """restic 0.18 `forget` exits 0 when it could not delete snapshot files (e.g. an
    append-only REST server answers 403): the line that says so, else None."""
    for line in stderr.splitlines():
        if "unable to remove" in line.lower():
            return line.strip()
    return None


# What a restic run's exit means (rm_core/restic_outcome.py), read as `R.classify_exit` & co.
from rm_core.restic_outcome import *  # noqa: E402,F401,F403
