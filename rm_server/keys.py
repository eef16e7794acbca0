"""Typed application keys: everything the app shares lives under one of these."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from rm_server.config import ServerConfig
from rm_server.security import MasterKey
from rm_server.store import Store

if TYPE_CHECKING:
    from rm_server.metrics import Metrics
    from rm_server.services.core import Services
    from rm_server.ws.agents import AgentHub
    from rm_server.ws.events import EventHub

CONFIG = web.AppKey("config", ServerConfig)
STORE = web.AppKey("store", Store)
MASTER_KEY = web.AppKey("master_key", MasterKey)
# These modules import keys.py themselves: typed by annotation to avoid an import cycle.
AGENTS: web.AppKey[AgentHub] = web.AppKey("agents")
EVENTS: web.AppKey[EventHub] = web.AppKey("events")
SERVICES: web.AppKey[Services] = web.AppKey("services")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
