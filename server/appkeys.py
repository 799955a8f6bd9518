"""Typed keys of the aiohttp application: the resources each request handler may use."""

from __future__ import annotations

import socketio
from aiohttp import web

from server.http.attempts import FailedAttempts
from server.http.readiness import Readiness
from server.recording import RecordingConfig, RecordingService
from server.rooms.service import ConsultationService
from server.settings import Settings
from server.state.nodes import NodeInfo
from server.state.store import RedisStore

SETTINGS = web.AppKey("settings", Settings)
#: The Redis URL in use (the embedded server's unix socket, or REDIS_URL).
REDIS_URL = web.AppKey("redis_url", str)
STORE = web.AppKey("store", RedisStore)
SERVICE = web.AppKey("service", ConsultationService)
NODE = web.AppKey("node", NodeInfo)
API_KEY = web.AppKey("api_key", str)
SOCKETIO = web.AppKey("socketio", socketio.AsyncServer)
#: The recording service of this node (archive, recordings in progress, renders).
RECORDING_SERVICE = web.AppKey("recording_service", RecordingService)
#: Optional override of the recording configuration (tests); default from SETTINGS.
RECORDING_CONFIG = web.AppKey("recording_config", RecordingConfig)
#: Failed admin-key attempts per client address, and the lock-outs they caused.
ADMIN_ATTEMPTS = web.AppKey("admin_attempts", FailedAttempts)
#: Whether this node should get new work (`/readyz`); `draining` is set on SIGTERM.
READINESS = web.AppKey("readiness", Readiness)
