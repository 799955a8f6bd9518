"""Viewers' questions: a viewer of the broadcast posts into the gallery's moderation queue.

``POST /live/{room}/questions`` (JSON ``{kind, text, name?, district?}``, the
schema of the in-room ``gallery_post``) puts the post in the same queue as
observers' posts: nothing is shown before a host, co-host or moderator
approves it. Who posts: for a ``token`` broadcast, the viewer token's identity
(cookie or ``?token=``: the token's subject, from the signed token only); for a
``public`` one, an identity derived from the client address, so the room's
per-identity post limit is a per-address limit. Every address is also limited
at the edge (``QUESTION_RATE``) before anything reaches the room.

Any node takes the post: it checks access, the body and the address's rate
itself (so the edge limit is per client address wherever it lands), then the
room's owner queues it — directly when this node owns the room, else over the
bus like a participant's command (``RoomRouter.gallery_post``). A room nobody
broadcasts now answers ``404 not_live``.
"""

from __future__ import annotations

import hashlib

from aiohttp import web

from server import appkeys
from server.http.api import client_address, read_body
from server.ratelimit import BucketMap
from server.rooms import acks
from server.rooms.errors import NotFound, RateLimited
from server.rooms.models import Participant, Role, Room
from server.rooms.payloads import GalleryPost

from .locator import BroadcastLocator

#: Posts per second and burst per client address, at the edge.
QUESTION_RATE = 0.2
QUESTION_BURST = 3.0
QUESTION_LIMITS = web.AppKey("live_question_limits", BucketMap[str])
#: Where each room's broadcast is (set up with the broadcast service).
LOCATOR = web.AppKey("live_locator", BroadcastLocator)


def poster_identity(room: Room, request: web.Request, token_subject: str | None) -> str:
    """Who posts: the viewer token's subject, else a stable id of the client address."""
    if token_subject is not None:
        return token_subject
    digest = hashlib.sha256(f"{room.id}|{client_address(request)}".encode()).hexdigest()
    return f"web-{digest[:16]}"


async def post_question(request: web.Request, room: Room, identity: str) -> web.Response:
    """Queue the post for moderation; 202 with its id."""
    if not request.app[QUESTION_LIMITS].allow(client_address(request)):
        raise RateLimited("rate_limited", "too many posts from this address; wait a moment")
    body = await read_body(request, GalleryPost)
    cluster = request.app[appkeys.CLUSTER]
    owned_here = cluster.directory.actor(room.id) is not None
    if not owned_here and await request.app[LOCATOR].find(room.id) is None:
        # Nobody broadcasts it: no owner is woken up (or placed) for a viewer's post.
        raise NotFound("not_live", "the broadcast is not live now")
    poster = Participant(
        identity=identity,
        name=body.name or "观众",
        role=Role.VIEWER,
        venue=room.main_venue.id,
        session="",
        node="",
        joined_at=0.0,
    )
    ack = acks.raise_for(await cluster.router.gallery_post(room.id, poster, body))
    return web.json_response({"id": ack["id"], "status": ack["status"]}, status=202)


def setup(app: web.Application) -> None:
    """The edge limit's buckets."""
    app[QUESTION_LIMITS] = BucketMap(QUESTION_RATE, QUESTION_BURST)
