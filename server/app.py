"""The aiohttp application factory: `create_app(settings)` wires every layer together.

Resources are set up and torn down in `cleanup_ctx` generators, in order:
Redis (embedded and supervised, or external), the recording service, then the node (its part
in the cluster: owned rooms, routing, heartbeat). On shutdown the node drains
first (`on_shutdown`): it hands its rooms to other nodes and sends its sockets
elsewhere, then everything is closed in reverse order.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from server import appkeys, log_context
from server.broadcast import http as live
from server.broadcast.access import LiveAccess
from server.broadcast.locator import BroadcastLocator
from server.broadcast.service import BroadcastService
from server.catalog import RoomCatalog
from server.cluster.directory import DirectorySettings
from server.cluster.node import ClusterNode, ClusterSettings
from server.credentials import load_api_key, load_token_secret
from server.http import (
    api,
    metrics,
    pages,
    precheck,
    recordings,
    session_records,
    suggestions,
)
from server.http.attempts import FailedAttempts
from server.http.errors import error_middleware
from server.http.openapi import openapi_handler
from server.http.readiness import Readiness
from server.http.request_context import room_in_log_context
from server.http.schemas import MAX_BODY_BYTES
from server.http.security import add_security_headers
from server.media import MediaConfig, MediaNode
from server.metrics import MetricsExporter
from server.metrics.redis_timing import instrument_redis
from server.recording import RecordingConfig, RecordingService, RenderQueue
from server.recording.room_recorder import RoomRecorder, recording_update
from server.recording.worker import worker_processes
from server.rooms.limits import LimitSettings
from server.rooms.owned_room import OwnerSettings
from server.rooms.tokens import TokenSigner
from server.settings import Settings
from server.state.connection import redis_client
from server.state.embedded import embedded_redis, embedded_redis_url
from server.state.nodes import new_node
from server.state.store import RedisStore
from server.turn_credentials import ice_servers
from signaling.admission import connection_cap
from signaling.control import ControlNamespace
from signaling.events import MAX_MESSAGE_BYTES
from signaling.namespace import RoomNamespace
from signaling.server import RoomSocketServer

logger = logging.getLogger(__name__)


def create_app(settings: Settings) -> web.Application:
    """Build the application; nothing starts until the app runs (see the cleanup contexts)."""
    node = new_node(settings.base_url)
    namespace = RoomNamespace(
        node_id=node.id,
        max_participants=settings.max_participants,
        max_connections=settings.connection_limit,
        event_rate=settings.event_rate,
        event_burst=settings.event_burst,
        ice_servers=functools.partial(ice_servers, settings.turn),
    )
    sio = RoomSocketServer(
        join_timeout=settings.join_timeout_seconds,
        is_joined=namespace.is_joined,
        async_mode="aiohttp",
        max_http_buffer_size=MAX_MESSAGE_BYTES,
        # Browsers on other sites are refused; clients that send no Origin (not browsers) are
        # not. (An empty list would switch the check off altogether.)
        cors_allowed_origins=list(settings.public_origins),
        # A ping every 10 s; a client is judged gone 20 s after a ping it has not answered.
        # The timeout is the margin for a loaded server or client: the next ping leaves
        # only once the last pong has been read, so under a burst the cycle stretches, and
        # python-socketio's client gives up after max(interval, timeout) + 5 s without
        # a ping to answer (15 s with a timeout of 10, which a hundred hands at once on a
        # busy machine exceeded). A closed connection is seen at once regardless; one that
        # goes silent without closing is judged gone within about 30-50 s.
        ping_interval=10,
        ping_timeout=20,
    )
    sio.register_namespace(namespace)
    control = ControlNamespace(
        node_id=node.id,
        connections=lambda: len(namespace.connections),
        connection_limit=settings.connection_limit,
        max_rooms=settings.max_rooms_per_node,
        interval=settings.control_interval_seconds,
        loss_alert=settings.control_loss_alert,
    )
    sio.register_namespace(control)
    sio.stay_unjoined = (control.namespace, control.is_operator)
    exporter = MetricsExporter(node.id, sample_seconds=settings.metrics_sample_seconds)
    namespace.on_event_done = exporter.metrics.event_done
    namespace.on_connect_done = exporter.metrics.connect_done
    sio.on_event_refused = exporter.metrics.event_refused
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.middlewares.extend(
        [
            metrics.count_lockouts_of(app),
            room_in_log_context,
            error_middleware,
            connection_cap(sio, settings.connection_limit),
        ]
    )
    add_security_headers(app, settings.public_origins)
    app[appkeys.SETTINGS] = settings
    app[appkeys.READINESS] = Readiness()
    app[appkeys.ADMIN_ATTEMPTS] = FailedAttempts(
        settings.admin_attempt_limit, settings.admin_attempt_window_seconds
    )
    app[appkeys.NODE] = node
    app[appkeys.REDIS_URL] = settings.redis_url or embedded_redis_url(settings.data_dir)
    app[appkeys.SOCKETIO] = sio
    app[appkeys.NAMESPACE] = namespace
    app[appkeys.CONTROL] = control
    app[appkeys.METRICS] = exporter
    sio.attach(app, socketio_path="socket.io")
    app.cleanup_ctx.append(_log_context_ctx)
    app.cleanup_ctx.append(_redis_ctx)
    app.cleanup_ctx.append(_recording_ctx)
    app.cleanup_ctx.append(_node_ctx)
    app.cleanup_ctx.append(_broadcast_ctx)
    app.cleanup_ctx.append(_metrics_ctx)
    app.cleanup_ctx.append(metrics.metrics_listener)
    app.on_shutdown.append(_drain)
    api.add_routes(app)
    recordings.add_routes(app)
    session_records.add_routes(app)
    precheck.add_routes(app)
    suggestions.add_routes(app)
    app.router.add_get("/api/openapi.json", openapi_handler)
    metrics.add_routes(app)
    pages.add_routes(app)
    live.add_routes(app)
    return app


async def _log_context_ctx(app: web.Application) -> AsyncIterator[None]:
    """Log records of this node name it: set here, in the task that starts the app, the node
    id is inherited by every task started after (the server's, the cluster's, requests')."""
    log_context.node.set(app[appkeys.NODE].id)
    yield


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    async with contextlib.AsyncExitStack() as stack:
        if settings.redis_url is None:
            # A Valkey that cannot be brought back fails the node (`yitang serve` exits).
            readiness = app[appkeys.READINESS]
            await stack.enter_async_context(
                embedded_redis(settings.data_dir, on_give_up=readiness.fail)
            )
        client = redis_client(app[appkeys.REDIS_URL])
        instrument_redis(client, app[appkeys.METRICS].metrics)
        stack.push_async_callback(client.aclose)
        await client.ping()
        app[appkeys.STORE] = RedisStore(client)
        yield


async def _recording_ctx(app: web.Application) -> AsyncIterator[None]:
    """The recording service: recordings of writers that died are recovered at start;
    every recording still running is closed properly on shutdown (after the node's
    drain has suspended those it handed over)."""
    settings = app[appkeys.SETTINGS]
    config = app.get(appkeys.RECORDING_CONFIG) or RecordingConfig(
        recordings_dir=settings.archive_dir, retention_days=settings.retention_days
    )
    queue = RenderQueue(app[appkeys.REDIS_URL])
    store = app[appkeys.STORE]

    async def resume_expected(room_id: str, recording_id: str) -> bool:
        # The room's snapshot names the recording its next owner resumes on takeover.
        snapshot = await store.snapshot(room_id)
        return (
            snapshot is not None
            and snapshot.recording_id == recording_id
            and snapshot.live.status != "ended"
        )

    recorder = RecordingService(
        store,
        config,
        node_id=app[appkeys.NODE].id,
        render_queue=queue,
        resume_expected=resume_expected,
    )
    app[appkeys.RECORDING_SERVICE] = recorder
    await recorder.recover()
    recorder.start_background()
    try:
        async with worker_processes(settings.render_workers, app[appkeys.REDIS_URL]):
            yield
    finally:
        await recorder.close()
        queue.close()


async def _node_ctx(app: web.Application) -> AsyncIterator[None]:
    """This node in the deployment: its rooms, its routes to other owners, its heartbeat."""
    settings = app[appkeys.SETTINGS]
    store = app[appkeys.STORE]
    namespace = app[appkeys.NAMESPACE]
    recorder = app[appkeys.RECORDING_SERVICE]
    app[appkeys.API_KEY] = load_api_key(settings.data_dir, settings.api_key)
    signer = TokenSigner(load_token_secret(settings.data_dir, settings.token_secret))
    media_node = MediaNode(
        MediaConfig(
            ice_addresses=settings.ice_addresses,
            ice_remote_allow=settings.ice_remote_allow,
            last_n=settings.last_n,
        )
    )
    # The bus listens on its own connection (pub/sub holds it), with a health check.
    bus_client = redis_client(app[appkeys.REDIS_URL], health_check_interval=5)
    cluster = ClusterNode(
        info=app[appkeys.NODE],
        store=store,
        bus_client=bus_client,
        local=namespace,
        media_node=media_node,
        recorder=RoomRecorder(recorder),
        owner_settings=OwnerSettings(
            max_participants=settings.max_participants,
            reconnect_grace_seconds=settings.reconnect_grace_seconds,
            limits=LimitSettings(
                event_rate=settings.event_rate,
                event_burst=settings.event_burst,
                chat_rate=settings.chat_rate,
                chat_burst=settings.chat_burst,
                room_chat_rate=settings.chat_rate * 10,
                room_chat_burst=settings.chat_burst * 6,
            ),
        ),
        settings=ClusterSettings(
            heartbeat_seconds=settings.heartbeat_seconds,
            lease_ttl_seconds=settings.lease_ttl_seconds,
            drain_seconds=settings.drain_seconds,
            directory=DirectorySettings(
                idle_seconds=settings.idle_room_seconds, max_rooms=settings.max_rooms_per_node
            ),
        ),
    )
    cluster.directory.on_ownership_change = app[appkeys.METRICS].metrics.ownership_changed
    catalog = RoomCatalog(store, signer, cluster.router, cluster.leases)
    namespace.attach(router=cluster.router, bus=cluster.bus, catalog=catalog, signer=signer)
    recorder.on_change = lambda info: cluster.recording_changed(
        recording_update(info), info.room_id, failed=False
    )
    recorder.on_error = lambda info: cluster.recording_changed(
        recording_update(info), info.room_id, failed=True
    )
    app[appkeys.CLUSTER] = cluster
    app[appkeys.CATALOG] = catalog
    app[appkeys.CONTROL].attach(
        api_key=app[appkeys.API_KEY],
        attempts=app[appkeys.ADMIN_ATTEMPTS],
        router=cluster.router,
        catalog=catalog,
    )
    await cluster.start()
    logger.info("node %s serving %s", cluster.node_id, settings.base_url)
    try:
        yield
    finally:
        await app[appkeys.CONTROL].close()
        await cluster.close()
        await namespace.close()
        with contextlib.suppress(Exception):
            await app[appkeys.SOCKETIO].shutdown()
        await media_node.close()
        await bus_client.aclose()


async def _broadcast_ctx(app: web.Application) -> AsyncIterator[None]:
    """The live broadcasts of this node's rooms (worker processes) and who may watch them."""
    settings = app[appkeys.SETTINGS]
    cluster = app[appkeys.CLUSTER]
    secret = load_token_secret(settings.data_dir, settings.token_secret)
    app[live.LIVE_ACCESS] = LiveAccess(app[appkeys.CATALOG].signer, secret)
    locator = BroadcastLocator(cluster.directory.store.client)
    app[live.LOCATOR] = locator
    service = BroadcastService(
        cluster.directory,
        cluster.directory.media_node,
        settings.data_dir / "broadcast" / cluster.node_id,
        locator=locator,
    )
    app[live.BROADCASTS] = service
    service.start()
    try:
        yield
    finally:
        await service.close()
        await live.close_relay(app)


async def _metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """Metrics read from the running node: rooms, media, the render queue, receiver reports."""
    exporter = app[appkeys.METRICS]
    namespace = app[appkeys.NAMESPACE]
    exporter.attach(
        cluster=app[appkeys.CLUSTER],
        connections=lambda: len(namespace.connections),
        redis_url=app[appkeys.REDIS_URL],
        broadcasts=lambda: app.get(live.BROADCASTS),
    )
    try:
        yield
    finally:
        await exporter.close()


async def _drain(app: web.Application) -> None:
    """SIGTERM: hand rooms over and send sockets elsewhere, before connections are closed."""
    # Out of the load balancer's rotation first (/readyz answers 503 from now on).
    app[appkeys.READINESS].draining = True
    cluster = app.get(appkeys.CLUSTER)
    if cluster is not None:
        started = time.monotonic()
        rooms = len(cluster.directory.owned())
        sockets = len(app[appkeys.NAMESPACE].connections)
        await cluster.drain()
        # What the operator wants to know of a shutdown: did everything move in time.
        logger.info(
            "drained in %.1f s: %d of %d rooms handed over, %d sockets sent elsewhere",
            time.monotonic() - started,
            rooms - len(cluster.directory.owned()),
            rooms,
            sockets,
            extra={"event": "drained"},
        )
