"""Keep the cyclic garbage collector's full passes small at fleet scale.

Each agent connection holds a few hundred long-lived objects (socket, protocol, parser,
request, response). Python's full GC pass walks every one of them; at 5,000 agents py-spy
and gc.callbacks showed 11 full passes of 0.6-0.9 s in 90 s (loop stalls, most of the
server's CPU), at 19,000 each would take seconds. Freezing moves what exists now into the
permanent generation, which no automatic pass walks; it is O(1), so it runs every second.
Cyclic garbage among frozen objects (a connection that ended) waits for the periodic full
pass, which unfreezes, collects and freezes again."""

from __future__ import annotations

import asyncio
import gc

FREEZE_EVERY = 1.0  # seconds
FULL_PASS_EVERY = 600.0  # seconds: one long pause per interval instead of many


def full_pass() -> int:
    """Everything back into the collector's view, one collection, frozen again."""
    gc.unfreeze()
    found = gc.collect()
    gc.freeze()
    return found


async def keep_heap_frozen(freeze_every: float = FREEZE_EVERY, full_every: float = FULL_PASS_EVERY) -> None:
    loop = asyncio.get_running_loop()
    next_full = loop.time() + full_every
    while True:
        await asyncio.sleep(freeze_every)
        if loop.time() >= next_full:
            full_pass()
            next_full = loop.time() + full_every
        else:
            gc.freeze()
