"""Typed application keys: everything the app shares lives under one of these.

The route modules read these; nothing below them (store, hubs, services) imports this
module, so the services take their collaborators as constructor arguments."""

from __future__ import annotations

from aiohttp import web

from rm_server.config import ServerConfig
from rm_server.host_metrics import HostMetricsCache
from rm_server.install import Installer
from rm_server.login_limiter import LoginLimiter
from rm_server.metrics import Metrics
from rm_server.security import MasterKey
from rm_server.services.agent_messages import AgentMessages
from rm_server.services.anomalies import AnomalyService
from rm_server.services.rotations import RotationService
from rm_server.services.alerts import Alerts
from rm_server.services.channels import ChannelService
from rm_server.services.copies import CopyService
from rm_server.services.credentials import CredentialService
from rm_server.services.drills import DrillTicker
from rm_server.services.enrollment import EnrollmentService
from rm_server.services.event_forwarding import EventForwarding
from rm_server.services.fleet import FleetService
from rm_server.services.hosts import HostService
from rm_server.services.jobs import JobService
from rm_server.services.maintenance import Maintainer
from rm_server.services.notify import Notifier
from rm_server.services.operators import OperatorService
from rm_server.services.queries import QueryService
from rm_server.services.relay import Relay
from rm_server.services.schedules import ScheduleService
from rm_server.services.sign_ins import FailedSignIns
from rm_server.store import Store
from rm_server.ws.agent_hub import AgentHub
from rm_server.ws.event_hub import EventHub

# Built by create_app.
CONFIG = web.AppKey("config", ServerConfig)
METRICS = web.AppKey("metrics", Metrics)
AGENTS = web.AppKey("agents", AgentHub)
EVENTS = web.AppKey("events", EventHub)
INSTALLER = web.AppKey("installer", Installer)
LIMITER = web.AppKey("login_limiter", LoginLimiter)  # failed sign-ins, per address and username

# Built at startup, once the store is open (app.py, _services_ctx).
STORE = web.AppKey("store", Store)
MASTER_KEY = web.AppKey("master_key", MasterKey)
METRICS_TOKEN = web.AppKey("metrics_token", str)  # the scraper's bearer token (DATA_DIR/metrics-token)
OPERATORS = web.AppKey("operators", OperatorService)
NOTIFIER = web.AppKey("notifier", Notifier)
HOSTS = web.AppKey("hosts", HostService)
JOBS = web.AppKey("jobs", JobService)
CREDENTIALS = web.AppKey("credentials", CredentialService)
ENROLLMENT = web.AppKey("enrollment", EnrollmentService)
SCHEDULES = web.AppKey("schedules", ScheduleService)
FLEET = web.AppKey("fleet", FleetService)
AGENT_MESSAGES = web.AppKey("agent_messages", AgentMessages)
MAINTAINER = web.AppKey("maintainer", Maintainer)
QUERIES = web.AppKey("queries", QueryService)
RELAY = web.AppKey("relay", Relay)
FORWARDING = web.AppKey("event_forwarding", EventForwarding)  # replicas only: operators' events between them
DRILLS = web.AppKey("drills", DrillTicker)
SIGN_INS = web.AppKey("sign_ins", FailedSignIns)
ALERTS = web.AppKey("alerts", Alerts)
CHANNELS = web.AppKey("channels", ChannelService)
HOST_METRICS = web.AppKey("host_metrics", HostMetricsCache)
COPIES = web.AppKey("copies", CopyService)
ANOMALIES = web.AppKey("anomalies", AnomalyService)
ROTATIONS = web.AppKey("rotations", RotationService)
