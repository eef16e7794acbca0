"""Repository key rotations: the sealed new password until it becomes the slot's password
(one transaction with the state change), the phase job each waits for, the key ids."""

from __future__ import annotations

from collections.abc import Callable

from rm_core.enums import RepoTarget
from rm_core.ids import new_id
from rm_core.rotation import ACTIVE_STATES, KeyRotation
from rm_server.store.base import Table
from rm_server.store.common import SYSTEM, Actor, Conflict, dt, iso
from rm_server.store.db import Row

_COLS = ("id, host_id, slot, state, keep_old, sealed, old_key_id, new_key_id, job_id, attempts, error, created_at,"
         " updated_at")
_ACTIVE = "(" + ", ".join(f"'{s}'" for s in ACTIVE_STATES) + ")"


def _rotation(r: Row) -> KeyRotation:
    return KeyRotation(id=r["id"], host_id=r["host_id"], repo=RepoTarget.copy if r["slot"] == "copy" else RepoTarget.primary,
                       state=r["state"], keep_old_key=bool(r["keep_old"]), old_key_id=r["old_key_id"],
                       new_key_id=r["new_key_id"], job_id=r["job_id"], attempts=r["attempts"], error=r["error"],
                       created_at=dt(r["created_at"]), updated_at=dt(r["updated_at"]))


class Rotations(Table):
    async def start(self, actor: Actor, host_id: str, slot: str, keep_old: bool,
                    seal: Callable[[str], bytes]) -> KeyRotation:
        """A new rotation of the slot's key; Conflict while one is under way (`seal(id)` seals
        the new credentials for that rotation)."""
        rid = new_id()
        async with self.tx() as tx:
            busy = await tx.fetchone(f"SELECT id, state FROM key_rotations WHERE host_id = ? AND slot = ?"
                                     f" AND state IN {_ACTIVE}", (host_id, slot))
            if busy is not None:
                raise Conflict(f"a key rotation of this repository is under way ({busy['state']})",
                               {"rotation_id": busy["id"], "state": busy["state"]})
            now = iso(tx.now)
            await tx.execute(
                "INSERT INTO key_rotations (id, host_id, slot, state, keep_old, sealed, attempts, created_at, updated_at)"
                " VALUES (?, ?, ?, 'adding', ?, ?, 0, ?, ?)", (rid, host_id, slot, int(keep_old), seal(rid), now, now))
            await tx.audit(actor, "repo.rotate_key", host_id, {"rotation_id": rid, "slot": slot, "keep_old": keep_old})
        got = await self.get(rid)
        assert got is not None
        return got

    async def get(self, rotation_id: str) -> KeyRotation | None:
        row = await self.db.fetchone(f"SELECT {_COLS} FROM key_rotations WHERE id = ?", (rotation_id,))
        return None if row is None else _rotation(row)

    async def sealed(self, rotation_id: str) -> bytes | None:
        row = await self.db.fetchone("SELECT sealed FROM key_rotations WHERE id = ?", (rotation_id,))
        return None if row is None else row["sealed"]

    async def latest(self, host_id: str, slot: str) -> KeyRotation | None:
        row = await self.db.fetchone(f"SELECT {_COLS} FROM key_rotations WHERE host_id = ? AND slot = ?"
                                     " ORDER BY id DESC LIMIT 1", (host_id, slot))
        return None if row is None else _rotation(row)

    async def active(self, host_id: str | None = None) -> list[KeyRotation]:
        sql = f"SELECT {_COLS} FROM key_rotations WHERE state IN {_ACTIVE}"
        rows = await self.db.fetchall(sql + (" AND host_id = ?" if host_id else "") + " ORDER BY id",
                                      (host_id,) if host_id else ())
        return [_rotation(r) for r in rows]

    async def set_job(self, rotation_id: str, job_id: str, attempts: int) -> None:
        async with self.tx() as tx:
            await tx.execute("UPDATE key_rotations SET job_id = ?, attempts = ?, updated_at = ? WHERE id = ?",
                             (job_id, attempts, iso(tx.now), rotation_id))

    async def move(self, rotation_id: str, state_from: str, state_to: str, *, error: str | None = None,
                   forget_password: bool = False, reset_attempts: bool = True) -> bool:
        """Move a rotation between states (only from `state_from`: a second caller does nothing)."""
        async with self.tx() as tx:
            cur = await tx.execute(
                "UPDATE key_rotations SET state = ?, error = ?, job_id = NULL, updated_at = ?,"
                " attempts = CASE WHEN ? = 1 THEN 0 ELSE attempts END,"
                " sealed = CASE WHEN ? = 1 THEN NULL ELSE sealed END WHERE id = ? AND state = ?",
                (state_to, error, iso(tx.now), int(reset_attempts), int(forget_password), rotation_id, state_from))
            moved = cur.rowcount > 0
            row = await tx.fetchone("SELECT host_id FROM key_rotations WHERE id = ?", (rotation_id,)) if moved else None
            if row is not None:
                await tx.audit(SYSTEM, f"repo.rotate_key_{state_to}", row["host_id"],
                               {"rotation_id": rotation_id, "error": error})
        return moved

    async def note_error(self, rotation_id: str, error: str) -> None:
        async with self.tx() as tx:
            await tx.execute("UPDATE key_rotations SET error = ?, updated_at = ? WHERE id = ?",
                             (error, iso(tx.now), rotation_id))

    async def commit(self, rotation_id: str, old_key_id: str, new_key_id: str,
                     credentials: list[tuple[str, str, bytes, str]]) -> bool:
        """The proven new key becomes the password the server holds: every (slot, url_redacted,
        sealed, fingerprint) written in the same transaction as the state `committed`. False
        when the rotation is no longer adding (committed before)."""
        async with self.tx() as tx:
            row = await tx.fetchone("SELECT host_id, state FROM key_rotations WHERE id = ?", (rotation_id,))
            if row is None or row["state"] != "adding":
                return False
            for slot, url, sealed, fingerprint in credentials:
                await tx.execute(
                    "UPDATE repo_credentials SET url_redacted = ?, sealed = ?, key_fingerprint = ?, updated_at = ?"
                    " WHERE host_id = ? AND slot = ?", (url, sealed, fingerprint, iso(tx.now), row["host_id"], slot))
            await tx.execute(
                "UPDATE key_rotations SET state = 'committed', old_key_id = ?, new_key_id = ?, job_id = NULL,"
                " attempts = 0, error = NULL, sealed = NULL, updated_at = ? WHERE id = ?",
                (old_key_id, new_key_id, iso(tx.now), rotation_id))
            await tx.audit(SYSTEM, "repo.rotate_key_committed", row["host_id"],
                           {"rotation_id": rotation_id, "slots": [c[0] for c in credentials],
                            "old_key_id": old_key_id, "new_key_id": new_key_id})
        return True
