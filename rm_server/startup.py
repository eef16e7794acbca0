"""What `rm-server serve` does before it serves: bind the listening sockets first, and turn
any failure on the way into one line on stderr and exit status 1 (issue 18 items 2, 7).

An admin (or systemd) reads the last line of a failed start; a traceback buries it, and a
process that failed half-way must not stay alive serving nothing (a store that opened its
connection threads before the failure would keep the interpreter from exiting)."""

from __future__ import annotations

import os
import socket
import sys
from typing import NoReturn

BACKLOG = 4096


def database_error(exc: BaseException) -> BaseException | None:
    """The database driver's own error behind `exc`, if any (whatever wraps it): every DB-API
    driver (PEP 249: sqlite3, psycopg) derives its errors from DatabaseError or InterfaceError."""
    seen: BaseException | None = exc
    while seen is not None:
        if any(cls.__name__ in ("DatabaseError", "InterfaceError") for cls in type(seen).__mro__):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def why(exc: BaseException) -> str:
    """The reason in a few words: the database's own text when it refused, the system's text
    and the file for an OSError, else the exception's text."""
    if (db := database_error(exc)) is not None:
        return " ".join(str(db).split()) or type(db).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    text = " ".join(str(exc).split())  # one line, whatever the message held
    if not text:
        return type(exc).__name__
    # Our own errors say what is wrong; a bare KeyError('x') or TypeError needs its name.
    builtin = type(exc).__module__ == "builtins" and not isinstance(exc, (ValueError, SystemExit))
    return f"{type(exc).__name__}: {text}" if builtin else text


def fail(what: str, exc: BaseException | str) -> NoReturn:
    """`rm-server: <what>: <why>` on stderr, exit 1 at once. os._exit, not sys.exit: a
    half-started store or worker thread must not keep a process alive that serves nothing."""
    reason = exc if isinstance(exc, str) else why(exc)
    sys.stdout.flush()
    sys.stderr.write(f"rm-server: {what}: {reason}\n")
    sys.stderr.flush()
    os._exit(1)


def listen_sockets(host: str, port: int, *, reuse_port: bool = False, listen: bool = True) -> list[socket.socket]:
    """Bound, listening sockets for every address `host` names (as asyncio's create_server
    binds them), all on one port: port 0 takes whatever the first address gets.

    `reuse_port`: replicas on one machine share the port (SO_REUSEPORT; the kernel spreads
    connections over the listening ones). `listen=False` only reserves the port: a socket
    that never listens is handed no connection (the parent of `--workers`)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    socks: list[socket.socket] = []
    try:
        for family, type_, proto, _, addr in dict.fromkeys(infos):
            sock = socket.socket(family, type_, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(socks) > 1:
                addr = (addr[0], socks[0].getsockname()[1], *addr[2:])
            sock.bind(addr)
            if listen:
                sock.listen(BACKLOG)
            sock.setblocking(False)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks
