"""Repository key rotation, driven by the server as a small state machine over agent jobs
(rm_agent/key_rotation.py runs each phase):

    adding        a rotate_key `add` job: the agent adds the new key and proves it opens the
                  repository (the new password sealed in the rotation row until then)
    committed     the proven password replaces the old in repo_credentials, in the same
                  transaction (the admin slot's too when it held the same password), and goes
                  to the agent in config.update; then a `remove` job removes the old key, and
                  only where the agent's own password opens the new key
    done          the old key is gone (or kept, with keep_old_key)
    rolling_back  the add failed or was cancelled: a `rollback` job removes the new key
    rolled_back   nothing changed; the new password is forgotten

Every step can die at any point: `resume()` looks at each rotation and its phase job and
does the next thing (a lost job is run again; a committed rotation whose remove was never
made gets one). It runs after each rotate_key job, on every hello of a host with a rotation
under way, and on the ticker (after a server restart). Until `committed` the repository's
old key opens it; from `committed` on both keys do until the remove, which never runs for an
agent still on the old password."""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from rm_core.enums import ActorKind, CredentialSlot, JobKind, JobState, RepoTarget
from rm_core.fleet import FleetSelector
from rm_core.jobs import Job
from rm_core.rotation import ACTIVE_STATES, FleetRotation, KeyRotation, RotateKeyBody, RotationStarted
from rm_core.version import ROTATE_FEATURE
from rm_server.errors import ConflictError
from rm_server.services.agent_messages import AgentMessages
from rm_server.services.credentials import CredentialService
from rm_server.services.jobs import JobService, agent_too_old
from rm_server.store import SYSTEM, Actor, NewJob, NotFound, Store
from rm_server.store.rotations import Rotations
from rm_server.ws.agent_hub import AgentHub

log = logging.getLogger("rm_server.rotations")

MAX_ATTEMPTS = 5  # phase jobs per phase before a rotation waits for an operator (POST again)
_KEY_ID = "0123456789abcdef"


def _key_id(value: Any) -> str | None:
    return value if isinstance(value, str) and 8 <= len(value) <= 64 and set(value) <= set(_KEY_ID) else None


