"""The server's event loop, which serves operators before agents.

asyncio asks epoll for every ready socket and runs all their callbacks before it asks
again. During a fleet push a thousand or more agent sockets are ready at once, and each
agent frame costs 60-80 µs. An operator's request needs about four loop turns: the
request, then each database round trip, whose result comes back through the loop's
self-pipe, then the reply. Each of those turns waited behind ~100 ms of agent frames.

Here an agent's socket, once it is a WebSocket, moves to a second epoll nested in the
first. Each loop turn takes every ready socket of the first epoll (operators, new
connections, the self-pipe) and at most BULK_PER_TURN ready agent sockets. Agents lose
nothing: a socket that stays ready is still reported on later turns, in arrival order,
and the nested epoll keeps the loop awake while any are left.
"""

from __future__ import annotations

import asyncio
import math
import select
import selectors
import socket

# ~64 agent frames are ~5 ms of work: the longest an operator's next step waits behind them
BULK_PER_TURN = 64


def _poller_events(events: int) -> int:
    return ((select.EPOLLIN if events & selectors.EVENT_READ else 0)
            | (select.EPOLLOUT if events & selectors.EVENT_WRITE else 0))


class OperatorsFirstSelector(selectors.EpollSelector):
    """An epoll selector with a second, nested epoll for bulk (agent) sockets."""

    def __init__(self, bulk_per_turn: int = BULK_PER_TURN) -> None:
        super().__init__()
        self.bulk_per_turn = bulk_per_turn
        self._bulk = select.epoll()
        self._bulk_fds: set[int] = set()
        self._selector.register(self._bulk.fileno(), select.EPOLLIN)

    def demote(self, fd: int) -> None:
        """Serve this socket from the bulk epoll from now on (also when it is registered
        again after its reading was paused), until promote()."""
        if fd in self._bulk_fds:
            return
        self._bulk_fds.add(fd)
        key = self._fd_to_key.get(fd)
        if key is not None:
            self._selector.unregister(fd)
            self._bulk.register(fd, _poller_events(key.events))

    def promote(self, fd: int) -> None:
        """Back to the first epoll: the connection ended, and its number may come back."""
        if fd not in self._bulk_fds:
            return
        self._bulk_fds.discard(fd)
        key = self._fd_to_key.get(fd)
        if key is not None:
            try:
                self._bulk.unregister(fd)
            except OSError:  # closed: the kernel dropped it already
                return
            self._selector.register(fd, _poller_events(key.events))

    def register(self, fileobj, events, data=None):
        fd = self._fileobj_lookup(fileobj)
        if fd not in self._bulk_fds:
            return super().register(fileobj, events, data)
        key = selectors._BaseSelectorImpl.register(self, fileobj, events, data)
        try:
            self._bulk.register(fd, _poller_events(events))
        except BaseException:
            selectors._BaseSelectorImpl.unregister(self, fileobj)
            raise
        return key

    def unregister(self, fileobj):
        fd = self._fileobj_lookup(fileobj)
        if fd not in self._bulk_fds:
            return super().unregister(fileobj)
        key = selectors._BaseSelectorImpl.unregister(self, fileobj)
        try:
            self._bulk.unregister(fd)
        except OSError:  # closed since it was registered
            pass
        return key

    def modify(self, fileobj, events, data=None):
        fd = self._fileobj_lookup(fileobj)
        if fd not in self._bulk_fds:
            return super().modify(fileobj, events, data)
        try:
            key = self._fd_to_key[fd]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None
        if events != key.events:
            self._bulk.modify(fd, _poller_events(events))
        if events != key.events or data != key.data:
            key = key._replace(events=events, data=data)
            self._fd_to_key[fd] = key
        return key

    def select(self, timeout=None):
        if timeout is None:
            timeout = -1
        elif timeout <= 0:
            timeout = 0
        else:  # epoll_wait() counts milliseconds: round up to wait at least `timeout`
            timeout = math.ceil(timeout * 1e3) * 1e-3
        bulk_fd = self._bulk.fileno()
        ready = []
        try:
            events = self._selector.poll(timeout, len(self._fd_to_key) + 1)
            if any(fd == bulk_fd for fd, _ in events):
                events += self._bulk.poll(0, self.bulk_per_turn)
        except InterruptedError:
            return ready
        for fd, event in events:
            if fd == bulk_fd:
                continue
            key = self._key_from_fd(fd)
            if key:
                mask = ((selectors.EVENT_WRITE if event & ~select.EPOLLIN else 0)
                        | (selectors.EVENT_READ if event & ~select.EPOLLOUT else 0))
                ready.append((key, mask & key.events))
        return ready

    def close(self) -> None:
        self._bulk.close()
        super().close()


class ServerLoop(asyncio.SelectorEventLoop):
    """The loop `rm-server serve` runs on (cli.py)."""

    def __init__(self) -> None:
        self.selector = OperatorsFirstSelector()
        super().__init__(self.selector)


def _selector() -> OperatorsFirstSelector | None:
    loop = asyncio.get_running_loop()
    return loop.selector if isinstance(loop, ServerLoop) else None


def serve_after_operators(sock: socket.socket | None) -> int | None:
    """Move an agent's socket to the bulk epoll; returns its number for serve_first().
    A no-op on any other loop (e.g. tests that run the app on pytest's loop)."""
    selector = _selector()
    if selector is None or sock is None or sock.fileno() < 0:
        return None
    fd = sock.fileno()
    selector.demote(fd)
    return fd


def serve_first(fd: int | None) -> None:
    """The agent's connection ended: its socket number belongs to the first epoll again."""
    selector = _selector()
    if selector is not None and fd is not None:
        selector.promote(fd)
