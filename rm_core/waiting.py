"""Waiting for an asyncio.Event with a time limit, in loops that must stop when cancelled.

Not `asyncio.wait_for(event.wait(), timeout)`: before Python 3.12 it could swallow a
cancellation that arrived in the same loop turn as the event was set (CPython gh-86296); a
`while True` loop around it then never ended, and whoever cancelled it and awaited it hung
(seen: the alert dispatcher's channel task, removing a channel in a test). The agent runs on
3.9+, the server on 3.11+: both have it."""

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
