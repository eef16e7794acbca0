"""Live queries (snapshot ls/diff, retention preview) for an agent another replica holds:
the question goes to that replica as a notification, its answer comes back as a row
(store.relay_bodies, through services/relay.py) and a notification naming it. A replica that
dies mid-question leaves the asker to its deadline: 504, as for a silent agent."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict

from rm_core.ids import new_id
from rm_server.errors import GatewayTimeout, HttpError
from rm_server.services.queries import QueryService, host_offline
from rm_server.services.relay import Relay
from rm_server.store import Store


class _Params(BaseModel):
    """A question's parameters as the asking replica validated and sent them."""

    model_config = ConfigDict(extra="allow")


class QueryRelay:
    def __init__(self, queries: QueryService, relay: Relay, store: Store) -> None:
        self.queries = queries
        self.relay = relay
        self.store = store
        self.waiting: dict[str, asyncio.Future[tuple[list[dict[str, Any]], dict[str, Any]]]] = {}
        relay.handlers["query"] = self._answer_here
        relay.handlers["query.done"] = self._answered
        queries.elsewhere = self.ask

    async def ask(self, host_id: str, kind: str, params: dict[str, Any], max_items: int,
                  timeout: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        if not self.relay.clustered or (await self.store.hosts.get(host_id)).status != "online":
            raise host_offline(host_id)
        query_id = new_id()
        future: asyncio.Future[tuple[list[dict[str, Any]], dict[str, Any]]] = \
            asyncio.get_running_loop().create_future()
        self.waiting[query_id] = future
        self.relay.send({"t": "query", "q": query_id, "host": host_id, "kind": kind, "params": params,
                         "max": max_items, "timeout": timeout, "reply": self.relay.replica_id})
        # the holder's own deadline answers first; this covers a holder that died meanwhile
        limit = timeout + 2 * self.queries.margin
        try:
            async with asyncio.timeout(limit):  # not wait_for: see rm_core/waiting.py
                return await future
        except TimeoutError:
            raise GatewayTimeout(f"no replica answered {kind} for host {host_id} within {limit:.0f} s",
                                 {"kind": kind}) from None
        finally:
            self.waiting.pop(query_id, None)

    async def _answer_here(self, message: dict[str, Any]) -> None:
        host_id = str(message["host"])
        if self.queries.hub.get(host_id) is None:
            return  # another replica holds it (or nobody: the asker's deadline answers)
        reply: dict[str, Any] = {"t": "query.done", "to": message["reply"], "q": message["q"]}
        try:
            items, info = await self.queries.ask(host_id, str(message["kind"]), _Params(**message["params"]),
                                                 max_items=int(message["max"]), timeout=float(message["timeout"]))
            reply.update(items=items, info=info)
        except HttpError as exc:
            reply["error"] = {"status": exc.status, "code": exc.code, "message": exc.message, "details": exc.details}
        self.relay.send(reply)

    def _answered(self, message: dict[str, Any]) -> None:
        future = self.waiting.get(str(message["q"]))
        if future is None or future.done():
            return
        error = message.get("error")
        if error is None:
            future.set_result((message["items"], message["info"]))
            return
        exc = HttpError(str(error["message"]), error.get("details") or {}, code=str(error["code"]))
        exc.status = int(error["status"])
        future.set_exception(exc)
