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


# ---------------------------------------------------------------- exit codes

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_PARTIAL = 3
EXIT_REPO_MISSING = 10
EXIT_LOCKED = 11
EXIT_WRONG_PASSWORD = 12
EXIT_INTERRUPTED = 130

ERR_WRONG_PASSWORD = "wrong_password"
ERR_LOCKED = "repo_locked"
ERR_REPO_MISSING = "repo_missing"
ERR_ALREADY_INITIALISED = "already_initialised"
ERR_INTERRUPTED = "interrupted"
ERR_FATAL = "restic_failed"
ERR_UNREACHABLE = "repo_unreachable"
# How a job's error starts when restic could not reach the repository (the server raises
# repo.unreachable on it).
UNREACHABLE_MESSAGE = "repository server unreachable"

# restic says "Is there a repository at the following location?" after any failure to
# read the config file, a refused connection included: these name the network instead,
# and are looked for first so an unreachable server is never reported as "run init".
_NETWORK_ERRORS = (
    "connection refused", "no such host", "network is unreachable", "no route to host",
    "i/o timeout", "context deadline exceeded", "connection reset by peer", "tls: ", "x509: ",
    "server misbehaving", "dial tcp",
)

_TEXT_ERRORS = (
    ("wrong password or no key found", ERR_WRONG_PASSWORD),
    ("repository is already locked", ERR_LOCKED),
    ("unable to create lock", ERR_LOCKED),
    ("unable to open config file", ERR_REPO_MISSING),
    ("is there a repository at the following location", ERR_REPO_MISSING),
    ("config file already exists", ERR_ALREADY_INITIALISED),
)

# What an operator does about a missing setup, said the way they work: the console key on
# the host screen first, the REST call after ({id} is the host's id).
ADVICE_INIT = 'press i on the host in the console to initialise it (or POST /api/v1/hosts/{id}/jobs {"kind": "init"})'
ADVICE_REPO = "press p on the host in the console (or PUT /api/v1/hosts/{id}/repo)"
ADVICE_ADMIN = "press a on the host in the console (or PUT /api/v1/hosts/{id}/repo/admin-credentials)"
NO_REPOSITORY = f"no repository configured for this host: {ADVICE_REPO}"
NO_PASSWORD = f"the repository has no password: {ADVICE_REPO}"
NO_ADMIN_CREDENTIALS = f"prune needs the admin credentials: {ADVICE_ADMIN}"

_MESSAGES = {
    ERR_WRONG_PASSWORD: "wrong repository password (restic: wrong password or no key found)",
    ERR_LOCKED: "repository is locked by another restic process; run unlock if it is stale",
    ERR_REPO_MISSING: f"no restic repository at the configured location: {ADVICE_INIT}; a wrong location is "
                      "corrected with p (PUT /api/v1/hosts/{id}/repo), which runs init by itself",
    ERR_INTERRUPTED: "restic was interrupted",
    ERR_ALREADY_INITIALISED: "repository already initialised",
}


@dataclass
class Outcome:
    """What a finished restic run means for the job."""

    state: JobState
    error_code: str | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def classify_error_text(stderr: str) -> str | None:
    low = stderr.lower()
    if any(needle in low for needle in _NETWORK_ERRORS):
        return ERR_UNREACHABLE
    for needle, code in _TEXT_ERRORS:
        if needle in low:
            return code
    return None


_STACK_LINE = re.compile(r"^(\t|\s*[\w./-]+\.go:\d+$|[\w./*()-]+\.[\w()*]+(\.func\d+)*$)")


def _network_line(stderr: str) -> str | None:
    for line in stderr.splitlines():
        low = line.lower()
        if any(needle in low for needle in _NETWORK_ERRORS):
            return redact(line.strip())[:300]
    return None


def _last_fatal_line(stderr: str) -> str | None:
    # restic 0.14 follows some errors with a Go stack trace: skip its lines
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not _STACK_LINE.match(ln)]
    for ln in reversed(lines):
        if ln.lower().startswith("fatal:"):
            return ln
    return lines[-1] if lines else None


def classify_exit(exit_code: int | None, stderr: str = "", *, cancelled: bool = False) -> Outcome:
    """Map restic's exit code (and, for 0.14, its stderr text) to a job outcome."""
    if cancelled:
        return Outcome(JobState.cancelled, ERR_INTERRUPTED, "cancelled by request")
    if exit_code == EXIT_OK:
        return Outcome(JobState.succeeded)
    if exit_code == EXIT_PARTIAL:
        return Outcome(
            JobState.warning,
            "partial_backup",
            "some source files could not be read; the snapshot was written without them",
        )
    if classify_error_text(stderr) == ERR_UNREACHABLE:
        detail = _network_line(stderr)
        return Outcome(JobState.failed, ERR_UNREACHABLE, UNREACHABLE_MESSAGE + (f": {detail}" if detail else ""))
    code = {
        EXIT_REPO_MISSING: ERR_REPO_MISSING,
        EXIT_LOCKED: ERR_LOCKED,
        EXIT_WRONG_PASSWORD: ERR_WRONG_PASSWORD,
        EXIT_INTERRUPTED: ERR_INTERRUPTED,
    }.get(exit_code if exit_code is not None else -1)
    if code is None:
        code = classify_error_text(stderr) or ERR_FATAL
    message = _MESSAGES.get(code) or _last_fatal_line(stderr) or f"restic exited with {exit_code}"
    return Outcome(JobState.failed, code, message)
