"""What the packaged systemd unit's sandbox hides from a job, said before restic runs.

The unit (rm_server/install/rm-agent.service) makes the whole disk read-only but its
ReadWritePaths (ProtectSystem=strict, ProtectHome=read-only) and gives the agent a private,
empty /tmp and /var/tmp (PrivateTmp=yes). A local repository outside ReadWritePaths then
fails with restic's "read-only file system", a source under /tmp is "not found" although
it is there, and a restore into /tmp lands in a directory nobody else sees and systemd
deletes. Each job checks the paths it will use and fails with the unit setting to change.

Decided: the agent does not widen its own sandbox (no drop-in derived from the repository).
The repository URL is set on the server by any operator; if it decided where root may write
on a host, a stolen operator session could aim those writes anywhere the sandbox protects.
Widening stays a step taken on the host, by its admin, with the exact lines to add."""

from __future__ import annotations

import os
import re
from typing import Any, List, Optional, Tuple

from rm_core.enums import JobKind

MOUNTINFO = "/proc/self/mountinfo"
TMP_DIRS = ("/tmp", "/var/tmp")
_OCTAL = re.compile(r"\\([0-7]{3})")
_RESTART = "then: systemctl restart rm-agent"


def _unescape(field: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def _mounts() -> List[Tuple[str, str]]:
    """(mount point, root within its file system) of each mount this process sees."""
    try:
        with open(MOUNTINFO, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 5:
            out.append((_unescape(fields[4]), _unescape(fields[3])))
    return out


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _existing(path: str) -> str:
    """The path itself, or its nearest ancestor that exists (what init or restore writes into)."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return os.path.realpath(path)


def private_tmp(path: str) -> Optional[str]:
    """The private /tmp or /var/tmp `path` lies in (systemd mounted its own there), else None."""
    path = os.path.abspath(path)
    for mount_point, root in _mounts():
        if mount_point in TMP_DIRS and "/systemd-private-" in root and _under(path, mount_point):
            return mount_point
    return None


def read_only(path: str) -> bool:
    try:
        return bool(os.statvfs(_existing(path)).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def local_repository(url: str) -> Optional[str]:
    """The directory of a local repository URL ("/srv/restic", "local:/srv/restic"), else None."""
    path = url[len("local:"):] if url.startswith("local:") else url
    return path if path.startswith("/") else None


def _private_tmp_message(what: str, path: str, tmp: str, instead: str) -> str:
    return (f"{what} {path} is under {tmp}, which rm-agent's systemd unit replaces with a private, empty "
            f"{tmp} (PrivateTmp=yes): {instead}, or turn that off with `systemctl edit rm-agent`, adding under "
            f"[Service]: PrivateTmp=no — {_RESTART}")


def _read_only_message(what: str, path: str) -> str:
    # systemd refuses to start a unit whose ReadWritePaths= names a missing path: create it first.
    create = "" if os.path.exists(path) else f"mkdir -p {path}, then "
    return (f"{what} {path} is on a file system that is read-only for rm-agent: its systemd unit lets it write "
            f"only to its ReadWritePaths (ProtectSystem=strict, ProtectHome=read-only). Allow it: {create}"
            f"`systemctl edit rm-agent`, adding under [Service]: ReadWritePaths={path} — {_RESTART}")


def writable_problem(what: str, path: str) -> Optional[str]:
    """Why the agent could not write at `path` (or create it), in the unit's terms; None if it can."""
    tmp = private_tmp(path)
    if tmp:
        return _private_tmp_message(what, path, tmp, "choose a directory outside /tmp and /var/tmp")
    if read_only(path):
        return _read_only_message(what, path)
    return None


def job_problem(kind: JobKind, params: Any, repository_url: str) -> Optional[str]:
    """What in this job the unit's sandbox would break, checked before restic runs."""
    repo = local_repository(repository_url)
    if repo:
        problem = writable_problem("the repository", repo)  # every restic run but --no-lock ones writes a lock
        if problem and kind not in (JobKind.snapshots, JobKind.stats):
            return problem
    if kind == JobKind.restore and isinstance(params.get("target"), str):
        problem = writable_problem("the restore target", params["target"])
        if problem:
            return problem
    if kind == JobKind.backup:
        for path in (params.get("source_group") or {}).get("includes") or []:
            tmp = private_tmp(path)
            if tmp:
                return _private_tmp_message("the source path", path, tmp, "move the data elsewhere")
    return None
