"""Live queries to agents: send `query`, gather the `query.result` chunks, answer the REST
request. Pending queries are futures keyed by query id; each has a deadline, fails at once
when its agent's connection ends, and turns an agent's error code into an HTTP status."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_json

from rm_core import protocol as p
from rm_core import queries as q
from rm_core.ids import new_id
from rm_server.errors import (
    BadGateway, BadRequest, ConflictError, GatewayTimeout, HttpError, NotFoundError, TooManyRequests,
)
from rm_server.ws.agent_hub import AgentConnection, AgentHub

log = logging.getLogger("rm_server.queries")

# agent error code -> the API error the operator gets (anything else: 502 with the agent's code)
_AGENT_ERRORS: dict[str, type[HttpError]] = {
    q.ERR_SNAPSHOT_NOT_FOUND: NotFoundError,
    q.ERR_PATH_NOT_FOUND: NotFoundError,
    q.ERR_NOT_A_DIRECTORY: BadRequest,
    q.ERR_INVALID_PARAMS: BadRequest,
    q.ERR_EMPTY_RETENTION: BadRequest,
    q.ERR_NO_REPOSITORY: ConflictError,
    q.ERR_BUSY: TooManyRequests,
    q.ERR_TIMEOUT: GatewayTimeout,
}


def agent_too_old(host_id: str) -> ConflictError:
    return ConflictError(
        f"the agent of host {host_id} is too old to answer live queries (browse, diff, retention preview need "
        f"an agent that announces the {q.QUERY_FEATURE!r} feature); upgrade rm-agent on that host",
        {"needed_feature": q.QUERY_FEATURE}, code="agent_too_old",
    )


def host_offline(host_id: str) -> ConflictError:
    return ConflictError(f"host {host_id} is offline: its agent must be connected to look inside its repository",
                         {"host_id": host_id}, code="host_offline")


@dataclass
class _Pending:
    conn: AgentConnection
    kind: str
    envelope_id: str
    max_items: int
    future: asyncio.Future[tuple[list[dict[str, Any]], dict[str, Any]]]
    items: list[dict[str, Any]] = field(default_factory=list)
    next_seq: int = 0
    size: int = 0  # bytes of items and info received, as JSON


class QueryService:
    default_timeout = 30.0
    # the agent's own deadline fires first and answers agent_timeout; this covers a silent agent
    margin = 5.0
    max_per_host = 8

    def __init__(self, hub: AgentHub) -> None:
        self.hub = hub
        self.pending: dict[str, _Pending] = {}
        # the replica that holds the agent answers instead (services/query_relay.py, PostgreSQL)
        self.elsewhere: Callable[[str, str, dict[str, Any], int, float],
                                 Awaitable[tuple[list[dict[str, Any]], dict[str, Any]]]] | None = None

    def register(self, handlers: dict[str, Any]) -> None:
        """Join the agent-message table (services/agent_messages.py) and hear of closed sockets."""
        handlers["query.result"] = self.on_result
        handlers["query.error"] = self.on_error
        handlers["error"] = self.on_agent_error
        self.hub.closed_listeners.append(self.connection_closed)

    async def ask(self, host_id: str, kind: str, params: BaseModel, *, max_items: int = 100_000,
                  timeout: float | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Ask the host's agent; returns (items, info) or raises the API error that explains why not."""
        conn = self.hub.get(host_id)
        if conn is None:
            if self.elsewhere is not None:
                return await self.elsewhere(host_id, kind, params.model_dump(mode="json", exclude_none=True),
                                            max_items, timeout or self.default_timeout)
            raise host_offline(host_id)
        if q.QUERY_FEATURE not in conn.features:
            raise agent_too_old(host_id)
        if sum(1 for pend in self.pending.values() if pend.conn is conn) >= self.max_per_host:
            raise TooManyRequests(f"{self.max_per_host} queries to host {host_id} are already running; "
                                  "try again when they finish", code="too_many_queries")
        timeout = timeout or self.default_timeout
        query = p.Query(query_id=new_id(), kind=kind, params=params.model_dump(mode="json", exclude_none=True),
                        timeout_seconds=timeout)
        env = p.message(query)
        pend = _Pending(conn, kind, env.id, max_items, asyncio.get_running_loop().create_future())
        self.pending[query.query_id] = pend
        try:
            if not conn.send_frame(p.encode(env)):
                raise host_offline(host_id)
            async with asyncio.timeout(timeout + self.margin):  # not wait_for: see rm_core/waiting.py
                return await asyncio.shield(pend.future)
        except TimeoutError:
            raise GatewayTimeout(f"the agent of host {host_id} did not answer {kind} within {timeout + self.margin:.0f} s",
                                 {"kind": kind}) from None
        finally:
            self.pending.pop(query.query_id, None)
            if not pend.future.done():
                pend.future.cancel()

    # ------------------------------------------------------------ from agents

    def _mine(self, conn: AgentConnection, query_id: str) -> _Pending | None:
        """The pending query, if this very connection was asked it (no host answers another's)."""
        pend = self.pending.get(query_id)
        if pend is None or pend.conn is not conn or pend.future.done():
            return None
        return pend

    async def on_result(self, conn: AgentConnection, env: p.Envelope) -> None:
        res: p.QueryResult = env.payload
        pend = self._mine(conn, res.query_id)
        if pend is None:
            return  # late (after the deadline) or not ours: nothing waits for it
        if res.seq != pend.next_seq:
            self._fail(pend, BadGateway(f"agent sent chunk {res.seq} of {pend.kind} where {pend.next_seq} was due",
                                        code="bad_agent_reply"))
            return
        pend.next_seq += 1
        pend.size += len(to_json(res.items)) + (len(to_json(res.info)) if res.info else 0)
        if pend.size > q.MAX_ANSWER_BYTES:
            self._fail(pend, BadGateway(f"agent's answer to {pend.kind} is larger than "
                                        f"{q.MAX_ANSWER_BYTES // (1024 * 1024)} MiB", code="bad_agent_reply"))
            return
        pend.items.extend(res.items)
        if len(pend.items) > pend.max_items:
            self._fail(pend, BadGateway(f"agent sent more than {pend.max_items} items for {pend.kind}",
                                        code="bad_agent_reply"))
            return
        if res.done:
            pend.future.set_result((pend.items, res.info))

    async def on_error(self, conn: AgentConnection, env: p.Envelope) -> None:
        err: p.QueryError = env.payload
        pend = self._mine(conn, err.query_id)
        if pend is None:
            return
        if err.code == q.ERR_UNKNOWN_KIND:
            self._fail(pend, agent_too_old(conn.host_id))
            return
        cls = _AGENT_ERRORS.get(err.code, BadGateway)
        message = err.message or f"the agent could not answer {pend.kind} ({err.code})"
        self._fail(pend, cls(message, {"kind": pend.kind}, code=err.code))

    async def on_agent_error(self, conn: AgentConnection, env: p.Envelope) -> None:
        """`error` in reply to a frame: for a query, the agent did not understand it."""
        err: p.Error = env.payload
        for pend in list(self.pending.values()):
            if pend.conn is conn and env.ref == pend.envelope_id and not pend.future.done():
                self._fail(pend, agent_too_old(conn.host_id))
                return
        log.info("agent %s reported error %s: %s", conn.host_id, err.code, err.message)

    def connection_closed(self, conn: AgentConnection) -> None:
        for pend in list(self.pending.values()):
            if pend.conn is conn and not pend.future.done():
                self._fail(pend, host_offline(conn.host_id))

    @staticmethod
    def _fail(pend: _Pending, exc: HttpError) -> None:
        if not pend.future.done():
            pend.future.set_exception(exc)
