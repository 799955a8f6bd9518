"""Viewers' questions: a viewer of the broadcast posts into the gallery's moderation queue.

``POST /live/{room}/questions`` (JSON ``{kind, text, name?, district?}``, the
schema of the in-room ``gallery_post``) puts the post in the same queue as
observers' posts: nothing is shown before a host, co-host or moderator
approves it. Who posts: for a ``token`` broadcast, the viewer token's identity
(cookie or ``?token=``: the token's subject, from the signed token only); for a
``public`` one, an identity derived from the client address, so the room's
per-identity post limit is a per-address limit. Every address is also limited
at the edge (``QUESTION_RATE``) before anything reaches the room.

The room's owner takes the post (like ``/live``, route it to the owner);
another node answers ``404 not_live``.
"""

from __future__ import annotations

import hashlib

from aiohttp import web

from server import appkeys
from server.http.api import client_address, read_body
from server.ratelimit import BucketMap
from server.rooms import gallery
from server.rooms.errors import NotFound, RateLimited
from server.rooms.models import Participant, Role, Room
from server.rooms.owned_room import OwnedRoom
from server.rooms.payloads import GalleryPost

#: Posts per second and burst per client address, at the edge.
QUESTION_RATE = 0.2
QUESTION_BURST = 3.0
QUESTION_LIMITS = web.AppKey("live_question_limits", BucketMap[str])


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
    actor = request.app[appkeys.CLUSTER].directory.actor(room.id)
    if actor is None:
        raise NotFound("not_live", "the broadcast is not live on this node")
    poster = Participant(
        identity=identity,
        name=body.name or "观众",
        role=Role.VIEWER,
        venue=room.main_venue.id,
        session="",
        node="",
        joined_at=0.0,
    )

    async def post(owned: OwnedRoom) -> dict[str, object]:
        return await gallery.post(owned, poster, body)

    ack = await actor.run(post, urgent=False)
    return web.json_response({"id": ack["id"], "status": ack["status"]}, status=202)


def setup(app: web.Application) -> None:
    """The edge limit's buckets."""
    app[QUESTION_LIMITS] = BucketMap(QUESTION_RATE, QUESTION_BURST)
