"""Notification channels for admins: create, change, delete, test. The URL is sealed with the
master key before the store sees it (like repository credentials) and only its redacted form
is ever shown, audited or logged."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from rm_core.alerts import Channel, ChannelBody, ChannelTestResult, redact_channel_url
from rm_core.urls import LINK_LOCAL_REFUSED
from rm_server.alert_send import known_schemes, literal_link_local, scheme_of
from rm_server.errors import BadGateway, BadRequest
from rm_server.security import MasterKey
from rm_server.services.alerts import Alerts, seal_context
from rm_server.store import Actor, Store
from rm_server.store.channels import ChannelRow

TEST_TITLE = "[restic-manager] test message"
TEST_BODY = "A test message from restic-manager: this channel reaches you."


@dataclass(eq=False)
class ChannelService:
    store: Store
    alerts: Alerts
    master_key: MasterKey
    allow_link_local: bool = False

    def _channel(self, row: ChannelRow) -> Channel:
        pending, retry_at = self.alerts.pending(row.id)
        return Channel(id=row.id, name=row.name, url=row.url_redacted, events=row.events,
                       min_interval_s=row.min_interval_s, created_at=row.created_at, updated_at=row.updated_at,
                       last_sent_at=row.last_sent_at, last_error=row.last_error, last_error_at=row.last_error_at,
                       failures=row.failures, next_retry_at=retry_at, pending=pending)

    async def _check_target(self, body: ChannelBody) -> None:
        # A name is checked again at each send (it may resolve elsewhere by then); an address
        # written into the URL is refused now, naming the field. The message never repeats
        # the URL: it is a secret.
        if not self.allow_link_local and literal_link_local(body.url):
            raise BadRequest("url " + LINK_LOCAL_REFUSED, {"field": "url"})
        scheme = scheme_of(body.url)
        if scheme not in await asyncio.to_thread(known_schemes):
            raise BadRequest(f"url: Apprise has no service for the scheme {scheme!r} (schemes are lower case; "
                             "see Apprise's list of services)", {"field": "url"})

    async def all(self) -> list[Channel]:
        return [self._channel(r) for r in await self.store.channels.all()]

    async def get(self, channel_id: str) -> Channel:
        return self._channel(await self.store.channels.get(channel_id))

    async def create(self, actor: Actor, body: ChannelBody) -> Channel:
        await self._check_target(body)
        row = await self.store.channels.create(
            actor, body.name, lambda cid: self.master_key.seal(body.url.encode(), seal_context(cid)),
            redact_channel_url(body.url), [e.value for e in body.events], body.min_interval_s)
        self.alerts.configure(row)
        return self._channel(row)

    async def update(self, actor: Actor, channel_id: str, body: ChannelBody) -> Channel:
        await self._check_target(body)
        sealed = self.master_key.seal(body.url.encode(), seal_context(channel_id))
        row = await self.store.channels.update(actor, channel_id, body.name, sealed, redact_channel_url(body.url),
                                               [e.value for e in body.events], body.min_interval_s)
        self.alerts.configure(row)
        return self._channel(row)

    async def delete(self, actor: Actor, channel_id: str) -> None:
        await self.store.channels.delete(actor, channel_id)
        await self.alerts.remove(channel_id)

    async def test(self, actor: Actor, channel_id: str) -> ChannelTestResult:
        """Send a test message now; 502 with the service's error when it fails."""
        await self.store.channels.get(channel_id)
        error = await self.alerts.send(channel_id, TEST_TITLE, TEST_BODY)
        await self.store.audit.record(actor, "channel.test", channel_id, {"ok": error is None})
        if error is not None:
            raise BadGateway(f"the channel's service did not take the test message: {error}",
                             {"channel_id": channel_id}, code="channel_failed")
        self.alerts.retry_now(channel_id)
        return ChannelTestResult(ok=True, channel=await self.get(channel_id))
