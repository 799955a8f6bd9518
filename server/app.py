"""The aiohttp application factory: `create_app(settings)` wires every layer together.

Resources are set up and torn down in `cleanup_ctx` generators, in order:
Redis (embedded and supervised, or external), then the node (store, domain
service, Socket.IO namespace, housekeeping).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import socketio
from aiohttp import web

from server import appkeys
from server.credentials import load_api_key, load_token_secret
from server.http import api, pages, recordings
from server.http.attempts import FailedAttempts
from server.http.errors import error_middleware
from server.http.openapi import openapi_handler
from server.http.readiness import Readiness
from server.http.schemas import MAX_BODY_BYTES
from server.http.security import add_security_headers
from server.media import MediaConfig, MediaNode
from server.recording import RecordingConfig, RecordingService, RenderQueue
from server.recording.worker import worker_processes
from server.rooms.housekeeping import Housekeeper
from server.rooms.room_media import RoomMedia
from server.rooms.service import ConsultationService
from server.rooms.tokens import TokenSigner
from server.settings import Settings
from server.state import keys
from server.state.connection import redis_client
from server.state.embedded import embedded_redis, embedded_redis_url
from server.state.nodes import new_node
from server.state.store import RedisStore
from signaling.events import MAX_MESSAGE_BYTES
from signaling.fanout import RedisFanout
from signaling.namespace import RoomNamespace
from signaling.notifier import SocketNotifier

logger = logging.getLogger(__name__)


def create_app(settings: Settings) -> web.Application:
    """Build the application; nothing starts until the app runs (see the cleanup contexts)."""
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[error_middleware])
    add_security_headers(app, settings.public_origins)
    app[appkeys.SETTINGS] = settings
    app[appkeys.READINESS] = Readiness()
    app[appkeys.ADMIN_ATTEMPTS] = FailedAttempts(
        settings.admin_attempt_limit, settings.admin_attempt_window_seconds
    )
    redis_url = settings.redis_url or embedded_redis_url(settings.data_dir)
    app[appkeys.REDIS_URL] = redis_url
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=RedisFanout(redis_url, channel=keys.SOCKETIO_CHANNEL),
        max_http_buffer_size=MAX_MESSAGE_BYTES,
        # Browsers on other sites are refused; clients that send no Origin (not browsers) are
        # not. (An empty list would switch the check off altogether.)
        cors_allowed_origins=list(settings.public_origins),
        ping_interval=10,
        ping_timeout=10,
    )
    sio.attach(app, socketio_path="socket.io")
    app[appkeys.SOCKETIO] = sio
    app.cleanup_ctx.append(_redis_ctx)
    app.cleanup_ctx.append(_node_ctx)
    app.cleanup_ctx.append(_recording_ctx)
    api.add_routes(app)
    recordings.add_routes(app)
    app.router.add_get("/api/openapi.json", openapi_handler)
    pages.add_routes(app)
    return app


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
        stack.push_async_callback(client.aclose)
        await client.ping()
        app[appkeys.STORE] = RedisStore(client)
        yield


async def _node_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    store = app[appkeys.STORE]
    sio = app[appkeys.SOCKETIO]
    node = new_node(settings.base_url)
    app[appkeys.NODE] = node
    app[appkeys.API_KEY] = load_api_key(settings.data_dir, settings.api_key)
    signer = TokenSigner(load_token_secret(settings.data_dir, settings.token_secret))
    notifier = SocketNotifier(sio)
    media_node = MediaNode(
        MediaConfig(
            ice_addresses=settings.ice_addresses,
            ice_remote_allow=settings.ice_remote_allow,
            last_n=settings.last_n,
        )
    )
    service = ConsultationService(
        store,
        signer,
        notifier,
        RoomMedia(media_node, notifier),
        node.id,
        settings.presence_ttl_seconds,
    )
    app[appkeys.SERVICE] = service
    sio.register_namespace(RoomNamespace(service, settings.event_rate, settings.event_burst))
    housekeeper = Housekeeper(
        service, node, settings.heartbeat_seconds, settings.presence_ttl_seconds
    )
    await housekeeper.beat()
    task = asyncio.create_task(housekeeper.run(), name="housekeeping")
    logger.info("node %s serving %s", node.id, settings.base_url)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await _close_sockets(sio)
        await media_node.close()
        await store.remove_node(node.id)


async def _recording_ctx(app: web.Application) -> AsyncIterator[None]:
    """The recording service (after the node: it records the node's media rooms).

    Recordings of writers that died are recovered at start; every recording is
    closed properly on shutdown (before the media it taps goes away).
    """
    settings = app[appkeys.SETTINGS]
    config = app.get(appkeys.RECORDING_CONFIG) or RecordingConfig(
        recordings_dir=settings.archive_dir, retention_days=settings.retention_days
    )
    queue = RenderQueue(app[appkeys.REDIS_URL])
    recorder = RecordingService(
        app[appkeys.STORE], config, node_id=app[appkeys.NODE].id, render_queue=queue
    )
    app[appkeys.SERVICE].attach_recorder(recorder)
    app[appkeys.RECORDING_SERVICE] = recorder
    await recorder.recover()
    recorder.start_background()
    try:
        async with worker_processes(settings.render_workers, app[appkeys.REDIS_URL]):
            yield
    finally:
        await recorder.close()
        queue.close()


async def _close_sockets(sio: socketio.AsyncServer) -> None:
    """Disconnect this node's clients and stop the fan-out's Redis listener."""
    with contextlib.suppress(Exception):
        await sio.shutdown()
    await sio.manager.aclose()
