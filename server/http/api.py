"""The REST API: rooms and join tokens for organizers (API key), health for everyone.

Each endpoint is declared once in ENDPOINTS with its schemas; routes and the
OpenAPI document are both generated from that list.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from server import appkeys
from server.catalog import join_url
from server.http import health
from server.http.schemas import (
    MAX_BODY_BYTES,
    Health,
    JoinCheck,
    JoinCheckRequest,
    NodeList,
    ReadyStatus,
    RoomDetail,
    RoomList,
    RoomSummary,
    TokenRequest,
    TokenResponse,
)
from server.ratelimit import BucketMap
from server.rooms.admission import must_wait
from server.rooms.errors import (
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RoomError,
    Unauthorized,
)
from server.rooms.models import Invitee, Role, Room, RoomSpec, describe

M = TypeVar("M", bound=BaseModel)

#: Join-link checks one address may make: a page load each, and a few retries.
JOIN_CHECK_RATE = 1.0
JOIN_CHECK_BURST = 20.0


@dataclass(frozen=True)
class Endpoint:
    """One REST operation: its route, schemas and whether it needs the API key."""

    method: str
    path: str
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    summary: str
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    admin: bool = True
    #: Other statuses answered with the same `response` body (readiness: 503).
    other_statuses: tuple[int, ...] = ()
    #: Limited per client address without a key (429 when exceeded).
    rate_limited: bool = False


def client_address(request: web.Request) -> str:
    """The address failed attempts are counted against: the connection's peer."""
    return request.remote or "unknown"


def require_api_key(request: web.Request) -> None:
    """Refuse requests without `Authorization: Bearer <api key>`.

    Wrong keys count against the client's address; an address with too many
    is refused (429) even with the right key until its lock-out ends.
    """
    attempts = request.app[appkeys.ADMIN_ATTEMPTS]
    address = client_address(request)
    attempts.check(address)
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key:
        raise Unauthorized("api_key_missing", "send Authorization: Bearer <api key>")
    if not hmac.compare_digest(key.strip().encode(), request.app[appkeys.API_KEY].encode()):
        attempts.failed(address)
        raise Unauthorized("api_key_invalid", "the API key is not valid")
    attempts.succeeded(address)


