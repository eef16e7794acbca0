"""What the agent does with each message the server sends: one table, message type → handler.

A type this agent does not know is answered with `error{unknown_type}` and otherwise ignored
(a newer server may send more); a handler that raises is logged and the connection stays up.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Protocol

from pydantic import ValidationError

from rm_agent.jobs import Job
from rm_agent.outbox import Outbox
from rm_agent.queries import QueryRunner
from rm_agent.runner import Runner
from rm_agent.scheduler import Scheduler
from rm_agent.secrets import SecretStore
from rm_core import protocol as p

log = logging.getLogger("rm_agent")


class AgentParts(Protocol):
    """The parts of the agent a handler may touch (rm_agent.agent.Agent has them)."""

    outbox: Outbox
    runner: Runner
    scheduler: Scheduler
    secret_store: SecretStore
    creds: dict[str, p.RepoCredentials]
    bandwidth: p.Bandwidth
    queries: QueryRunner

    def send_payload(self, payload: p.Payload, ref: str | None = None) -> bool: ...

    def adopt_server_urls(self, urls: list[str]) -> None: ...


def on_hello_ok(agent: AgentParts, payload: p.HelloOk) -> None:
    """Only expected once, during the handshake (the session reads it there)."""


def on_error(agent: AgentParts, payload: p.Error) -> None:
    log.warning("server error %s: %s", payload.code, payload.message)


def on_schedule_set(agent: AgentParts, payload: p.ScheduleSet) -> None:
    agent.scheduler.apply(payload)
    log.info("applied schedule version %d (%d schedules)", payload.version, len(payload.schedules))
    agent.send_payload(p.ScheduleAck(version=payload.version))


def on_config_update(agent: AgentParts, payload: p.ConfigUpdate) -> None:
    creds = {c.slot.value: c for c in payload.credentials}
    if creds != agent.creds:
        agent.secret_store.save(creds)
        agent.creds = creds
    agent.bandwidth = payload.bandwidth
    agent.outbox.put("bandwidth", payload.bandwidth.model_dump(mode="json"))
    if payload.server_urls:
        agent.adopt_server_urls(payload.server_urls)


def on_command_run(agent: AgentParts, payload: p.CommandRun) -> None:
    if payload.job_id in agent.runner.jobs or agent.outbox.known_job(payload.job_id):
        log.info("job %s already known; ignoring repeated command.run", payload.job_id)
        return
    params = dict(payload.params)
    group = params.get("source_group") or {}
    agent.runner.submit(Job(payload.job_id, payload.kind, params, source_group_id=group.get("id")))


def on_command_cancel(agent: AgentParts, payload: p.CommandCancel) -> None:
    if not agent.runner.cancel(payload.job_id):
        log.info("cancel for job %s which is not running here", payload.job_id)


def on_ack(agent: AgentParts, payload: p.Ack) -> None:
    agent.outbox.ack(payload.job_id, payload.upto_seq)


def on_query(agent: AgentParts, payload: p.Query) -> None:
    """A live question about the repository (browse, diff, retention preview): rm_agent/queries.py."""
    agent.queries.handle(payload)


HANDLERS: dict[str, Callable[[AgentParts, Any], None]] = {
    "hello.ok": on_hello_ok,
    "error": on_error,
    "schedule.set": on_schedule_set,
    "config.update": on_config_update,
    "command.run": on_command_run,
    "command.cancel": on_command_cancel,
    "ack": on_ack,
    "query": on_query,
}


def dispatch(agent: AgentParts, raw: str) -> None:
    """Parse one frame from the server and run its handler."""
    try:
        env = p.parse_server_message(raw)
    except p.UnknownMessageType as exc:
        # a newer server may send more; answering lets it tell the operator at once, not at a deadline
        log.warning("ignoring unknown message type %r from the server", exc.type)
        agent.send_payload(p.Error(code="unknown_type", message=f"this agent does not handle {exc.type!r}"),
                           ref=exc.envelope.id)
        return
    except ValidationError as exc:
        log.warning("ignoring malformed message from the server: %s", str(exc)[:300])
        return
    handler = HANDLERS.get(env.type)
    if handler is None:
        return
    try:
        handler(agent, env.payload)
    except Exception:
        log.exception("handling %s failed", env.type)
