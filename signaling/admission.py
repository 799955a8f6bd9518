"""The node's connection cap: a clear refusal instead of a node that slows for everyone.

Each Socket.IO connection holds a file descriptor and some memory; past the
cap, new Engine.IO handshakes get `503 server_full` (with Retry-After) before
any socket is made, and the `/room` namespace refuses with `server_full` too.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from signaling.server import RoomSocketServer

#: Seconds a refused client is asked to wait before trying again.
RETRY_AFTER_SECONDS = 5


def connection_cap(sio: RoomSocketServer, max_connections: int) -> Middleware:
    """A middleware refusing new Socket.IO connections beyond `max_connections`."""

    @web.middleware
    async def cap(request: web.Request, handler: Handler) -> web.StreamResponse:
        # A request with `sid` belongs to a connection that exists already.
        is_new = request.path.startswith("/socket.io") and "sid" not in request.query
        if is_new and sio.connection_count >= max_connections:
            return web.json_response(
                {"error": {"code": "server_full", "message": "this server is full; try again"}},
                status=503,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        return await handler(request)

    return cap
