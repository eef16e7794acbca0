"""One-time enrollment tokens and the enrollment of a host with one."""

from __future__ import annotations

from datetime import datetime, timedelta

from rm_core.api import EnrollmentToken
from rm_core.ids import new_id
from rm_server.store.base import Table
from rm_server.store.common import Actor, NotFound, dt, dumps, iso, loads
from rm_server.store.db import Row

_COLS = "id, name, created_at, expires_at, max_uses, uses, initial_paths, repo_sealed IS NOT NULL AS has_repo"


class TokenRejected(Exception):
    """The enrollment token is unknown, expired or used up (one message for all: no oracle)."""


def _token(row: Row) -> EnrollmentToken:
    return EnrollmentToken(
        id=row["id"], name=row["name"], created_at=dt(row["created_at"]), expires_at=dt(row["expires_at"]),
        max_uses=row["max_uses"], uses=row["uses"], initial_paths=loads(row["initial_paths"], []),
        has_repo=bool(row["has_repo"]),
    )


class Enrollment(Table):
    async def create(
        self, actor: Actor, token_hash: str, *, name: str | None, ttl: timedelta, max_uses: int,
        initial_paths: list[str], repo_sealed: bytes | None,
    ) -> EnrollmentToken:
        tid = new_id()
        async with self.tx() as tx:
            await tx.execute(
                "INSERT INTO enrollment_tokens (id, name, token_hash, created_at, expires_at, max_uses,"
                " initial_paths, repo_sealed, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (tid, name, token_hash, iso(tx.now), iso(tx.now + ttl), max_uses, dumps(initial_paths),
                 repo_sealed, actor.id),
            )
            await tx.audit(actor, "enrollment_token.create", tid,
                           {"name": name, "max_uses": max_uses, "ttl_seconds": int(ttl.total_seconds()),
                            "with_repo": repo_sealed is not None})
        return await self.get(tid)

    async def get(self, token_id: str) -> EnrollmentToken:
        row = await self.db.fetchone(f"SELECT {_COLS} FROM enrollment_tokens WHERE id = ?", (token_id,))
        if row is None:
            raise NotFound("enrollment token", token_id)
        return _token(row)

    async def all(self) -> list[EnrollmentToken]:
        rows = await self.db.fetchall(f"SELECT {_COLS} FROM enrollment_tokens ORDER BY id DESC")
        return [_token(r) for r in rows]

    async def delete(self, actor: Actor, token_id: str) -> None:
        async with self.tx() as tx:
            cur = await tx.execute("DELETE FROM enrollment_tokens WHERE id = ?", (token_id,))
            if cur.rowcount == 0:
                raise NotFound("enrollment token", token_id)
            await tx.audit(actor, "enrollment_token.delete", token_id)

    async def enroll(
        self, token_hash: str, agent_token_hash: str, *, hostname: str, os: str, arch: str, agent_version: str,
    ) -> tuple[str, bytes | None]:
        """Consume one use of a token and create the host. Returns (host_id, sealed repo creds)."""
        async with self.tx() as tx:
            row = await tx.fetchone(
                "SELECT id, expires_at, max_uses, uses, initial_paths, repo_sealed FROM enrollment_tokens"
                f" WHERE token_hash = ?{self.d.for_update}", (token_hash,),
            )
            if row is None or datetime.fromisoformat(row["expires_at"]) <= tx.now or row["uses"] >= row["max_uses"]:
                raise TokenRejected("enrollment token is invalid, expired or already used")
            await tx.execute("UPDATE enrollment_tokens SET uses = uses + 1 WHERE id = ?", (row["id"],))
            host_id = new_id()
            paths = loads(row["initial_paths"], [])
            await tx.execute(
                "INSERT INTO hosts (id, hostname, status, os, arch, agent_version, initial_paths, created_at)"
                " VALUES (?, ?, 'pending', ?, ?, ?, ?, ?)",
                (host_id, hostname, os, arch, agent_version, row["initial_paths"], iso(tx.now)),
            )
            await tx.execute(
                "INSERT INTO agent_tokens (token_hash, host_id, created_at) VALUES (?, ?, ?)",
                (agent_token_hash, host_id, iso(tx.now)),
            )
            if paths:
                # The paths named at enrollment become the host's first source group, so the
                # operator only has to add a schedule.
                await tx.execute(
                    "INSERT INTO source_groups (id, host_id, name, includes, excludes, tag, retention)"
                    " VALUES (?, ?, 'default', ?, '[]', 'default', ?)",
                    (new_id(), host_id, dumps(paths), dumps({"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 6})),
                )
                await tx.execute("UPDATE hosts SET schedule_version = 1 WHERE id = ?", (host_id,))
            await tx.audit(Actor("agent", host_id, hostname), "host.enroll", host_id,
                           {"hostname": hostname, "enrollment_token": row["id"]})
            return host_id, row["repo_sealed"]


