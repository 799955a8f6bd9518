"""`/live/{room}`: the broadcast's page, playlist, segments and programme, for any viewer.

Cache headers let any web server or CDN in front serve the many viewers: the
playlist and ``programme.json`` change every second or two (``max-age=1``);
a segment never changes under its name (``immutable``, a year). For a
``token`` broadcast the responses are ``private`` (a shared cache would hand
them to anyone); put the CDN's own auth in front to cache those.

The files are on the disk of the room's owner (its worker writes them). Every
node serves them: the owner from its directory; another node finds where they
are (:mod:`.locator`) and reads the same directory when it can (the same box
and data directory, as ``yitang serve --workers N`` runs), else relays the
request to the owner (:mod:`.relay`). Access is checked on the node the viewer
reached (and again by the owner of a relayed request). See docs/broadcast.md.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from server import appkeys
from server.http.pages import STATIC_DIR
from server.rooms.errors import NotFound
from server.rooms.models import Room
from server.rooms.payloads import CallInOp

from . import call_ins
from .access import LiveAccess, Viewer
from .questions import LOCATOR, post_question, poster_identity
from .questions import setup as setup_questions
from .relay import BroadcastRelay
from .service import BroadcastService

__all__ = ["BROADCASTS", "LIVE_ACCESS", "LOCATOR", "add_routes", "close_relay"]

LIVE_ACCESS = web.AppKey("live_access", LiveAccess)
BROADCASTS = web.AppKey("broadcasts", BroadcastService)
_RELAY = web.AppKey("live_relay", BroadcastRelay)
#: Room definitions read for /live requests, kept this long (seconds): a popular broadcast
#: must not read Redis for every segment request.
ROOM_CACHE_SECONDS = 5.0
_ROOM_CACHE = web.AppKey("live_room_cache", dict)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_ROOM_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,47}")
#: The worker's segment names: its start time (hex) and a number.
_SEGMENT = re.compile(r"[0-9a-f]{1,16}-[0-9]{5,9}\.ts")


async def _room(request: web.Request) -> Room:
    room_id = request.match_info["room_id"]
    if not _ROOM_ID.fullmatch(room_id):
        raise NotFound("room_not_found", "no room has this id")
    cache: dict[str, tuple[float, Room | None]] = request.app[_ROOM_CACHE]
    now = time.monotonic()
    cached = cache.get(room_id)
    if cached is None or cached[0] < now:
        if len(cache) > 10_000:
            cache.clear()
        room = await request.app[appkeys.CATALOG].store.get_room(room_id)
        cached = cache[room_id] = (now + ROOM_CACHE_SECONDS, room)
    room = cached[1]
    if room is None:
        raise NotFound("room_not_found", "no room has this id")
    if room.broadcast == "off":
        raise NotFound("broadcast_off", "this session is not broadcast")
    return room


async def _authorized(request: web.Request) -> tuple[Room, Viewer]:
    room = await _room(request)
    return room, request.app[LIVE_ACCESS].authorize(request, room)


def _finish(
    request: web.Request, response: web.StreamResponse, room: Room, viewer: Viewer
) -> web.StreamResponse:
    request.app[LIVE_ACCESS].set_cookie(response, room, viewer, secure=request.secure)
    return response


def _cache(room: Room, seconds: int, *, immutable: bool = False) -> str:
    scope = "public" if room.broadcast == "public" else "private"
    return f"{scope}, max-age={seconds}" + (", immutable" if immutable else "")


async def live_page(request: web.Request) -> web.StreamResponse:
    """The player page (anyone for a `public` broadcast; a viewer link for `token`)."""
    room, viewer = await _authorized(request)
    response = web.FileResponse(STATIC_DIR / "live.html", headers={"Cache-Control": "no-cache"})
    return _finish(request, response, room, viewer)


async def _file(
    request: web.Request, name: str, content_type: str, cache: str
) -> web.StreamResponse:
    room, viewer = await _authorized(request)
    service = request.app[BROADCASTS]
    if room.id in service.broadcasts:
        directory = service.path(room.id)
    else:
        # Another node's broadcast: its directory if this node can read it, else relay.
        location = await request.app[LOCATOR].find(room.id)
        if location is None or location.node == service.directory.node.id:
            raise NotFound("not_live", "the broadcast is not live now")
        readable = await asyncio.to_thread(location.local_directory, room.id, service.root.parent)
        if readable is None:
            return await request.app[_RELAY].get(
                request,
                location,
                room.id,
                name,
                lambda response: request.app[LIVE_ACCESS].set_cookie(
                    response, room, viewer, secure=request.secure
                ),
            )
        directory = readable
    path = directory / name
    if not path.is_file():
        raise NotFound("not_live", "the broadcast is not live now")
    response = web.FileResponse(
        path, headers={"Content-Type": content_type, "Cache-Control": cache}
    )
    return _finish(request, response, room, viewer)


async def playlist(request: web.Request) -> web.StreamResponse:
    """The HLS playlist (while the session is live)."""
    room = await _room(request)
    return await _file(request, "index.m3u8", "application/vnd.apple.mpegurl", _cache(room, 1))


async def programme(request: web.Request) -> web.StreamResponse:
    """Who is speaking, the agenda item, the gallery item on screen, paused or not."""
    room = await _room(request)
    return await _file(request, "programme.json", "application/json", _cache(room, 1))


async def segment(request: web.Request) -> web.StreamResponse:
    """One MPEG-TS segment (its name never serves other content)."""
    name = request.match_info["segment"]
    if not _SEGMENT.fullmatch(name):
        raise NotFound("not_found", "no such segment")
    room = await _room(request)
    cache = _cache(room, 365 * 24 * 3600, immutable=True)
    return await _file(request, name, "video/mp2t", cache)


async def question(request: web.Request) -> web.StreamResponse:
    """A viewer's question or opinion, into the moderation queue (see `questions`)."""
    room, viewer = await _authorized(request)
    response = await post_question(request, room, poster_identity(room, request, viewer.identity))
    return _finish(request, response, room, viewer)