@dataclass(eq=False)
class RotationService:
    store: Store
    rotations: Rotations
    credentials: CredentialService
    jobs: JobService
    hub: AgentHub
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _hosts: set[str] = field(default_factory=set)  # hosts with a rotation under way (hello looks here)

    def register(self, messages: AgentMessages) -> None:
        messages.after_job.append(self.after_job)
        messages.after_hello.append(self.on_hello)
        self.jobs.rotation_params = self.command_params

    # ------------------------------------------------------------ operators

    async def start(self, actor: Actor, host_id: str, body: RotateKeyBody) -> RotationStarted:
        await self.store.hosts.get(host_id)
        slot = CredentialSlot.copy if body.repo == RepoTarget.copy else CredentialSlot.repo
        creds = await self.credentials.current(host_id, slot)
        if creds is None or not creds.password:
            where = "PUT /hosts/{id}/repo/copy" if slot == CredentialSlot.copy else "PUT /hosts/{id}/repo"
            raise ConflictError(f"host {host_id} has no {slot.value} credentials to rotate; set them with {where}",
                                {"field": "repo"})
        conn = self.hub.get(host_id)
        if conn is not None and ROTATE_FEATURE not in conn.features:
            raise agent_too_old(host_id, ROTATE_FEATURE)
        latest = await self.rotations.latest(host_id, slot.value)
        if latest is not None and latest.state in ACTIVE_STATES and latest.attempts >= MAX_ATTEMPTS:
            # one that gave up waiting for its agent: asking again runs its phase again
            await self.rotations.set_job(latest.id, latest.job_id or "", 0)
            await self.resume(host_id)
            return await self._started(latest.id)
        new = creds.model_copy(update={"password": secrets.token_urlsafe(32)})
        rot = await self.rotations.start(actor, host_id, slot.value, body.keep_old_key,
                                         lambda rid: self.credentials.seal_rotation(rid, new))
        self._hosts.add(host_id)
        await self._phase(rot, "add")
        return await self._started(rot.id)

    async def _started(self, rotation_id: str) -> RotationStarted:
        rot = await self.rotations.get(rotation_id)
        assert rot is not None
        return RotationStarted(**rot.model_dump(), job=await self._job(rot.job_id))

    async def latest(self, host_id: str, repo: RepoTarget) -> KeyRotation:
        await self.store.hosts.get(host_id)
        slot = "copy" if repo == RepoTarget.copy else "repo"
        rot = await self.rotations.latest(host_id, slot)
        if rot is None:
            raise NotFound("key rotation of host", host_id)
        return rot

    async def fleet(self, actor: Actor, selector: FleetSelector, body: RotateKeyBody) -> FleetRotation:
        """Rotate many hosts' keys: each a rotation of its own; a host that cannot start one now
        is named with the reason (no credentials, one under way, an agent too old)."""
        host_ids = await self.store.fleet.select_hosts(selector.ids, selector.status, selector.q)
        started: list[KeyRotation] = []
        skipped: list[dict[str, Any]] = []
        for host_id in host_ids:
            try:
                started.append(await self.start(actor, host_id, body))
            except (ConflictError, NotFound) as exc:
                skipped.append({"host_id": host_id, "reason": str(exc)})
            except Exception as exc:  # one host's trouble must not stop the others
                log.exception("key rotation of host %s not started", host_id)
                skipped.append({"host_id": host_id, "reason": f"not started: {type(exc).__name__}"})
        return FleetRotation(started=[KeyRotation(**s.model_dump()) for s in started], skipped=skipped)

    # ------------------------------------------------------------ phases

    async def _phase(self, rot: KeyRotation, phase: str) -> Job:
        """The next phase job: recorded on the rotation before it is sent (its end finds it)."""
        params: dict[str, Any] = {"rotation_id": rot.id, "phase": phase}
        if rot.repo == RepoTarget.copy:
            params["repo"] = RepoTarget.copy.value
        elif phase == "remove" and await self._admin_rotated(rot.host_id):
            params["admin"] = True
        (job,) = await self.store.jobs.create(SYSTEM, [NewJob(rot.host_id, JobKind.rotate_key, ActorKind.system,
                                                              params=params)])
        await self.rotations.set_job(rot.id, job.id, rot.attempts + 1)
        self.jobs.changed(job)
        await self.jobs.dispatch(job)
        return job

    async def _admin_rotated(self, host_id: str) -> bool:
        repo = await self.credentials.current(host_id, CredentialSlot.repo)
        admin = await self.credentials.current(host_id, CredentialSlot.admin)
        return repo is not None and admin is not None and admin.password == repo.password

    async def command_params(self, job: Job) -> dict[str, Any]:
        """What a phase job's command.run carries beyond its stored params, resolved as it is
        sent: the new password (add, rollback) never enters the job record."""
        rot = await self.rotations.get(str(job.params.get("rotation_id")))
        if rot is None:
            raise NotFound("key rotation", str(job.params.get("rotation_id")))
        phase = job.params.get("phase")
        if phase == "remove":
            return {"old_key_id": rot.old_key_id, "new_key_id": rot.new_key_id}
        sealed = await self.rotations.sealed(rot.id)
        new = self.credentials.open_rotation(rot.id, sealed) if sealed else None
        if new is None or not new.password:
            raise NotFound("new password of key rotation", rot.id)
        return {"new_password": new.password}

    # ------------------------------------------------------------ driving

    async def after_job(self, job: Job) -> None:
        if job.kind == JobKind.rotate_key:
            await self.resume(job.host_id)

    async def on_hello(self, host_id: str) -> None:
        if host_id in self._hosts:
            await self.resume(host_id)

    async def resume(self, host_id: str | None = None) -> None:
        """Take every rotation under way (of one host, or all) one step further."""
        async with self._lock:
            active = await self.rotations.active(host_id)
            if host_id is None:
                self._hosts = {r.host_id for r in active}
            elif not active:
                self._hosts.discard(host_id)
            for rot in active:
                try:
                    await self._drive(rot)
                except Exception:  # one rotation's trouble must not hold the others
                    log.exception("key rotation %s of host %s could not go on", rot.id, rot.host_id)

    async def _drive(self, rot: KeyRotation) -> None:
        while True:
            job = await self._job(rot.job_id)
            if job is not None and not job.state.terminal:
                return  # its phase job is still to run
            nxt = await self._step(rot, job)
            if nxt is None:
                return
            rot = nxt

    async def _job(self, job_id: str | None) -> Job | None:
        if not job_id:
            return None
        try:
            return await self.store.jobs.get(job_id)
        except NotFound:
            return None

    async def _step(self, rot: KeyRotation, job: Job | None) -> KeyRotation | None:
        """One move; the rotation as it is after it (None: nothing more to do now)."""
        ok = job is not None and job.state == JobState.succeeded
        if rot.state == "adding":
            summary = (job.summary or {}) if job is not None else {}
            old, new = _key_id(summary.get("old_key_id")), _key_id(summary.get("new_key_id"))
            if ok and old and new:
                return await self._commit(rot, old, new)
            if (job is not None and job.state == JobState.cancelled) or rot.attempts >= MAX_ATTEMPTS:
                why = job.error if job is not None and job.error else f"gave up after {rot.attempts} attempts"
                await self.rotations.move(rot.id, "adding", "rolling_back", error=f"key add failed: {why}")
                return await self.rotations.get(rot.id)
            await self._phase(rot, "add")  # none yet, lost, or failed: run it again
            return None
        if rot.state == "rolling_back":
            if ok:
                await self.rotations.move(rot.id, "rolling_back", "rolled_back", error=rot.error,
                                          forget_password=True)
                self._hosts.discard(rot.host_id)
                return None
            await self._again(rot, job, "rollback")
            return None
        if rot.state == "committed":
            if rot.keep_old_key or ok:
                await self.rotations.move(rot.id, "committed", "done", error=None, reset_attempts=False)
                self._hosts.discard(rot.host_id)
                return None
            await self._again(rot, job, "remove")
            return None
        return None

    async def _again(self, rot: KeyRotation, job: Job | None, phase: str) -> None:
        if rot.attempts >= MAX_ATTEMPTS:
            why = job.error if job is not None and job.error else "no agent ran it"
            await self.rotations.note_error(rot.id, f"{phase} waits for an operator after {rot.attempts} attempts: "
                                                    f"{why} (POST .../repo/rotate-key runs it again)")
            return None
        await self._phase(rot, phase)
        return None

    async def _commit(self, rot: KeyRotation, old_key_id: str, new_key_id: str) -> KeyRotation | None:
        sealed = await self.rotations.sealed(rot.id)
        new = self.credentials.open_rotation(rot.id, sealed) if sealed else None
        if new is None:
            await self.rotations.move(rot.id, "adding", "rolling_back",
                                      error="the new password cannot be opened with this master key")
            return await self.rotations.get(rot.id)
        rows = [self.credentials.row(rot.host_id, new)]
        if rot.repo == RepoTarget.primary:
            old = await self.credentials.current(rot.host_id, CredentialSlot.repo)
            admin = await self.credentials.current(rot.host_id, CredentialSlot.admin)
            if old is not None and admin is not None and admin.password == old.password:
                # the admin credentials reach the same repository with the same key
                rows.append(self.credentials.row(rot.host_id, admin.model_copy(update={"password": new.password})))
        if await self.rotations.commit(rot.id, old_key_id, new_key_id, rows):
            log.info("key rotation %s of host %s committed: key %s replaces %s", rot.id, rot.host_id,
                     new_key_id[:8], old_key_id[:8])
            await self.credentials.push_config(rot.host_id)
        return await self.rotations.get(rot.id)
