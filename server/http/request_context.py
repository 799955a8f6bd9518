"""Log records written while handling a REST call about a room name that room.

The request runs in its own task, so the context variable set here is the
request's alone (`server.log_context`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from server import log_context


@web.middleware
async def room_in_log_context(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Set the room of `/api/rooms/{room_id}...` calls for the request's log lines."""
    room_id = request.match_info.get("room_id")
    if room_id is not None:
        log_context.room.set(room_id[:128])
    return await handler(request)
