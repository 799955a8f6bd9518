"""The micro-suggestions REST API (微建议).

    POST  /api/rooms/{room_id}/suggestions                  a member submits (join token)
    GET   /api/rooms/{room_id}/suggestions                  every suggestion (API key)
    PATCH /api/rooms/{room_id}/suggestions/{suggestion_id}  status and reply (API key)

Submitting needs no API key: `Authorization: Bearer <join token>` is the
credential, and who submits (identity, name, role, venue) comes from the
token. The submission goes to the room's owner like the socket's
`suggestion_submit`, so it is the way to submit before the session (nobody
has to join, and the session does not go live). Limited per address, like the
join-link check, besides the owner's per-identity limits.

Listing and handling read the suggestions as the owner last wrote them (its
snapshot), so they work while the session runs, after it has ended, and with
no node owning the room; the status and reply are kept apart
(`server.state.suggestion_replies`).
"""

from __future__ import annotations

import re
import time

from aiohttp import web
from pydantic import BaseModel, model_validator

from server import appkeys
from server.http.api import Endpoint, _room_id, client_address, read_body, require_api_key
from server.rooms import acks
from server.rooms.errors import NotFound, RateLimited, Unauthorized
from server.rooms.models import Caller, Strict, Suggestion, SuggestionReply, SuggestionStatus
from server.rooms.payloads import SuggestionSubmit
from server.state.suggestion_replies import SuggestionHandling, SuggestionReplies, handled

_SUGGESTION_ID = re.compile(r"s[0-9]{1,9}")


class SuggestionList(BaseModel):
    """A room's suggestions, in the order they were submitted, with their handling."""

    room_id: str
    suggestions: list[Suggestion]


class SuggestionCreated(BaseModel):
    """The suggestion as the room's owner kept it."""

    suggestion: Suggestion


class SuggestionUpdate(Strict):
    """The secretariat's handling of one suggestion; `answered` needs a reply."""

    status: SuggestionStatus
    reply: SuggestionReply | None = None

    @model_validator(mode="after")
    def _answered_has_reply(self) -> SuggestionUpdate:
        if self.status == "answered" and not self.reply:
            raise ValueError("an answered suggestion needs its reply")
        return self


def _replies(request: web.Request) -> SuggestionReplies:
    return SuggestionReplies(request.app[appkeys.CATALOG].store.client)


async def _kept(request: web.Request, room_id: str) -> list[Suggestion]:
    """The room's suggestions as its owner last wrote them (404 when the room is gone)."""
    store = request.app[appkeys.CATALOG].store
    if await store.get_room(room_id) is None:
        raise NotFound("room_not_found", "no room has this id")
    snapshot = await store.snapshot(room_id)
    return list(snapshot.suggestions) if snapshot is not None else []


async def list_suggestions(request: web.Request) -> web.Response:
    """Every suggestion of a session (live or ended), with its status and reply."""
    room_id = _room_id(request)
    kept = await _kept(request, room_id)
    found = handled(kept, await _replies(request).all(room_id))
    return web.json_response(
        text=SuggestionList(room_id=room_id, suggestions=found).model_dump_json()
    )


async def update_suggestion(request: web.Request) -> web.Response:
    """Set a suggestion's status (received / forwarded / answered) and reply."""
    room_id = _room_id(request)
    suggestion_id = request.match_info["suggestion_id"]
    if not _SUGGESTION_ID.fullmatch(suggestion_id):
        raise NotFound("suggestion_not_found", "no suggestion has this id")
    body = await read_body(request, SuggestionUpdate)
    kept = {s.id: s for s in await _kept(request, room_id)}
    if suggestion_id not in kept:
        raise NotFound("suggestion_not_found", "no suggestion has this id")
    handling = SuggestionHandling(
        status=body.status, reply=body.reply, handled_at=time.time() * 1000
    )
    await _replies(request).set(room_id, suggestion_id, handling)
    (updated,) = handled([kept[suggestion_id]], {suggestion_id: handling})
    return web.json_response(text=updated.model_dump_json())


async def submit_suggestion(request: web.Request) -> web.Response:
    """A member submits a suggestion with their join token (before or during the session)."""
    if not request.app[appkeys.JOIN_CHECKS].allow(client_address(request)):
        raise RateLimited("rate_limited", "too many requests; wait a moment")
    room_id = _room_id(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("token_missing", "send Authorization: Bearer <join token>")
    catalog = request.app[appkeys.CATALOG]
    claims = catalog.signer.verify(token.strip())
    if claims.room != room_id:
        # The room comes from the token; a token of another room is no credential here.
        raise NotFound("room_not_found", "this join token is not for this session")
    await catalog.check_token(claims)
    body = await read_body(request, SuggestionSubmit)
    cluster = request.app[appkeys.CLUSTER]
    caller = Caller(**claims.invitee.model_dump(), session="", node=cluster.node_id)
    ack = await cluster.router.event(room_id, caller, "suggestion_submit", body)
    suggestion = Suggestion.model_validate(acks.raise_for(ack)["suggestion"])
    return web.json_response(
        text=SuggestionCreated(suggestion=suggestion).model_dump_json(), status=201
    )


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/api/rooms/{room_id}/suggestions",
        submit_suggestion,
        "A member submits a micro-suggestion (join token as Bearer, no API key), "
        "before or during the session",
        SuggestionSubmit,
        SuggestionCreated,
        201,
        admin=False,
        rate_limited=True,
    ),
    Endpoint(
        "GET",
        "/api/rooms/{room_id}/suggestions",
        list_suggestions,
        "A session's micro-suggestions with their status and reply (live or ended)",
        response=SuggestionList,
    ),
    Endpoint(
        "PATCH",
        "/api/rooms/{room_id}/suggestions/{suggestion_id}",
        update_suggestion,
        "Set a micro-suggestion's status (received/forwarded/answered) and reply",
        SuggestionUpdate,
        Suggestion,
    ),
)


def add_routes(app: web.Application) -> None:
    """Register the suggestion endpoints (listing and handling need the API key)."""
    for endpoint in ENDPOINTS:

        async def handle(request: web.Request, endpoint: Endpoint = endpoint) -> web.StreamResponse:
            if endpoint.admin:
                require_api_key(request)
            return await endpoint.handler(request)

        app.router.add_route(endpoint.method, endpoint.path, handle)
