"""The GC policy: objects are frozen out of automatic passes, and the periodic full pass
still frees cyclic garbage that was frozen while alive."""

import asyncio
import gc
import weakref

from rm_server.heap import full_pass, keep_heap_frozen


class Node:
    pass


async def test_frozen_cycles_are_freed_by_the_full_pass_and_new_objects_get_frozen():
    try:
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle: only the cyclic collector can free it
        gone = weakref.ref(a)
        gc.freeze()
        del a, b
        gc.collect()
        assert gone() is not None  # frozen: automatic and manual passes skip it
        full_pass()
        assert gone() is None

        frozen_before = gc.get_freeze_count()
        keep = [Node() for _ in range(1000)]
        task = asyncio.ensure_future(keep_heap_frozen(freeze_every=0.001, full_every=3600))
        while gc.get_freeze_count() < frozen_before + 1000:
            await asyncio.sleep(0.001)  # the policy's own tick: nothing else to wait on
        task.cancel()
        assert keep
    finally:
        gc.unfreeze()
