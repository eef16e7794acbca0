"""Repository credentials: sealed with the master key before the store sees them, opened
only to travel to the host's agent in `config.update` (which also carries bandwidth caps)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import bcrypt

from rm_core import protocol as p
from rm_core.api import BandwidthBody, RepoBody, RepoInfo, RepoPutResponse
from rm_core.enums import CredentialSlot
from rm_core.urls import redact_url
from rm_core.version import COPY_FEATURE
from rm_server.security import MasterKey, SealError
from rm_server.services.jobs import JobService
from rm_server.services.relay import Relay
from rm_server.store import SYSTEM, Actor, NotFound, Store
from rm_server.store.copies import Copies
from rm_server.ws.agent_hub import AgentHub

log = logging.getLogger("rm_server.services")

# Context of credentials sealed into an enrollment token, before any host exists.
ENROLLMENT = "enrollment"


@dataclass(eq=False)
class CredentialService:
    store: Store
    hub: AgentHub
    master_key: MasterKey
    jobs: JobService
    copies: Copies | None = None  # the copy repository's last report (its stats in GET .../repo/copy)
    # what follows a change of the copy repository (its lag is recomputed)
    copy_changed: list[Callable[[str], Awaitable[object]]] = field(default_factory=list)
    relay: Relay | None = None  # the other replicas: config.update for an agent another one holds
    agent_urls: tuple[str, ...] = ()  # `serve --agent-url`: sent in every config.update (agents adopt them)

    # ------------------------------------------------------------ sealing

    def _seal(self, host_id: str, creds: p.RepoCredentials) -> bytes:
        return self.master_key.seal(creds.model_dump_json().encode(), f"repo:{host_id}:{creds.slot.value}")

    def _open(self, host_id: str, slot: str, sealed: bytes) -> p.RepoCredentials | None:
        try:
            raw = self.master_key.open(sealed, f"repo:{host_id}:{slot}")
        except SealError:
            log.error("credentials of host %s slot %s cannot be opened with this master key", host_id, slot)
            return None
        return p.RepoCredentials.model_validate_json(raw)

    def seal_for_enrollment(self, repo: RepoBody | None) -> bytes | None:
        """Credentials an enrollment token hands to the host it creates, sealed until then."""
        if repo is None:
            return None
        creds = p.RepoCredentials(slot=CredentialSlot.repo, url=repo.url, password=repo.password,
                                  rest_user=repo.rest_user, rest_password=repo.rest_password)
        return self.master_key.seal(creds.model_dump_json().encode(), ENROLLMENT)

    async def store_enrolled(self, host_id: str, sealed: bytes) -> None:
        """The enrollment token's credentials become the new host's repository credentials."""
        creds = p.RepoCredentials.model_validate_json(self.master_key.open(sealed, ENROLLMENT))
        await self._store(SYSTEM, host_id, creds)

    # ------------------------------------------------------------ key rotation (services/rotations.py)

    async def current(self, host_id: str, slot: CredentialSlot) -> p.RepoCredentials | None:
        """A slot's credentials, opened (for a rotation to derive the new ones from)."""
        blob = (await self.store.credentials.all_for_host(host_id)).get(slot.value)
        return None if blob is None else self._open(host_id, slot.value, blob)

    def seal_rotation(self, rotation_id: str, creds: p.RepoCredentials) -> bytes:
        """New credentials kept sealed for one rotation until they are proven and committed."""
        return self.master_key.seal(creds.model_dump_json().encode(), f"rotation:{rotation_id}")

    def open_rotation(self, rotation_id: str, sealed: bytes) -> p.RepoCredentials | None:
        try:
            return p.RepoCredentials.model_validate_json(self.master_key.open(sealed, f"rotation:{rotation_id}"))
        except SealError:
            log.error("the new credentials of key rotation %s cannot be opened with this master key", rotation_id)
            return None

    def row(self, host_id: str, creds: p.RepoCredentials) -> tuple[str, str, bytes, str]:
        """(slot, url_redacted, sealed, fingerprint): what the store keeps of credentials."""
        return (creds.slot.value, redact_url(creds.url), self._seal(host_id, creds),
                self.master_key.fingerprint(creds.password or ""))

    async def _store(self, actor: Actor, host_id: str, creds: p.RepoCredentials) -> None:
        """The one place credentials are written: URL redacted, secrets sealed, key fingerprinted."""
        await self.store.credentials.put(actor, host_id, creds.slot.value, redact_url(creds.url),
                                         self._seal(host_id, creds), self.master_key.fingerprint(creds.password or ""))

    async def rekey_fingerprints(self) -> int:
        """Fingerprints stored before they were keyed (an unsalted SHA-256 a viewer could test
        guesses against) are recomputed at start from the sealed credentials."""
        changed = []
        for host_id, slot, sealed, stored in await self.store.credentials.fingerprints():
            creds = self._open(host_id, slot, sealed)
            if creds is None:
                continue
            fp = self.master_key.fingerprint(creds.password or "")
            if fp != stored:
                changed.append((host_id, slot, fp))
        if changed:
            await self.store.credentials.set_fingerprints(changed)
            log.info("re-keyed %d repository key fingerprints", len(changed))
        return len(changed)

    # ------------------------------------------------------------ operator changes

    async def put(self, actor: Actor, host_id: str, slot: CredentialSlot, body: RepoBody) -> RepoPutResponse:
        """Store credentials, tell the agent, and initialise the repository they name."""
        await self.store.hosts.get(host_id)
        password, htpasswd, rest_password = body.password, None, body.rest_password
        if body.generate_password:
            password = secrets.token_urlsafe(32)
            if body.rest_user and not rest_password:
                rest_password = secrets.token_urlsafe(24)
        if body.rest_user and rest_password and body.generate_password:
            hashed = bcrypt.hashpw(rest_password.encode(), bcrypt.gensalt(rounds=10)).decode()
            htpasswd = f"{body.rest_user}:{hashed}"
        await self._store(actor, host_id, p.RepoCredentials(slot=slot, url=body.url, password=password,
                                                            rest_user=body.rest_user, rest_password=rest_password))
        await self.push_config(host_id)
        if slot == CredentialSlot.repo:
            await self.jobs.init_changed_repository(host_id)
        elif slot == CredentialSlot.copy:
            # a new copy repository is initialised like the primary ("already initialised" is fine);
            # queued for a host that is away, refused at dispatch by an agent without copies
            await self.jobs.init_changed_repository(host_id, copy=True)
            for follow in self.copy_changed:
                await follow(host_id)
        info = await self.info(host_id, slot)
        # A generated password is shown this once; the htpasswd line goes into the REST server.
        return RepoPutResponse(**info.model_dump(), password=password if body.generate_password else None,
                               htpasswd_line=htpasswd)

    async def info(self, host_id: str, slot: CredentialSlot) -> RepoInfo:
        """What an operator may see of stored credentials: never a secret."""
        await self.store.hosts.get(host_id)
        stored = await self.store.credentials.get(host_id, slot.value)
        if stored is None:
            raise NotFound(f"{slot.value} credentials for host", host_id)
        admin = slot == CredentialSlot.admin or await self.store.credentials.get(host_id, "admin") is not None
        if slot == CredentialSlot.copy:
            stats = await self.copies.stats(host_id) if self.copies is not None else None
        else:
            stats = await self.store.reports.stats(host_id)
        return RepoInfo(url=stored.url_redacted, key_fingerprint=stored.key_fingerprint,
                        updated_at=stored.updated_at, stats=stats,
                        has_admin_credentials=admin)

    async def delete(self, actor: Actor, host_id: str, slot: CredentialSlot) -> None:
        """Unset credentials (the copy repository); the agent forgets them at once."""
        await self.store.hosts.get(host_id)
        if not await self.store.credentials.delete(actor, host_id, slot.value):
            raise NotFound(f"{slot.value} credentials for host", host_id)
        await self.push_config(host_id)
        if slot == CredentialSlot.copy:
            if self.copies is not None:
                await self.copies.forget_report(host_id)  # what it held says nothing of the next one
            for follow in self.copy_changed:
                await follow(host_id)

    async def set_bandwidth(self, actor: Actor, host_id: str, body: BandwidthBody) -> None:
        await self.store.hosts.set_json(actor, host_id, "bandwidth", body.model_dump(exclude_none=True))
        await self.push_config(host_id)

    # ------------------------------------------------------------ what the agent gets

    async def config_update(self, host_id: str, features: frozenset[str] = frozenset()) -> p.ConfigUpdate:
        bandwidth = await self.store.hosts.get_json(host_id, "bandwidth")
        sealed = await self.store.credentials.all_for_host(host_id)
        return self.config_from(host_id, bandwidth, sealed, features)

    def config_from(self, host_id: str, bandwidth: dict[str, Any], sealed: dict[str, bytes],
                    features: frozenset[str] = frozenset()) -> p.ConfigUpdate:
        """The config.update for rows already read (hellos read many hosts' rows at once).

        The copy slot goes only to agents that announced copies: an older agent refuses a
        config.update whose slot it does not know, and would lose the primary's credentials too."""
        opened = [self._open(host_id, slot, blob) for slot, blob in sealed.items()
                  if slot != CredentialSlot.copy.value or COPY_FEATURE in features]
        return p.ConfigUpdate(bandwidth=p.Bandwidth(**bandwidth), credentials=[c for c in opened if c is not None],
                              server_urls=list(self.agent_urls))

    async def repo_credentials(self, host_id: str) -> p.RepoCredentials | None:
        """A host's repository credentials, opened for one cross-host restore job's command.run."""
        sealed = await self.store.credentials.all_for_host(host_id)
        blob = sealed.get(CredentialSlot.repo.value)
        return None if blob is None else self._open(host_id, CredentialSlot.repo.value, blob)

    async def push_config(self, host_id: str) -> None:
        conn = self.hub.get(host_id)
        if conn is not None:
            conn.send(await self.config_update(host_id, conn.features))
        elif self.relay is not None:  # another replica may hold the agent: it reads and sends
            self.relay.send({"t": "config", "host": host_id})

    def register(self, relay: Relay) -> None:
        self.relay = relay
        relay.handlers["config"] = self._push_here

    async def _push_here(self, message: dict[str, Any]) -> None:
        if self.hub.get(str(message["host"])) is not None:
            await self.push_config(str(message["host"]))
