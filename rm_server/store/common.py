"""Helpers every store module shares: time/JSON columns, the audit row, errors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, overload

from rm_server.store.db import Conn, one



class NotFound(LookupError):
    def __init__(self, what: str, ident: str) -> None:
        super().__init__(f"{what} {ident!r} not found")
        self.what = what
        self.ident = ident


class Conflict(Exception):
    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


@dataclass(frozen=True)
class Actor:
    """Who did something: an operator, the scheduler, the server itself or an agent."""

    kind: str
    id: str | None = None
    name: str | None = None


SYSTEM = Actor("system", None, "system")




@overload
def iso(dt: datetime) -> str: ...


@overload
def iso(dt: None) -> None: ...


@overload
def iso(dt: datetime | None) -> str | None: ...


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is not None:
        # The common case (every log line) is already UTC; pydantic's tzinfo makes each
        # utcoffset() call costly, so let isoformat ask once and read the suffix.
        text = dt.isoformat(timespec="microseconds")
        if text.endswith("+00:00"):
            return text
    else:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).isoformat(timespec="microseconds")


def dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def loads(value: str | None, default: Any = None) -> Any:
    return default if value is None else json.loads(value)


_AUDIT_INSERT = ("INSERT INTO audit (ts, actor_kind, actor_id, actor_name, action, target, details)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id")


def audit_row_sync(conn: Conn, now: datetime, actor: Actor, action: str, target: str | None,
                   details: dict[str, Any] | None = None) -> dict[str, Any]:
    """Append an audit row inside the caller's transaction (run on the writer's thread);
    returns the entry announced after commit. Never pass secrets in details."""
    details = details or {}
    (row_id,) = one(conn.execute(_AUDIT_INSERT, (iso(now), actor.kind, actor.id, actor.name, action, target,
                                                 dumps(details))).fetchone())
    return {"id": row_id, "ts": iso(now), "actor_kind": actor.kind, "actor_id": actor.id,
            "actor_name": actor.name, "action": action, "target": target, "details": details}


class Invalid(ValueError):
    """A request names something that breaks a rule the database knows (400, names the field)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
