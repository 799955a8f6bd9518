"""Viewers' call-ins (连线申请) at the edge: a viewer of the broadcast asks to speak, learns
the host's answer, and gets the credential to enter the room.

``POST /live/{room}/call-ins`` (``{name, district?, note?}``) answers ``202 {id, status,
handle}``. The handle (random, 32 bytes) is the page's only proof that the request is its
own: the owner keeps its SHA-256, never the handle. With it the page asks
``POST /live/{room}/call-ins/status``, ``…/accept`` and ``…/decline`` (body
``{handle}``: in a body, not a URL, so no access log or referrer keeps it). ``accept``
of an invited request answers, once, a join token for this room's incarnation: a fresh
identity, the name the viewer gave, role ``observer``, the main venue, valid
``CALL_IN_TOKEN_SECONDS`` — all decided by the owner and this node, nothing by the body.

Like viewers' questions (:mod:`.questions`), any node takes these: it checks broadcast
access, the body and the client address's rate itself, then the room's owner applies them
(over the bus when another node owns the room; `server.rooms.call_ins` has the rules).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from aiohttp import web

from server import appkeys
from server.http.api import client_address, read_body
from server.ratelimit import BucketMap
from server.rooms import acks
from server.rooms.errors import NotFound, RateLimited
from server.rooms.models import Invitee, Role, Room
from server.rooms.payloads import CallInAsk, CallInHandle, CallInOp

from .access import LiveAccess
from .questions import LOCATOR

#: Requests to speak per second and burst per client address, at the edge.
ASK_RATE = 0.1
ASK_BURST = 2.0
#: Status polls, accepts and declines per second and burst per client address (a page
#: polls every 2 s; a few viewers may share an address).
HANDLE_RATE = 2.0
HANDLE_BURST = 10.0
#: How long the join token of a viewer who accepted is valid: enough for the connection
#: and its reconnections (the seat itself waits only `stage.CALL_IN_JOIN_SECONDS`).
CALL_IN_TOKEN_SECONDS = 30 * 60
#: Random bytes in a handle (URL-safe base64: 43 characters).
HANDLE_BYTES = 32

ASK_LIMITS = web.AppKey("live_call_in_ask_limits", BucketMap[str])
HANDLE_LIMITS = web.AppKey("live_call_in_handle_limits", BucketMap[str])


def handle_digest(handle: str) -> str:
    """What the owner keeps of a handle (and looks it up by)."""
    return hashlib.sha256(handle.encode()).hexdigest()


async def _to_owner(
    request: web.Request,
    room: Room,
    op: CallInOp,
    digest: str,
    viewer: str = "",
    ask: CallInAsk | None = None,
) -> acks.Ack:
    cluster = request.app[appkeys.CLUSTER]
    owned_here = cluster.directory.actor(room.id) is not None
    if not owned_here and await request.app[LOCATOR].find(room.id) is None:
        # Nobody broadcasts it: no owner is woken up (or placed) for a viewer.
        raise NotFound("not_live", "the broadcast is not live now")
    return acks.raise_for(await cluster.router.call_in(room.id, op, digest, viewer, ask))


async def ask(request: web.Request, room: Room, viewer: str) -> web.Response:
    """Queue a request to speak; 202 with its id and the page's handle."""
    if not request.app[ASK_LIMITS].allow(client_address(request)):
        raise RateLimited("rate_limited", "too many requests from this address; wait a moment")
    body = await read_body(request, CallInAsk)
    handle = secrets.token_urlsafe(HANDLE_BYTES)
    ack = await _to_owner(request, room, "ask", handle_digest(handle), viewer, body)
    return web.json_response(
        {"id": ack["id"], "status": ack["status"], "handle": handle},
        status=202,
        headers={"Cache-Control": "no-store"},
    )