async def read_body(request: web.Request, schema: type[M]) -> M:
    """Parse and validate a JSON body; 400 for bad JSON, 413 if too big, 422 if invalid."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise PayloadTooLarge("payload_too_large", f"body exceeds {MAX_BODY_BYTES} bytes")
    raw = await request.read()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RoomError("invalid_json", "the body must be a JSON object") from exc
    if not isinstance(data, dict):
        raise RoomError("invalid_json", "the body must be a JSON object")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest("invalid_request", describe(exc, "body")) from exc


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        text=model.model_dump_json(), status=status, content_type="application/json"
    )


async def list_nodes(request: web.Request) -> web.Response:
    """The live nodes of the deployment with their load, as this node knows them (it looks
    again at each heartbeat); clients are told these when they join."""
    return _json(NodeList(nodes=request.app[appkeys.CLUSTER].liveness.live_nodes))


async def create_room(request: web.Request) -> web.Response:
    """Create a consultation session."""
    spec = await read_body(request, RoomSpec)
    room = await request.app[appkeys.CATALOG].create_room(spec)
    return _json(room, 201)


async def list_rooms(request: web.Request) -> web.Response:
    """All sessions with their live state."""
    views = await request.app[appkeys.CATALOG].views()
    summaries = [
        RoomSummary(room=v.room, live=v.state.live, participant_count=len(v.participants))
        for v in views
    ]
    return _json(RoomList(rooms=summaries))


async def get_room(request: web.Request) -> web.Response:
    """One session: definition, live state, present participants, roster."""
    catalog = request.app[appkeys.CATALOG]
    view = await catalog.view(_room_id(request))
    detail = RoomDetail(
        room=view.room,
        live=view.state.live,
        participants=view.participants,
        roster=await catalog.store.roster(view.room.id),
        media_node=view.owner,
        invitations=await catalog.store.invitations(view.room.id),
    )
    return _json(detail)


async def delete_room(request: web.Request) -> web.Response:
    """Delete a session; connected participants are told and disconnected."""
    await request.app[appkeys.CATALOG].delete_room(_room_id(request))
    return web.Response(status=204)


async def issue_token(request: web.Request) -> web.Response:
    """Issue a join token and its browser link for one participant."""
    body = await read_body(request, TokenRequest)
    settings = request.app[appkeys.SETTINGS]
    invitee = Invitee.model_validate(body.model_dump(exclude={"ttl_seconds", "replace"}))
    # Any node serves any session: the link names the deployment's public URL.
    token, claims = await request.app[appkeys.CATALOG].issue_token(
        _room_id(request),
        invitee,
        body.ttl_seconds or settings.token_ttl_seconds,
        base_url=settings.base_url,
        replace=body.replace,
    )
    url = join_url(settings.base_url, token)
    if invitee.role is Role.VIEWER:
        # A viewer's link opens the live broadcast page, not the session.
        url = f"{settings.base_url}/live/{claims.room}?token={token}"
    elif invitee.role is Role.OPERATOR:
        # An operator's link opens this session's control room.
        url = f"{settings.base_url}/control?token={token}"
    return _json(TokenResponse(token=token, url=url, expires_at=claims.expires_at), 201)


async def check_join(request: web.Request) -> web.Response:
    """Check a join link before the device check, so a bad one is explained at once.

    No API key: the token is the credential. Its signature is verified first, so a
    garbled or forged token learns nothing about any session; a valid one learns
    what its holder sees on entering. Limited per address.
    """
    if not request.app[appkeys.JOIN_CHECKS].allow(client_address(request)):
        raise RateLimited("rate_limited", "too many link checks; wait a moment")
    body = await read_body(request, JoinCheckRequest)
    catalog = request.app[appkeys.CATALOG]
    claims = catalog.signer.verify(body.token)
    room = await catalog.check_token(claims)
    # As last written (a moment old at most): no round trip to the room's owner.
    state = await catalog.written_state(room)
    venue = room.venue(claims.invitee.venue)
    return _json(
        JoinCheck(
            room_id=room.id,
            **claims.invitee.model_dump(),
            venue_name=venue.name if venue else claims.invitee.venue,
            expires_at=claims.expires_at,
            title=room.title,
            scheduled_start=room.scheduled_start.isoformat(),
            status=state.live.status,
            recording=state.live.recording,
            locked=state.live.locked,
            lobby=must_wait(room, state.live, claims.invitee, admitted=state.admitted),
            agenda=[item.title for item in room.agenda],
        )
    )


_ROOM_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,47}")


def _room_id(request: web.Request) -> str:
    room_id = request.match_info["room_id"]
    # Only slugs can name a room; anything else never reaches Redis.
    if not _ROOM_ID.fullmatch(room_id):
        raise NotFound("room_not_found", "no room has this id")
    return room_id


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "GET",
        "/healthz",
        health.health,
        "Liveness: 200 while the process answers; the body says whether Redis answers",
        response=Health,
        admin=False,
    ),
    Endpoint(
        "GET",
        "/readyz",
        health.ready,
        "Readiness: 200 when Redis answers and the node is not draining, else 503 with reasons",
        response=ReadyStatus,
        admin=False,
        other_statuses=(503,),
    ),
    Endpoint("GET", "/api/nodes", list_nodes, "The deployment's live nodes", response=NodeList),
    Endpoint(
        "POST", "/api/rooms", create_room, "Create a consultation session", RoomSpec, Room, 201
    ),
    Endpoint(
        "GET", "/api/rooms", list_rooms, "List sessions with their live state", response=RoomList
    ),
    Endpoint(
        "GET", "/api/rooms/{room_id}", get_room, "One session with live state", response=RoomDetail
    ),
    Endpoint("DELETE", "/api/rooms/{room_id}", delete_room, "Delete a session", status=204),
    Endpoint(
        "POST",
        "/api/rooms/{room_id}/tokens",
        issue_token,
        "Issue a join token and link for a participant",
        TokenRequest,
        TokenResponse,
        201,
    ),
    Endpoint(
        "POST",
        "/api/join/check",
        check_join,
        "Check a join link's token (no API key): what it admits to, or why it cannot",
        JoinCheckRequest,
        JoinCheck,
        admin=False,
        rate_limited=True,
    ),
)


def _guarded(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        if endpoint.admin:
            require_api_key(request)
        return await endpoint.handler(request)

    return handle


def add_routes(app: web.Application) -> None:
    """Register every endpoint, each behind its API-key check."""
    app[appkeys.JOIN_CHECKS] = BucketMap(JOIN_CHECK_RATE, JOIN_CHECK_BURST)
    for endpoint in ENDPOINTS:
        app.router.add_route(endpoint.method, endpoint.path, _guarded(endpoint))
