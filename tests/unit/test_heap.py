"""The GC policy: objects are frozen out of automatic passes, and the periodic full pass
still frees cyclic garbage that was frozen while alive."""

import asyncio
import gc
import json
import os
import platform
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

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


MMAPPED = r"""
import ctypes, json, sys
sys.path.insert(0, {root!r})
from rm_server.heap import fix_malloc_thresholds
applied = fix_malloc_thresholds() if sys.argv[1] == "fixed" else False

class Info(ctypes.Structure):  # struct mallinfo2 (glibc >= 2.33): hblks counts mmapped blocks
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
def mapped_by(size):
    before = libc.mallinfo2().hblks
    block = ctypes.create_string_buffer(size)
    return libc.mallinfo2().hblks - before
print(json.dumps({{"applied": applied, "read": mapped_by(300 * 1024)}}))
"""


def in_a_child(tmp_path, source: str, what: str):
    """`run(mode)`: the script `source` run in a fresh Python with no MALLOC_* settings, its
    JSON answer (malloc's state is the process's: a test must not share it)."""
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip(f"{what} is glibc's")
    script = tmp_path / "child.py"
    script.write_text(source.format(root=str(Path(__file__).resolve().parents[2])))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}

    def run(mode):
        out = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)
    return run


def test_malloc_thresholds_are_fixed(tmp_path):
    # A socket read's 256 KiB buffer (asyncio reads with recv(256 KiB)) comes from the heap,
    # not from an mmap + munmap per read as with glibc's default 128 KiB threshold.
    run = in_a_child(tmp_path, MMAPPED, "mallopt")
    assert run("fixed") == {"applied": True, "read": 0}
    assert run("default") == {"applied": False, "read": 1}  # what glibc does without it


def test_the_collector_runs_fewer_larger_young_passes_once_tuned():
    # rm-server serve tunes it before its loop starts (cli.py); the reason is in heap.py
    from rm_server.heap import THRESHOLDS, tune_collector

    before = gc.get_threshold()
    try:
        tune_collector()
        assert gc.get_threshold() == THRESHOLDS and THRESHOLDS[0] > before[0]
    finally:
        gc.set_threshold(*before)


RELEASED = r"""
import json, sys, threading
sys.path.insert(0, {root!r})
from rm_server.heap import fix_malloc_thresholds, release_free_memory
fix_malloc_thresholds()  # as rm-server serve runs: 16 MiB may stay free at a heap's top

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024

kept = []
def build():  # on a thread of its own, as the whole list's reader: its own malloc arena
    chunks = [bytearray(64 * 1024) for _ in range(640)]  # 40 MiB, each block touched
    kept.append(bytearray(64 * 1024))  # a live block above them: the heap's top cannot shrink
    chunks.clear()
t = threading.Thread(target=build)
t.start(); t.join()
before = rss_mb()
ran = release_free_memory() if sys.argv[1] == "release" else False
print(json.dumps({{"ran": ran, "freed_mb": before - rss_mb()}}))
"""


def test_release_free_memory_gives_back_free_pages_a_live_block_pins(tmp_path):
    # The full host list's build leaves its transient buffers free in its reader's arena
    # (store/hosts.py): without the trim the RSS keeps them.
    run = in_a_child(tmp_path, RELEASED, "malloc_trim")
    kept = run("keep")
    released = run("release")
    assert kept["ran"] is False and kept["freed_mb"] < 5  # what malloc keeps on its own
    assert released["ran"] is True and released["freed_mb"] > 30
