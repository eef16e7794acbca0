"""Where the server's bad news goes: the notification channels (services/alerts.py) and the
older webhook setting, which stays as it was (same events, same JSON) for the relays already
built on it. Every method here returns at once; the sending happens elsewhere."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from rm_core.alerts import AlertEvent, AlertSubject
from rm_core.enums import JobKind, JobState
from rm_core.jobs import Job
from rm_core.restic import UNREACHABLE_MESSAGE
from rm_core.urls import LINK_LOCAL_REFUSED, is_link_local, redact_webhook, url_host
from rm_server.errors import BadRequest
from rm_server.services.alerts import Alerts
from rm_server.store import Actor, Store

log = logging.getLogger("rm_server.notify")

_FAILED = (JobState.failed, JobState.lost)
# (kind, state) of a finished job -> the event it raises
_JOB_EVENTS = {
    (JobKind.backup, JobState.failed): AlertEvent.backup_failed,
    (JobKind.backup, JobState.lost): AlertEvent.backup_failed,
    (JobKind.backup, JobState.warning): AlertEvent.backup_warning,
    (JobKind.check, JobState.failed): AlertEvent.check_failed,
    (JobKind.check, JobState.lost): AlertEvent.check_failed,
    (JobKind.drill, JobState.failed): AlertEvent.drill_failed,
    (JobKind.drill, JobState.lost): AlertEvent.drill_failed,
}


class LinkLocalRefused(OSError):
    pass


class _NoLinkLocal(AbstractResolver):
    """aiohttp's resolver without link-local answers: a webhook name that resolves to a
    metadata address fails like an unknown name, at connect time (no check-then-use gap)."""

    def __init__(self) -> None:
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        kept = [r for r in found if not is_link_local(r["host"] or "")]
        if not kept:
            raise LinkLocalRefused(f"webhook host {host} resolves only to link-local addresses")
        return kept

    async def close(self) -> None:
        await self._inner.close()


def webhook_target_refused(url: str | None) -> bool:
    """A webhook URL that names a link-local address itself (refused when it is set)."""
    host = url_host(url) if url else None
    return host is not None and is_link_local(host)


class Notifier:
    """Turns what happened into events for the channels, and into the webhook's posts."""

    def __init__(self, store: Store, clock: Callable[[], datetime], alerts: Alerts, *,
                 allow_link_local: bool = False, offline_after: float = 900.0) -> None:
        self.store = store
        self.clock = clock
        self.alerts = alerts
        self.allow_link_local = allow_link_local
        self.offline_after = offline_after  # host.offline: offline longer than this
        self.started = clock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------ what happened

    def job_changed(self, job: Job) -> None:
        if job.state in _FAILED:
            self._post_webhook("job.failed", {"job": job.model_dump(mode="json")})
        event = _JOB_EVENTS.get((job.kind, job.state))
        detail = (job.error or "")[:200]
        if event is not None:
            self.alerts.raise_event(event, AlertSubject(job.host_id, detail), key=job.id)
        if job.state in _FAILED and (job.error or "").startswith(UNREACHABLE_MESSAGE):
            self.alerts.raise_event(AlertEvent.repo_unreachable, AlertSubject(job.host_id, detail), key=job.id)

    def backup_anomaly(self, host_id: str, reason: str, job_id: str | None = None) -> None:
        """A backup far outside its group's history (the anomaly detector calls this)."""
        self.alerts.raise_event(AlertEvent.backup_anomaly, AlertSubject(host_id, reason[:200]), key=job_id)

    def stale_changed(self, host_id: str, stale: bool) -> None:
        self._post_webhook("host.stale" if stale else "host.recovered", {"host_id": host_id})
        if stale:
            self.alerts.raise_event(AlertEvent.host_stale, AlertSubject(host_id, "no recent successful backup"))

    def drill_overdue_changed(self, overdue: bool, payload: dict[str, Any]) -> None:
        """A source group's last good restore drill became too old, or a drill succeeded again."""
        self._post_webhook("drill.overdue" if overdue else "drill.recovered", payload)
        if overdue:
            detail = f"source group {payload.get('source_group_id')}: no good drill in {payload.get('max_age_hours')} h"
            self.alerts.raise_event(AlertEvent.drill_overdue, AlertSubject(payload["host_id"], detail))

    async def check_offline(self) -> list[str]:
        """Raise host.offline for hosts away longer than `offline_after`, once per absence.

        The time counts from this server's start at the earliest: after a restart every host
        is offline until its agent reconnects, which is no news."""
        now = self.clock()
        cutoff = now - timedelta(seconds=self.offline_after)
        await self.store.host_alerts.clear_online()
        if self.started > cutoff:
            return []
        away = await self.store.host_alerts.offline_unalerted(cutoff)
        for host_id, _, last_seen in away:
            self.alerts.raise_event(AlertEvent.host_offline,
                                    AlertSubject(host_id, f"last seen {last_seen:%Y-%m-%d %H:%M} UTC"))
        if away:
            await self.store.host_alerts.mark_raised(AlertEvent.host_offline.value, [h for h, _, _ in away])
        return [h for h, _, _ in away]

    # ------------------------------------------------------------ the webhook

    async def set_url(self, actor: Actor, url: str | None) -> None:
        """Where the posts go (None: nowhere). The URL is a bearer secret: the audit row keeps it redacted."""
        if not self.allow_link_local and webhook_target_refused(url):
            raise BadRequest("webhook_url " + LINK_LOCAL_REFUSED, {"field": "webhook_url"})
        await self.store.settings.set(actor, "webhook_url", url, audit_value=False, shown=redact_webhook(url))

    def _post_webhook(self, event: str, payload: dict[str, Any]) -> None:
        task = asyncio.ensure_future(self._post(event, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, event: str, payload: dict[str, Any]) -> None:
        url = await self.store.settings.get("webhook_url")
        if not url:
            return
        shown = redact_webhook(url)
        if not self.allow_link_local and webhook_target_refused(url):
            log.warning("webhook %s not sent for %s: it %s", shown, event, LINK_LOCAL_REFUSED)
            return
        if self._session is None:
            connector = None if self.allow_link_local else aiohttp.TCPConnector(resolver=_NoLinkLocal())
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10), connector=connector)
        body = {"event": event, "ts": self.clock().isoformat(), **payload}
        try:
            # A redirect would carry the post somewhere the admin never named (and past the
            # link-local rule): a 3xx is an answer, logged like any other failure.
            async with self._session.post(url, json=body, allow_redirects=False) as resp:
                if resp.status >= 300:
                    log.warning("webhook %s answered %s for %s", shown, resp.status, event)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            log.warning("webhook %s failed for %s: %s", shown, event, str(exc).replace(url, shown or ""))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
