"""The application factory: the CLI and the tests build the server the same way."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from rm_core.alerts import AlertEvent, AlertSubject
from rm_server.api import (
    admin, anomalies as anomaly_routes, auth, channels, drills, rotations as rotation_routes, enrollment, fleet, hosts, install, jobs, operators, reference, root, schedules,
    snapshots,
)
from rm_server.config import ServerConfig
from rm_server.keys import (
    AGENTS, AGENT_MESSAGES, ALERTS, ANOMALIES, CHANNELS, CONFIG, COPIES, CREDENTIALS, DRILLS, ENROLLMENT, EVENTS,
    FLEET, FORWARDING, HOSTS, HOST_METRICS, INSTALLER, JOBS, LIMITER, MAINTAINER, MASTER_KEY, METRICS, METRICS_TOKEN,
    NOTIFIER, OPERATORS, QUERIES, RELAY, ROTATIONS, SCHEDULES, SIGN_INS, STORE,
)
from rm_server.heap import keep_heap_frozen
from rm_server.host_metrics import HostMetricsCache
from rm_server.host_metrics import render as render_host_metrics
from rm_server.login_limiter import LoginLimiter
from rm_server.metrics import Metrics, watch_loop_lag
from rm_server.middleware import auth_middleware, error_middleware
from rm_server.security import MasterKey, hash_token, new_token, write_private
from rm_server.services.agent_messages import AgentMessages
from rm_server.services.anomalies import AnomalyService
from rm_server.services.rotations import RotationService
from rm_server.services.alerts import Alerts
from rm_server.services.channels import ChannelService
from rm_server.services.event_forwarding import EventForwarding
from rm_server.services.copies import CopyService
from rm_server.services.credentials import CredentialService
from rm_server.services.drills import DrillTicker
from rm_server.services.enrollment import EnrollmentService
from rm_server.services.fleet import FleetService
from rm_server.services.hosts import HostService
from rm_server.services.jobs import JobService
from rm_server.services.maintenance import Maintainer
from rm_server.services.notify import Notifier
from rm_server.services.operators import BootstrapToken, OperatorService
from rm_server.services.queries import QueryService
from rm_server.services.query_relay import QueryRelay
from rm_server.services.relay import Relay, log_pages
from rm_server.services.schedules import ScheduleService
from rm_server.services.sign_ins import FailedSignIns
from rm_server.store import Store
from rm_server.ws.agent_hub import AgentHub
from rm_server.ws.agents import agent_ws
from rm_server.ws.event_hub import EventHub
from rm_server.ws.events import events_ws

log = logging.getLogger("rm_server")


def create_app(config: ServerConfig) -> web.Application:
    # A request line up to 128 KiB: the longest URL the API document allows (two 4096-character
    # query values, percent-encoded) stays below it, so its answer is the JSON envelope and not
    # the HTTP parser's plain-text 400. Bounded per request, like the body.
    app = web.Application(middlewares=[error_middleware, auth_middleware], client_max_size=config.max_body_bytes,
                          handler_args={"max_line_size": 128 * 1024})
    app[CONFIG] = config
    app[METRICS] = Metrics()
    app[EVENTS] = EventHub(config.clock, config.operator_queue_size)
    app[AGENTS] = AgentHub()
    app[LIMITER] = LoginLimiter(config.login_failures_allowed, config.login_window_seconds)
    install.setup(app)
    for module in (root, install, auth, operators, enrollment, hosts, jobs, schedules, admin, fleet, reference,
                   snapshots, drills, channels, anomaly_routes, rotation_routes):
        app.router.add_routes(module.routes)
    app.router.add_get("/api/v1/agent/ws", agent_ws)
    app.router.add_get("/api/v1/events", events_ws)
    app.on_shutdown.append(_close_sockets)
    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(_services_ctx)
    app.cleanup_ctx.append(_background_ctx)
    return app


class WrongMasterKey(RuntimeError):
    """This replica's master key is not the one the database's secrets are sealed with."""


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG]
    cfg.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_file = cfg.master_key_file or cfg.data_dir / "master.key"
    master = app[MASTER_KEY] = MasterKey.load_or_create(key_file)
    store = await Store.open(cfg.database, cfg.clock, application_name=f"rm-server {os.getpid()}")
    try:
        # The first replica (or the only server) records which key seals the secrets; any other
        # with a different key refuses to start before it seals something the rest cannot open.
        check = await store.settings.put_if_absent("master_key_check", master.check_value())
        if not master.opens(check):
            raise WrongMasterKey(
                f"the master key in {key_file} is not the one this database's secrets are sealed with; "
                "give every replica the same file (--master-key-file, copied from the first replica's data dir)")
        app[METRICS_TOKEN] = await _metrics_token(store, master, cfg.data_dir / "metrics-token")
    except BaseException:
        await store.close()
        raise
    app[STORE] = store
    store.audit_listeners.append(lambda entry: app[EVENTS].publish("audit.appended", entry))
    yield
    await store.close()


async def _metrics_token(store: Store, master: MasterKey, path: Path) -> str:
    """The bearer token a Prometheus scraper reads from this 0600 file (bearer_token_file):
    one for every replica of a database (sealed in it), so one scrape config fits them all."""
    token = path.read_text().strip() if path.exists() else ""
    sealed = await store.settings.put_if_absent("metrics_token", master.seal((token or new_token("rmm")).encode(),
                                                                                 "metrics-token").hex())
    shared = master.open(bytes.fromhex(sealed), "metrics-token").decode()
    if shared != token:
        write_private(path, (shared + "\n").encode())
    return shared


async def _bootstrap_token(store: Store, path: Path) -> BootstrapToken | None:
    """With no operator yet, mint a one-time token that creates the first admin. Replicas
    share one (its hash is in the database); the file and the log of the replica that minted
    it show it."""
    if await store.operators.count():
        path.unlink(missing_ok=True)  # left by a server stopped before its first admin was made
        return None
    token = path.read_text().strip() if path.exists() else ""
    candidate = token or new_token("rmb")
    stored = await store.settings.put_if_absent("bootstrap_token_hash", hash_token(candidate))
    if stored != hash_token(candidate):
        log.warning("no operator exists yet; another replica minted the bootstrap token (see its log or data dir)")
        return BootstrapToken(stored, path)
    if not token:
        write_private(path, (candidate + "\n").encode())
    log.warning("no operator exists yet; bootstrap token (also in %s): %s", path, candidate)
    return BootstrapToken(stored, path)


async def _services_ctx(app: web.Application) -> AsyncIterator[None]:
    """One service per domain, each handed the collaborators it uses."""
    cfg, store, hub, events = app[CONFIG], app[STORE], app[AGENTS], app[EVENTS]
    alerts = app[ALERTS] = Alerts(store, app[MASTER_KEY], cfg.clock, group_wait=cfg.alert_group_wait,
                                  send_timeout=cfg.alert_send_timeout, retry_base=cfg.alert_retry_base,
                                  allow_link_local=cfg.allow_link_local_alerts, server_url=lambda: cfg.public_url)
    await alerts.load()
    app[CHANNELS] = ChannelService(store, alerts, app[MASTER_KEY], cfg.allow_link_local_alerts)
    notifier = app[NOTIFIER] = Notifier(store, cfg.clock, alerts, allow_link_local=cfg.allow_link_local_alerts,
                                        offline_after=cfg.alert_offline_after)
    sign_ins = app[SIGN_INS] = FailedSignIns(store, cfg.sign_in_audit_per_window, cfg.sign_in_audit_window_seconds)
    app[OPERATORS] = OperatorService(store, sign_ins, timedelta(hours=cfg.session_ttl_hours),
                                     await _bootstrap_token(store, cfg.data_dir / "bootstrap-token"))
    hosts = app[HOSTS] = HostService(store, hub, events, cfg.clock, cfg.offline_after)
    jobs = app[JOBS] = JobService(store, hub, events, notifier, count_outcome=app[METRICS].job_changed)
    app[HOST_METRICS] = HostMetricsCache(lambda: store.host_metrics.render(render_host_metrics),
                                         cfg.host_metrics_ttl)
    credentials = app[CREDENTIALS] = CredentialService(store, hub, app[MASTER_KEY], jobs, agent_urls=cfg.agent_urls)
    app[ENROLLMENT] = EnrollmentService(store, credentials, app[INSTALLER], hosts)
    schedules = app[SCHEDULES] = ScheduleService(store, hub, events, cfg.clock)
    metrics = app[METRICS]
    messages = app[AGENT_MESSAGES] = AgentMessages(store, events, cfg.clock, hosts, jobs, schedules, credentials)
    app[FLEET] = FleetService(store, hub, events, schedules, lambda: metrics.lag.last,
                              acks_received=lambda: messages.acks_received,
                              operators_waiting=lambda: metrics.in_flight)
    app[MAINTAINER] = Maintainer(store, cfg.clock, jobs, hosts, notifier)
    await credentials.rekey_fingerprints()
    jobs.credentials_of = credentials.repo_credentials  # a cross-host restore reads the source host's
    app[QUERIES] = QueryService(hub)
    app[QUERIES].register(messages.handlers)
    app[DRILLS] = DrillTicker(store, jobs, notifier.drill_overdue_changed, cfg.clock, hosts.changed)
    copy_table = store.copies
    copies = app[COPIES] = CopyService(store, copy_table, jobs, hosts, cfg.clock)
    credentials.copies = copy_table
    credentials.copy_changed.append(copies.refresh)
    schedules.groups_changed.append(copies.refresh)
    copies.register(messages)
    anomaly_table = store.anomalies
    anomalies = app[ANOMALIES] = AnomalyService(store, anomaly_table, hosts, events, notifier.backup_anomaly, cfg.clock)
    anomalies.register(messages)
    jobs.paused_groups = anomaly_table.paused_groups
    rotations = app[ROTATIONS] = RotationService(store, store.rotations, credentials, jobs, hub)
    rotations.register(messages)
    relay = app[RELAY] = Relay(store.coordination(), store)
    await _join_replicas(app, relay)
    if relay.coordination.leading:  # a fleet-wide duty, like its ticker
        await rotations.resume()  # rotations a stopped server left half way go on
    yield
    await relay.close()
    await sign_ins.close_window()
    await notifier.close()
    await alerts.close()
    await messages.close()


async def _join_replicas(app: web.Application, relay: Relay) -> None:
    """Hear the other replicas of this database (none with SQLite: services/relay.py), then
    mark offline the hosts no live replica holds (with SQLite: every host, nobody is connected yet)."""
    store, events = app[STORE], app[EVENTS]
    for service in (app[JOBS], app[FLEET], app[CREDENTIALS], app[HOSTS]):
        service.register(relay)
    QueryRelay(app[QUERIES], relay, store)
    if relay.clustered:
        _alerts_to_the_leader(app[ALERTS], relay)
        limiter = app[LIMITER]
        limiter.on_failure = lambda keys: relay.send({"t": "login.failed", "keys": keys})
        relay.handlers["login.failed"] = lambda m: limiter.failed_elsewhere([str(k) for k in m["keys"]])
        forwarding = app[FORWARDING] = EventForwarding(events, relay)  # only while someone elsewhere watches
        events.forward_log = lambda job_id, seq: relay.send({"t": "log", "job": job_id, "seq": seq})
        relay.handlers["log"] = lambda m: events.catch_up(str(m["job"]), log_pages(store))
    await relay.start()
    if relay.clustered:
        forwarding.start()
    await relay.coordination.lead()  # the first replica leads from its start; the others learn who does
    await store.hosts.release(await relay.coordination.live_replicas())


def _alerts_to_the_leader(alerts: Alerts, relay: Relay) -> None:
    """Digests are sent by the leading replica only: an occurrence seen elsewhere is handed to
    it, so a storm is one message per channel however many replicas saw a part of it."""
    coordination = relay.coordination

    def hand_over(event: AlertEvent, subject: AlertSubject, key: str | None) -> bool:
        if coordination.leading:
            return False
        relay.send({"t": "alert", "event": event.value, "host": subject.host_id, "detail": subject.detail,
                    "key": key})
        return True

    def take(message: dict[str, Any]) -> None:
        if coordination.leading:
            alerts.raise_event(AlertEvent(str(message["event"])),
                               AlertSubject(str(message["host"]), str(message["detail"])), message.get("key"))

    alerts.hand_over = hand_over
    relay.handlers["alert"] = take


async def sweep(app: web.Application) -> None:
    """One sweep: this replica's own sockets; the watchers of events that died (no relaying
    for nobody: services/event_forwarding.py); the leader, the hosts of replicas that died."""
    coordination = app[RELAY].coordination
    await app[HOSTS].sweep()
    leads = await coordination.lead()  # first: after a database restart it opens the session anew
    alive = await (app[FORWARDING].drop_dead(coordination.live_replicas) if FORWARDING in app
                   else coordination.live_replicas())  # one read of pg_locks for both
    if leads:
        await app[HOSTS].sweep_replicas(alive)


async def _close_sockets(app: web.Application) -> None:
    """Close WebSockets before aiohttp waits for open handlers, so shutdown is immediate."""
    await app[AGENTS].close_all()
    await app[EVENTS].close_all()


async def _every(seconds: float, job: Callable[[], Awaitable[object]], name: str) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await job()
        except Exception:
            log.exception("%s failed; trying again in %.0f s", name, seconds)


async def _background_ctx(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG]
    # The lag watcher runs in tests too: it only reads the loop's clock.
    tasks = [asyncio.create_task(watch_loop_lag(app[METRICS].lag))]
    if cfg.run_background:
        coordination = app[RELAY].coordination

        def leading(job: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[object]]:
            """Fleet-wide duties run on one replica: the holder of the leader's advisory lock
            (store/cluster.py); any replica takes it within a tick of the leader's death."""
            async def run() -> object:
                return await job() if await coordination.lead() else None
            return run

        tasks.append(asyncio.create_task(keep_heap_frozen()))
        tasks.append(asyncio.create_task(_every(cfg.sweep_interval, lambda: sweep(app), "sweeper")))
        tasks.append(asyncio.create_task(_every(cfg.maintenance_interval, leading(app[MAINTAINER].tick),
                                                "maintenance")))
        tasks.append(asyncio.create_task(_every(cfg.maintenance_interval, leading(app[DRILLS].tick), "drills")))
        tasks.append(asyncio.create_task(_every(cfg.maintenance_interval, leading(app[NOTIFIER].check_offline),
                                                "offline alerts")))
        # channels saved through another replica (every replica sends what its own agents report)
        tasks.append(asyncio.create_task(_every(cfg.sweep_interval, app[ALERTS].load, "channel refresh")))
        tasks.append(asyncio.create_task(_every(cfg.maintenance_interval, leading(app[COPIES].tick), "copies")))
        tasks.append(asyncio.create_task(_every(cfg.maintenance_interval, leading(app[ROTATIONS].resume),
                                                "key rotations")))
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task