async def follow(
    request: web.Request, room: Room, op: CallInOp, access: LiveAccess
) -> web.Response:
    """`status`, `accept` or `decline` of the request the body's handle names."""
    if not request.app[HANDLE_LIMITS].allow(client_address(request)):
        raise RateLimited("rate_limited", "too many requests from this address; wait a moment")
    body = await read_body(request, CallInHandle)
    ack = await _to_owner(request, room, op, handle_digest(body.handle))
    headers = {"Cache-Control": "no-store"}
    if op != "accept":
        answer = {k: ack[k] for k in ("id", "status", "expires_at") if k in ack}
        return web.json_response(answer, headers=headers)
    invitee = Invitee(
        identity=ack["identity"], name=ack["name"], role=Role.OBSERVER, venue=ack["venue"]
    )
    token, claims = access.signer.issue(room.id, invitee, CALL_IN_TOKEN_SECONDS, room.incarnation)
    return web.json_response(
        {
            "id": ack["id"],
            "status": "accepted",
            "identity": invitee.identity,
            "token": token,
            "expires_at": claims.expires_at,
            "join_url": f"/join?token={token}&call_in=1",
        },
        headers=headers,
    )


def setup(app: web.Application) -> None:
    """The edge limits' buckets."""
    app[ASK_LIMITS] = BucketMap(ASK_RATE, ASK_BURST)
    app[HANDLE_LIMITS] = BucketMap(HANDLE_RATE, HANDLE_BURST)


def _handle_body() -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["handle"],
                    "additionalProperties": False,
                    "properties": {
                        "handle": {"type": "string", "pattern": "^[A-Za-z0-9_-]{32,64}$"}
                    },
                }
            }
        },
    }


#: The access errors every /live route may answer (see `server.broadcast.http`).
_ACCESS_ERRORS = {
    "401": "token broadcast: no viewer token or cookie, or an invalid or expired token",
    "403": "token broadcast: a token of another role or another session",
}


def _operation(
    summary: str, ok: tuple[str, str], errors: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    """One POST operation: its success (status, description), refusals and body."""
    return {
        "post": {
            "summary": summary,
            "parameters": [
                {"name": "room_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "requestBody": body,
            "responses": {
                ok[0]: {"description": ok[1]},
                **{s: {"description": d} for s, d in {**_ACCESS_ERRORS, **errors}.items()},
            },
        }
    }


_NOT_FOUND = (
    "no such room, not broadcast (broadcast_off), not live (not_live), or no request has "
    "this handle in this session (call_in_not_found)"
)
_LIMITED = "rate_limited: too many requests from this address"

#: The call-in routes in the OpenAPI document.
OPENAPI_PATHS: dict[str, dict[str, Any]] = {
    "/live/{room_id}/call-ins": _operation(
        "A viewer asks to speak (连线申请): into the hosts' call-in queue",
        (
            "202",
            "{id, status: 'pending', handle}: keep the handle, it is the only way to "
            "follow the request",
        ),
        {
            "404": _NOT_FOUND,
            "409": "call_in_open (this viewer has a request under way), call_ins_full "
            "(20 wait already), session_ended",
            "422": "invalid_request: name 1..64, district ≤ 64, note ≤ 200 characters, "
            "no other fields",
            "429": _LIMITED,
        },
        {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CallInAsk"}}},
        },
    ),
    "/live/{room_id}/call-ins/status": _operation(
        "How a request to speak stands",
        (
            "200",
            "{id, status: pending|invited|accepted|on_stage|ended|declined|dismissed|expired|"
            "withdrawn, expires_at (ms, while invited)}",
        ),
        {"404": _NOT_FOUND, "422": "invalid_request", "429": _LIMITED},
        _handle_body(),
    ),
    "/live/{room_id}/call-ins/accept": _operation(
        "Accept the host's invitation: once, a join token to enter the room as observer "
        "and take the stage seat",
        ("200", "{id, status: 'accepted', identity, token, expires_at (s), join_url}"),
        {
            "404": _NOT_FOUND,
            "409": "call_in_not_invited, call_in_used (accepted already), call_in_expired, "
            "call_in_closed (declined, dismissed, withdrawn, ended), session_ended",
            "422": "invalid_request",
            "429": _LIMITED,
        },
        _handle_body(),
    ),
    "/live/{room_id}/call-ins/decline": _operation(
        "Take the request back, or decline the invitation (the seat is free again)",
        ("200", "{id, status}"),
        {
            "404": _NOT_FOUND,
            "409": "call_in_on_stage (leave the stage from the room)",
            "422": "invalid_request",
            "429": _LIMITED,
        },
        _handle_body(),
    ),
}
