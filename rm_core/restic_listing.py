"""Reading what restic prints about a snapshot's contents: `ls --json`, `diff --json` and
`forget --dry-run --json` (pure: no process is run here).

Measured on restic 0.14.0 and 0.18.0:
* `ls --json SNAP DIR` (no --recursive) prints the snapshot first, then the node of DIR
  itself (none for '/'), then DIR's direct children in name order. A DIR missing from the
  snapshot prints only the snapshot line, exit 0; an unknown snapshot id exits 0 on 0.14
  ("Ignoring ...: no matching ID found") and 1 on 0.18 (`exit_error` JSON on stderr).
  0.18 adds `message_type` and `inode` to each line; 0.14 has only `struct_type`.
* `diff --json A B` prints `{"message_type":"change","path","modifier"}` lines and one
  `statistics` line; both versions alike, except that 0.14 echoes the ids as given
  (short when given short) in `source_snapshot`/`target_snapshot`. Directory paths end
  in '/'. Modifiers: + added, - removed, M content, T type, U metadata (only with
  --metadata), combinations such as "TM" possible.
* `forget --dry-run --json`: groups with `keep`, `remove`, `reasons`; 0.14's reasons name
  their snapshot without `id`, so they are matched by time and tree.
"""

from __future__ import annotations

import posixpath
import stat
from typing import Any, Dict, List, Optional, Tuple

from rm_core.restic import parse_json_line

# Go's os.FileMode bits as restic stores them
_GO_DIR = 1 << 31
_GO_SYMLINK = 1 << 27
_GO_DEVICE = 1 << 26
_GO_PIPE = 1 << 25
_GO_SOCKET = 1 << 24
_GO_SETUID = 1 << 23
_GO_SETGID = 1 << 22
_GO_CHARDEV = 1 << 21
_GO_STICKY = 1 << 20

_TYPES = {"file": "file", "dir": "dir", "symlink": "symlink"}


def unix_mode(go_mode: int) -> int:
    """Go's os.FileMode (as restic prints `mode`) -> st_mode as stat(2) gives it."""
    mode = go_mode & 0o777
    if go_mode & _GO_SETUID:
        mode |= stat.S_ISUID
    if go_mode & _GO_SETGID:
        mode |= stat.S_ISGID
    if go_mode & _GO_STICKY:
        mode |= stat.S_ISVTX
    if go_mode & _GO_DIR:
        return mode | stat.S_IFDIR
    if go_mode & _GO_SYMLINK:
        return mode | stat.S_IFLNK
    if go_mode & _GO_PIPE:
        return mode | stat.S_IFIFO
    if go_mode & _GO_SOCKET:
        return mode | stat.S_IFSOCK
    if go_mode & _GO_DEVICE:
        return mode | (stat.S_IFCHR if go_mode & _GO_CHARDEV else stat.S_IFBLK)
    return mode | stat.S_IFREG


def ls_kind(msg: Dict[str, Any]) -> Optional[str]:
    """'snapshot' | 'node' | None for one parsed line of `ls --json` (0.14 and 0.18)."""
    kind = msg.get("message_type") or msg.get("struct_type")
    return kind if kind in ("snapshot", "node") else None


def ls_entry(node: Dict[str, Any]) -> Dict[str, Any]:
    """A node of `ls --json` as an API entry {name, type, size, mtime, mode}."""
    kind = _TYPES.get(str(node.get("type")), "other")
    try:
        mode = unix_mode(int(node.get("mode") or 0))
    except (TypeError, ValueError):
        mode = 0
    return {
        "name": str(node.get("name", "")),
        "type": kind,
        "size": int(node.get("size") or 0) if kind == "file" else 0,
        "mtime": node.get("mtime"),
        "mode": mode,
    }


def parent_dir(path: str) -> str:
    parent = posixpath.dirname(path.rstrip("/")) or "/"
    return parent


_CHANGES = (("+", "added"), ("-", "removed"), ("T", "type_changed"), ("M", "modified"), ("U", "metadata"))


def diff_change(msg: Dict[str, Any]) -> Optional[Dict[str, str]]:
    """A `change` line of `diff --json` as {path, change, modifier}; None for other lines."""
    if msg.get("message_type") != "change":
        return None
    modifier = str(msg.get("modifier") or "")
    change = next((name for letter, name in _CHANGES if letter in modifier), "other")
    return {"path": str(msg.get("path", "")), "change": change, "modifier": modifier}


def diff_statistics(msg: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    if msg.get("message_type") != "statistics":
        return None
    return {k: v for k, v in msg.items() if k != "message_type"}


def _snapshot_brief(snap: Dict[str, Any], action: str, reasons: List[str]) -> Dict[str, Any]:
    sid = str(snap.get("id") or "")
    return {
        "action": action, "id": sid, "short_id": snap.get("short_id") or sid[:8], "time": snap.get("time"),
        "hostname": snap.get("hostname"), "paths": snap.get("paths") or [], "tags": snap.get("tags") or [],
        "reasons": reasons,
    }


def _reason_key(snap: Dict[str, Any]) -> Tuple[Any, Any]:
    return snap.get("time"), snap.get("tree")


def forget_preview(doc: Any) -> List[Dict[str, Any]]:
    """`forget --dry-run --json` -> [{action: keep|remove, id, short_id, time, ..., reasons}]."""
    out: List[Dict[str, Any]] = []
    for group in doc or []:
        if not isinstance(group, dict):
            continue
        reasons: Dict[Tuple[Any, Any], List[str]] = {}
        for r in group.get("reasons") or []:
            if isinstance(r, dict) and isinstance(r.get("snapshot"), dict):
                reasons[_reason_key(r["snapshot"])] = [str(m) for m in r.get("matches") or []]
        for action in ("keep", "remove"):
            for snap in group.get(action) or []:
                if isinstance(snap, dict) and snap.get("id"):
                    out.append(_snapshot_brief(snap, action, reasons.get(_reason_key(snap), [])))
    return out


def no_matching_id(text: str) -> bool:
    """restic's words for a snapshot id that matches nothing: "no matching ID found" for a
    prefix (0.14 text, 0.18 JSON alike); for a full 64-hex id 0.18 tries to open the file
    and says "failed to load snapshot …: no such file or directory" (local) or "… does not
    exist" (REST)."""
    low = text.lower()
    if "no matching id found" in low:
        return True
    return "failed to load snapshot" in low and any(
        w in low for w in ("no such file", "does not exist", "not found", "404"))


__all__ = ["diff_change", "diff_statistics", "forget_preview", "ls_entry", "ls_kind", "no_matching_id",
           "parent_dir", "parse_json_line", "unix_mode"]
