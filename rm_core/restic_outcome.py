"""What a finished restic run means: its exit code and error text read as a job's outcome,
and the operator's advice for each way it fails (what restic does: docs/restic.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rm_core.enums import JobState
from rm_core.urls import redact_url

__all__ = ['EXIT_OK', 'EXIT_FATAL', 'EXIT_PARTIAL', 'EXIT_REPO_MISSING', 'EXIT_LOCKED', 'EXIT_WRONG_PASSWORD', 'EXIT_INTERRUPTED', 'ERR_WRONG_PASSWORD', 'ERR_LOCKED', 'ERR_REPO_MISSING', 'ERR_ALREADY_INITIALISED', 'ERR_INTERRUPTED', 'ERR_FATAL', 'ERR_UNREACHABLE', 'UNREACHABLE_MESSAGE', 'ADVICE_INIT', 'ADVICE_REPO', 'ADVICE_ADMIN', 'NO_REPOSITORY', 'NO_PASSWORD', 'NO_ADMIN_CREDENTIALS', 'Outcome', 'classify_error_text', 'classify_exit']

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
            return redact_url(line.strip())[:300]
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
