"""The pre-session check's REST edge (no API key: the join token is the credential).

    POST /api/precheck/config   {token}              -> ICE servers, whether a relay leg runs,
                                                        the probe's targets, the last result
    POST /api/precheck          {token, leg, sdp}    -> the probe peer's answer

The room, identity and venue come from the signed token, never from the body. Calls
are limited per client address (before the token is read) and probe starts per
identity; a node runs a bounded number of probes at once (503 `precheck_busy`).
See server/precheck for what a probe measures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import Field

from server import appkeys
from server.http.api import Endpoint, client_address, read_body
from server.media import MediaConfig
from server.media.errors import MediaError
from server.media.ice_policy import IcePolicy
from server.precheck.offer import MAX_OFFER_BYTES
from server.precheck.results import PrecheckResults
from server.precheck.service import PrecheckService
from server.ratelimit import BucketMap
from server.rooms.errors import InvalidRequest, RateLimited
from server.rooms.models import Room, Strict
from server.rooms.tokens import MAX_TOKEN_LENGTH, JoinClaims
from server.turn_credentials import ice_servers

#: Calls one address may make (a check is three; a venue's few machines share an address).
ADDRESS_RATE = 1.0
ADDRESS_BURST = 30.0


class PrecheckConfigRequest(Strict):
    """A join link's token."""

    token: Annotated[str, Field(max_length=MAX_TOKEN_LENGTH)]


class PrecheckConfig(Strict):
    """What the browser needs to run the check, and the last stored result of this link."""

    identity: str
    venue: str
    venue_name: str
    #: The `RTCIceServer` list for the relay leg (TURN with a short-lived credential).
    ice_servers: list[dict[str, Any]]
    #: Whether the relay leg runs (False: the server has no TURN relay configured).
    relay: bool
    pings: int
    upload_seconds: float
    upload_kbps: int
    upload_chunk: int
    connect_timeout: float
    #: This identity's latest check (legs and overall verdict), if one is stored.
    last: dict[str, Any] | None = None


class ProbeRequest(Strict):
    """Start one leg: the browser's offer (two data channels, candidates gathered)."""

    token: Annotated[str, Field(max_length=MAX_TOKEN_LENGTH)]
    leg: Literal["direct", "relay"]
    sdp: Annotated[str, Field(min_length=1, max_length=MAX_OFFER_BYTES)]


class ProbeAnswer(Strict):
    """The probe peer's answer; the result comes over its data channel."""

    leg: Literal["direct", "relay"]
    sdp: str


async def _verified(request: web.Request, token: str) -> tuple[JoinClaims, Room]:
    if not request.app[appkeys.PRECHECK_ADDRESSES].allow(client_address(request)):
        raise RateLimited("rate_limited", "too many connection checks; wait a moment")
    catalog = request.app[appkeys.CATALOG]
    claims = catalog.signer.verify(token)
    room = await catalog.check_token(claims)
    return claims, room


async def precheck_config(request: web.Request) -> web.Response:
    """What the join page needs to run the connection check."""
    body = await read_body(request, PrecheckConfigRequest)
    claims, room = await _verified(request, body.token)
    service = request.app[appkeys.PRECHECK]
    settings = service.settings
    who = claims.invitee
    servers, _ = ice_servers(request.app[appkeys.SETTINGS].turn, who.identity)
    venue = room.venue(who.venue)
    config = PrecheckConfig(
        identity=who.identity,
        venue=who.venue,
        venue_name=venue.name if venue else who.venue,
        ice_servers=servers,
        relay=service.turn_configured,
        pings=settings.pings,
        upload_seconds=settings.upload_seconds,
        upload_kbps=settings.upload_kbps,
        upload_chunk=settings.upload_chunk,
        connect_timeout=settings.connect_timeout,
        last=await service.results.identity(room.id, who.identity),
    )
    return web.Response(text=config.model_dump_json(), content_type="application/json")


async def start_probe(request: web.Request) -> web.Response:
    """Open a probe peer for one leg and answer the browser's offer."""
    body = await read_body(request, ProbeRequest)
    claims, room = await _verified(request, body.token)
    try:
        answer = await request.app[appkeys.PRECHECK].start(
            room.id, claims.invitee, body.leg, body.sdp
        )
    except MediaError as exc:
        raise InvalidRequest(exc.code, exc.message) from None
    reply = ProbeAnswer(leg=body.leg, sdp=answer)
    return web.Response(text=reply.model_dump_json(), content_type="application/json")


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/api/precheck/config",
        precheck_config,
        "Pre-session connection check (join token, no API key): ICE servers, targets, "
        "the last result",
        PrecheckConfigRequest,
        PrecheckConfig,
        admin=False,
        rate_limited=True,
    ),
    Endpoint(
        "POST",
        "/api/precheck",
        start_probe,
        "Start one leg (direct or relay) of the connection check: the probe peer's answer "
        "(503 precheck_busy when the node runs its limit of probes)",
        ProbeRequest,
        ProbeAnswer,
        admin=False,
        rate_limited=True,
    ),
)


async def _precheck_ctx(app: web.Application) -> AsyncIterator[None]:
    """The node's probes: results in Redis, announced to the control room's operators."""
    settings = app[appkeys.SETTINGS]
    control = app[appkeys.CONTROL]
    results = PrecheckResults(
        app[appkeys.STORE].client,
        ttl_seconds=settings.precheck.result_ttl_seconds,
        turn_configured=bool(ice_servers(settings.turn, "-")[1]),
    )
    policy = IcePolicy(
        MediaConfig(
            ice_addresses=settings.ice_addresses, ice_remote_allow=settings.ice_remote_allow
        )
    )
    service = PrecheckService(settings.precheck, policy, results, on_result=control.push_precheck)
    control.read_prechecks = results.rooms
    app[appkeys.PRECHECK] = service
    try:
        yield
    finally:
        await service.close()


def add_routes(app: web.Application) -> None:
    """Register the endpoints and the probes' life cycle (after the node's)."""
    app[appkeys.PRECHECK_ADDRESSES] = BucketMap(ADDRESS_RATE, ADDRESS_BURST)
    app.cleanup_ctx.append(_precheck_ctx)
    for endpoint in ENDPOINTS:
        app.router.add_route(endpoint.method, endpoint.path, endpoint.handler)
