"""rm_core.waiting.wait_event: a cancellation that arrives as the event is set still ends the
loop around it. asyncio.wait_for before Python 3.12 swallowed it (CPython gh-86296): the
alert dispatcher's channel task then never ended and removing a channel hung a test run."""

import asyncio
import sys

import pytest

from rm_core.waiting import wait_event


async def wait_for_event(event: asyncio.Event, timeout: float) -> bool:  # the old way
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except asyncio.TimeoutError:
        pass
    return event.is_set()


async def ends_when_cancelled(waiter) -> bool:
    """A loop like the dispatcher's; the event is set and the task cancelled in one turn."""
    event = asyncio.Event()

    async def loop() -> None:
        while True:
            event.clear()
            await waiter(event, 30)

    task = asyncio.ensure_future(loop())
    for _ in range(3):  # into wait_for / wait_event, and its inner wait
        await asyncio.sleep(0)
    event.set()
    task.cancel()
    await asyncio.wait({task}, timeout=2)
    ended = task.done()
    if not ended:  # the old way: stop it for good so the test run goes on
        event.set()
        task.cancel()
        await asyncio.wait({task}, timeout=2)
    return ended


async def test_a_cancel_as_the_event_is_set_ends_the_loop() -> None:
    assert await ends_when_cancelled(wait_event)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="fixed in CPython 3.12")
async def test_the_old_way_lost_that_cancel_on_this_python() -> None:
    """The race is real on the Pythons we ship for below 3.12 (what the test above guards)."""
    assert not await ends_when_cancelled(wait_for_event)


async def test_timeout_and_set() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, 5) is True
    assert await wait_event(event, 0) is True  # already set


async def timeout_block(event: asyncio.Event, timeout: float) -> bool:  # the server's way (3.11+)
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass
    return event.is_set()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is 3.11+ (the server's Pythons)")
async def test_asyncio_timeout_keeps_that_cancel() -> None:
    assert await ends_when_cancelled(timeout_block)


def test_the_server_never_uses_wait_for() -> None:
    """rm_server runs on 3.11, where wait_for can drop a cancel (above): a task that loops
    then never ends, and whoever cancels it and awaits it hangs (seen: removing an alert
    channel right after its digest went out). The server bounds waits with asyncio.timeout."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2] / "rm_server"
    found = [f"{path.relative_to(root.parent)}:{n}" for path in sorted(root.rglob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1) if "wait_for(" in line]
    assert not found, found
