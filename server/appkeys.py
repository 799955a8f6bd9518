"""Typed keys of the aiohttp application: the resources each request handler may use."""

from __future__ import annotations

from aiohttp import web

from server.catalog import RoomCatalog
from server.cluster.node import ClusterNode
from server.http.attempts import FailedAttempts
from server.http.readiness import Readiness
from server.metrics import MetricsExporter
from server.precheck.service import PrecheckService
from server.ratelimit import BucketMap
from server.recording import RecordingConfig, RecordingService
from server.settings import Settings
from server.state.nodes import NodeInfo
from server.state.store import RedisStore
from signaling.control import ControlNamespace
from signaling.namespace import RoomNamespace
from signaling.server import RoomSocketServer

SETTINGS = web.AppKey("settings", Settings)
#: The Redis URL in use (the embedded server's unix socket, or REDIS_URL).
REDIS_URL = web.AppKey("redis_url", str)
STORE = web.AppKey("store", RedisStore)
NODE = web.AppKey("node", NodeInfo)
API_KEY = web.AppKey("api_key", str)
SOCKETIO = web.AppKey("socketio", RoomSocketServer)
#: This node's `/room` namespace (its sockets).
NAMESPACE = web.AppKey("namespace", RoomNamespace)
#: The control room's `/control` Socket.IO namespace.
CONTROL = web.AppKey("control", ControlNamespace)
#: This node in the deployment: owned rooms, routing, heartbeat, drain.
CLUSTER = web.AppKey("cluster", ClusterNode)
#: Sessions as organizers see them (definitions, tokens, deletion).
CATALOG = web.AppKey("catalog", RoomCatalog)
#: The recording service of this node (archive, recordings in progress, renders).
RECORDING_SERVICE = web.AppKey("recording_service", RecordingService)
#: Optional override of the recording configuration (tests); default from SETTINGS.
RECORDING_CONFIG = web.AppKey("recording_config", RecordingConfig)
#: Failed admin-key attempts per client address, and the lock-outs they caused.
ADMIN_ATTEMPTS = web.AppKey("admin_attempts", FailedAttempts)
#: Whether this node should get new work (`/readyz`); `draining` is set on SIGTERM.
READINESS = web.AppKey("readiness", Readiness)
#: Join-link checks per client address (`POST /api/join/check` needs no key).
JOIN_CHECKS = web.AppKey("join_checks", BucketMap[str])
#: This node's metrics (`/metrics`) and the hooks that count into them.
METRICS = web.AppKey("metrics", MetricsExporter)
#: The pre-session connection checks of this node (probe peers, stored results).
PRECHECK = web.AppKey("precheck", PrecheckService)
#: Connection-check calls per client address (`/api/precheck*` needs no key).
PRECHECK_ADDRESSES = web.AppKey("precheck_addresses", BucketMap[str])
