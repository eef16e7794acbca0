"""Webhook notifications: a failed job, a host going stale or a source group's drills overdue, and recovery."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import aiohttp

from rm_core.jobs import Job
from rm_core.urls import redact_webhook
from rm_server.store import Actor, Store

log = logging.getLogger("rm_server.notify")


class Notifier:
    """Posts JSON to the webhook URL in server settings; never blocks the caller."""

    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    async def set_url(self, actor: Actor, url: str | None) -> None:
        """Where the posts go (None: nowhere). The URL is a bearer secret: the audit row keeps it redacted."""
        await self.store.settings.set(actor, "webhook_url", url, audit_value=False, shown=redact_webhook(url))

    def _send(self, event: str, payload: dict[str, Any]) -> None:
        task = asyncio.ensure_future(self._post(event, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, event: str, payload: dict[str, Any]) -> None:
        url = await self.store.settings.get("webhook_url")
        if not url:
            return
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        body = {"event": event, "ts": self.clock().isoformat(), **payload}
        try:
            async with self._session.post(url, json=body) as resp:
                if resp.status >= 400:
                    log.warning("webhook %s answered %s for %s", redact_webhook(url), resp.status, event)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.warning("webhook %s failed for %s: %s", redact_webhook(url), event,
                        str(exc).replace(url, redact_webhook(url) or ""))

    def job_failed(self, job: Job) -> None:
        self._send("job.failed", {"job": job.model_dump(mode="json")})

    def stale_changed(self, host_id: str, stale: bool) -> None:
        self._send("host.stale" if stale else "host.recovered", {"host_id": host_id})

    def drill_overdue_changed(self, overdue: bool, payload: dict[str, Any]) -> None:
        """A source group's last good restore drill became too old, or a drill succeeded again."""
        self._send("drill.overdue" if overdue else "drill.recovered", payload)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
