"""Group commit: many small writes from many agents share one transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")
R_contra = TypeVar("R_contra", contravariant=True)


class Waiter(Protocol[R_contra]):
    """What a batch resolves for each item: a submitter's future, or a callback (_Notify)."""

    def done(self) -> bool: ...

    def set_result(self, result: R_contra, /) -> None: ...

    def set_exception(self, exc: BaseException, /) -> None: ...


class GroupCommit(Generic[T, R]):
    """Items submitted while one write runs are written together by the next one.

    `write(items)` returns one result per item, in order. Each `submit` waits for its own
    result, so a caller that acknowledges after awaiting still acknowledges only what is
    stored — at fleet scale thousands of agents share a transaction instead of queueing
    for the writer one by one. A failed batch is split in halves and retried, so a poison
    item costs about log2(n) extra writes and fails alone."""

    def __init__(self, write: Callable[[list[T]], Awaitable[list[R]]], linger: float = 0.0) -> None:
        self._write = write
        # Seconds a batch waits for company before it is written. Each write is a hop to the
        # writer thread, and on a busy 2-core box every hop woke that thread and cost the
        # loop ~0.5 ms of wall time: for acks, fewer and larger batches are worth a few ms.
        self._linger = linger
        self._items: list[tuple[T, Waiter[R]]] = []
        self._task: asyncio.Task[None] | None = None

    def submit_nowait(self, item: T, on_done: Callable[[R | None, BaseException | None], None]) -> None:
        """Queue an item without a waiter: `on_done(result, error)` runs when its batch is written.

        For frames whose handler has nothing to do after the write but an event: no future
        and no coroutine wake-up per frame (19k schedule.acks arrive within a second of a
        fleet push). Batches are written one after another, so per submitter the callbacks
        run in submission order."""
        self._items.append((item, _Notify(on_done)))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    async def submit(self, item: T) -> R:
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._items.append((item, done))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        return await done

    async def _run(self) -> None:
        while self._items:
            if self._linger:
                await asyncio.sleep(self._linger)
            batch, self._items = self._items, []
            await self._commit(batch)

    async def _commit(self, batch: list[tuple[T, Waiter[R]]]) -> None:
        try:
            results = await self._write([item for item, _ in batch])
            if len(results) != len(batch):
                raise ValueError(f"group write returned {len(results)} results for {len(batch)} items")
        except Exception as exc:
            if len(batch) > 1:
                # One bad item must not fail everyone else's writes (the batch mixes hosts):
                # split and retry, so only the item that fails alone hears of it.
                half = len(batch) // 2
                await self._commit(batch[:half])
                await self._commit(batch[half:])
                return
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            return
        for (_, done), result in zip(batch, results):
            if not done.done():
                done.set_result(result)

    async def drain(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


class _Notify(Generic[R]):
    """Stands where a waiter's future would: the batch loop resolves both the same way."""

    __slots__ = ("fn", "fired")

    def __init__(self, fn: Callable[[R | None, BaseException | None], None]) -> None:
        self.fn = fn
        self.fired = False

    def done(self) -> bool:
        return self.fired

    def set_result(self, result: R) -> None:
        self.fired = True
        self.fn(result, None)

    def set_exception(self, exc: BaseException) -> None:
        self.fired = True
        self.fn(None, exc)
