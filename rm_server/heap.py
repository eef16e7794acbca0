"""Keep the cyclic garbage collector's full passes small at fleet scale, and glibc's malloc
from keeping what the server no longer uses (the fixed thresholds and a trim, at the end).

Each agent connection holds a few hundred long-lived objects (socket, protocol, parser,
request, response). Python's full GC pass walks every one of them; at 5,000 agents py-spy
and gc.callbacks showed 11 full passes of 0.6-0.9 s in 90 s (loop stalls, most of the
server's CPU), at 19,000 each would take seconds. Freezing moves what exists now into the
permanent generation, which no automatic pass walks; it is O(1), so it runs ten times a second.
Cyclic garbage among frozen objects (a connection that ended) waits for the periodic full
pass, which unfreezes, collects and freezes again."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import platform
import sys

# glibc's malloc: allocations from this size on get their own mapping (glibc's own ceiling).
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 16 * 1024 * 1024  # free memory above this at the heap's top goes back to the OS
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)

FREEZE_EVERY = 0.1  # seconds: young generations stay small (see tune_collector)
# The automatic passes, once the heap is frozen: measured during a 19k fleet push with the
# default (700, 10, 10), gen-1 passes of 9-16 ms ran every ~150 ms and a gen-2 pass took
# 47 ms (all collecting nothing: a push's objects die by reference counting); they were the
# loop's longest stalls. Fewer, larger gen-0 passes over what a tenth of a second made:
# each <= 9 ms, and the restart storm's server CPU went from ~15 to ~11 s.
THRESHOLDS = (3000, 50, 1000)
# A full pass stalls the loop for its whole length: at 19k agents 1.5-1.7 s (1.5M frozen
# objects), and it found 7-288 objects (three passes timed during a 19k bench, with
# connects, a push, log ingest and a restart storm between them). Four a day, not 144.
FULL_PASS_EVERY = 6 * 3600.0  # seconds


def tune_collector() -> None:
    """The thresholds above (rm-server serve calls this once, before its loop starts)."""
    gc.set_threshold(*THRESHOLDS)


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


def _glibc() -> ctypes.CDLL | None:
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


_LIBC = _glibc()


def release_free_memory() -> bool:
    """Give back to the OS the pages malloc holds free, in every arena (glibc's public
    malloc_trim(0), which also returns free pages between live chunks; the trim threshold
    only ever returns a heap's top). For after a large transient build on a thread of its
    own: the 19k-host list left ~45 MB free in its reader's arena, counted in the RSS until
    the next build, while other threads' arenas grew (docs/benchmarks.md). ~2.5 ms; the
    next build faults its pages again (~15 ms at 19k). True when it ran."""
    if _LIBC is None:
        return False
    _LIBC.malloc_trim(0)  # its result says whether pages went back, not whether it ran
    return True


def fix_malloc_thresholds() -> bool:
    """Fixed malloc thresholds instead of glibc's sliding ones (mallopt; glibc only).

    Every socket read (asyncio: `recv(256 KiB)`, then shrunk to what arrived) is above
    glibc's default 128 KiB mmap threshold, so each read of a 150-byte ack was an mmap, a
    shrink and an munmap: ~70 us on this box instead of ~5, and a page per small read. With
    the mmap threshold at 32 MiB reads come from the heap; 16 MiB free at the heap's top
    stay for reuse, so the 7-9 MB host list body is built without faulting fresh pages (a
    512 KiB threshold made each 19k build ~40 ms slower). An administrator's MALLOC_*_
    environment settings win. True when applied."""
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    if _LIBC is None:
        return False
    mallopt = _LIBC.mallopt
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
