"""Waiting for an asyncio.Event with a time limit, in loops that must stop when cancelled.

Not `asyncio.wait_for(event.wait(), timeout)`: before Python 3.12 it could swallow a
cancellation that arrived in the same loop turn as the event was set (CPython gh-86296); a
`while True` loop around it then never ended, and whoever cancelled it and awaited it hung
(seen: the alert dispatcher's channel task, removing a channel in a test). The agent runs on
3.9+, the server on 3.11+: both have it. The same holds for wait_for around any awaitable that
finishes as the cancel arrives (seen again: an alert send ending in the turn its channel was
removed), so rm_server bounds its waits with `asyncio.timeout` (3.11+; it delivers that
cancel) and never calls wait_for (tests/unit/test_waiting.py checks)."""

from __future__ import annotations

import asyncio
from typing import Optional

__all__ = ["wait_event"]


async def wait_event(event: asyncio.Event, timeout: Optional[float]) -> bool:
    """Wait until `event` is set or `timeout` seconds pass (None: no limit); True when set.
    A cancellation always propagates."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
    return event.is_set()
