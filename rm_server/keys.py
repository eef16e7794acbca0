"""Typed application keys: everything the app shares lives under one of these."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from rm_server.config import ServerConfig
from rm_server.security import MasterKey
from rm_server.store import Store

if TYPE_CHECKING:
    from rm_server.services.core import Services
    from rm_server.ws.agents import AgentHub
    from rm_server.ws.events import EventHub
    from rm_server.metrics import Metrics

CONFIG = web.AppKey("config", ServerConfig)
STORE = web.AppKey("store", Store)
MASTER_KEY = web.AppKey("master_key", MasterKey)
AGENTS = web.AppKey("agents", "AgentHub")
EVENTS = web.AppKey("events", "EventHub")
SERVICES = web.AppKey("services", "Services")
METRICS = web.AppKey("metrics", "Metrics")
