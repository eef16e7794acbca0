"""Enrollment: minting a token (with the install command an operator pastes on the host)
and the agent's enroll call that turns a token into a host with its own agent token."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from rm_core.api import EnrollBody, EnrollmentTokenCreate, EnrollmentTokenCreated, EnrollResponse
from rm_server.install import Installer
from rm_server.security import hash_token, new_token
from rm_server.services.credentials import CredentialService
from rm_server.services.hosts import HostService
from rm_server.store import Actor, Store


@dataclass(eq=False)
class EnrollmentService:
    store: Store
    credentials: CredentialService
    installer: Installer
    hosts: HostService

    async def create_token(self, actor: Actor, body: EnrollmentTokenCreate) -> EnrollmentTokenCreated:
        """A new token, shown this once; only its hash is stored."""
        token = new_token("rme")
        created = await self.store.enrollment.create(
            actor, hash_token(token), name=body.name, ttl=timedelta(seconds=body.ttl_seconds),
            max_uses=body.max_uses, initial_paths=body.initial_paths,
            repo_sealed=self.credentials.seal_for_enrollment(body.repo),
        )
        command = await self.installer.command(token)
        return EnrollmentTokenCreated(**created.model_dump(), token=token, install_command=command)

    async def revoke(self, actor: Actor, token_id: str) -> None:
        await self.store.enrollment.delete(actor, token_id)

    async def enroll(self, body: EnrollBody) -> EnrollResponse:
        """Spend a token: a new host, its agent token, and the token's credentials if it had any."""
        agent_token = new_token("rma")
        host_id, sealed = await self.store.enrollment.enroll(
            hash_token(body.token), hash_token(agent_token), hostname=body.hostname, os=body.os, arch=body.arch,
            agent_version=body.agent_version,
        )
        if sealed is not None:
            await self.credentials.store_enrolled(host_id, sealed)
        await self.hosts.changed(host_id)  # consoles show the new (pending) host at once
        return EnrollResponse(host_id=host_id, agent_token=agent_token)