async def call_in_ask(request: web.Request) -> web.StreamResponse:
    """A viewer asks to speak (see `call_ins`)."""
    room, viewer = await _authorized(request)
    response = await call_ins.ask(request, room, poster_identity(room, request, viewer.identity))
    return _finish(request, response, room, viewer)


def _call_in_follow(op: CallInOp) -> Handler:
    async def follow(request: web.Request) -> web.StreamResponse:
        room, viewer = await _authorized(request)
        response = await call_ins.follow(request, room, op, request.app[LIVE_ACCESS])
        return _finish(request, response, room, viewer)

    follow.__doc__ = f"A viewer's page: {op} its request to speak (see `call_ins`)."
    return follow


def add_routes(app: web.Application) -> None:
    """Register the /live routes."""
    app[_ROOM_CACHE] = {}
    app[_RELAY] = BroadcastRelay()
    setup_questions(app)
    app.router.add_post("/live/{room_id}/questions", question)
    call_ins.setup(app)
    app.router.add_post("/live/{room_id}/call-ins", call_in_ask)
    follow_ops: tuple[CallInOp, ...] = ("status", "accept", "decline")
    for op in follow_ops:
        app.router.add_post(f"/live/{{room_id}}/call-ins/{op}", _call_in_follow(op))
    app.router.add_get("/live/{room_id}", live_page)
    app.router.add_get("/live/{room_id}/index.m3u8", playlist)
    app.router.add_get("/live/{room_id}/programme.json", programme)
    app.router.add_get("/live/{room_id}/{segment}", segment)


async def close_relay(app: web.Application) -> None:
    """Close the relay's HTTP client (the node is stopping)."""
    await app[_RELAY].close()


def _live_operation(summary: str, media_type: str, description: str) -> dict[str, Any]:
    errors = {
        "401": "token broadcast: no viewer token or cookie, or an invalid or expired token",
        "403": "token broadcast: a token of another role or another session",
        "404": "no such room, the room is not broadcast (broadcast_off), or not live "
        "(not_live: nobody broadcasts it now)",
        "502": "the node writing the broadcast did not answer a relayed request "
        "(owner_unreachable); try again",
    }
    return {
        "get": {
            "summary": summary,
            "parameters": [
                {"name": "room_id", "in": "path", "required": True, "schema": {"type": "string"}},
                {
                    "name": "token",
                    "in": "query",
                    "required": False,
                    "description": "a viewer token (token broadcasts); the answer sets the "
                    "yitang_live cookie scoped to /live/{room_id}",
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": {"description": description, "content": {media_type: {}}},
                **{status: {"description": text} for status, text in errors.items()},
            },
        }
    }


#: The /live routes in the OpenAPI document (they are not REST endpoints of `server.http.api`).
OPENAPI_PATHS: dict[str, dict[str, Any]] = {
    "/live/{room_id}": _live_operation("The live broadcast's player page", "text/html", "The page"),
    "/live/{room_id}/index.m3u8": _live_operation(
        "The live broadcast's HLS playlist (max-age=1)",
        "application/vnd.apple.mpegurl",
        "The playlist of the last few 2 s segments",
    ),
    "/live/{room_id}/programme.json": _live_operation(
        "What the broadcast shows now (max-age=1)",
        "application/json",
        "{title, status, state, paused, agenda, agenda_index, speaker, has_floor, host, gallery}",
    ),
    "/live/{room_id}/questions": {
        "post": {
            **_live_operation(
                "A viewer's question or opinion into the moderation queue (202: queued)",
                "application/json",
                "{id, status}",
            )["get"],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/GalleryPost"}}
                },
            },
        }
    },
    **call_ins.OPENAPI_PATHS,
    "/live/{room_id}/{segment}": _live_operation(
        "One MPEG-TS segment (immutable, named <start>-<n>.ts)", "video/mp2t", "The segment"
    ),
}
