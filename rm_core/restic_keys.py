"""`restic key list --json`: the keys of a repository, and which one a password opens.

0.14 prints 8-character key ids, 0.18 full ones; `key remove` takes either (a prefix), so ids
are compared by their first 8 characters."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from rm_core.restic import load_json_document

SHORT = 8


def parse_keys(stdout: str) -> List[Dict[str, Any]]:
    """[{id, current, userName, hostName, created}] (only entries with an id)."""
    doc = load_json_document(stdout)
    if not isinstance(doc, list):
        raise ValueError("restic key list --json did not print an array")
    return [k for k in doc if isinstance(k, dict) and isinstance(k.get("id"), str) and k["id"]]


def same_key(a: str, b: str) -> bool:
    return a[:SHORT] == b[:SHORT]


def current_key(keys: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The key the password used for the listing opened."""
    return next((k for k in keys if k.get("current")), None)


def has_key(keys: List[Dict[str, Any]], key_id: str) -> bool:
    return any(same_key(k["id"], key_id) for k in keys)
