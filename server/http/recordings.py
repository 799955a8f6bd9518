"""The recordings REST API and the archive page route.

Endpoints (all JSON errors are ``{"error": {"code", "message"}}``):

    POST   /api/rooms/{room_id}/recording/start   API key, or the room's host join token -> 201
    POST   /api/rooms/{room_id}/recording/stop    API key, or the room's host join token -> 200
    GET    /api/recordings?q=&from=&to=&venue=&speaker=&limit=                 API key
    GET    /api/recordings/{recording_id}          summary + manifest + render   API key
    POST   /api/recordings/{recording_id}/render   (re)queue the combined video  API key -> 202
    DELETE /api/recordings/{recording_id}                                        API key -> 204
    GET    /api/recordings/{recording_id}/files/{name}   Range requests (206)
           API key, or ``?access=<token>`` from the detail response (so <video> can play it)
    GET    /archive                                 the archive page (asks for the API key)

``name`` must be exactly one of the manifest's files (or ``combined.mp4``);
ids and names are checked against their patterns before any disk access, and
the resolved path must stay inside the recording's folder.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta, timezone

from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from server import appkeys
from server.http.api import Endpoint, client_address, require_api_key
from server.http.pages import STATIC_DIR
from server.recording.errors import RecordingNotFound
from server.recording.models import (
    RecordingDetail,
    RecordingInfo,
    RecordingList,
    RenderStatus,
    is_file_name,
    is_recording_id,
)
from server.rooms import acks
from server.rooms.errors import InvalidRequest, NotFound, Unauthorized
from server.rooms.models import DisplayName, Role

#: How long a file access token from the detail response stays valid (seconds).
ACCESS_TTL = 6 * 3600
#: Date-only search bounds are days in China Standard Time (UTC+8, no daylight saving).
ARCHIVE_TZ = timezone(timedelta(hours=8))
MAX_LIMIT = 500

_CONTENT_TYPES = {
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".mp4": "video/mp4",
}
_ROOM_ID_LENGTH = 48


# --- access tokens for file URLs -----------------------------------------------------------


def access_token(secret: str, recording_id: str, expires: int) -> str:
    """``<expiry>.<signature>``: lets a URL fetch one recording's files until ``expires``."""
    message = f"{recording_id}\n{expires}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return f"{expires}.{base64.urlsafe_b64encode(digest).decode().rstrip('=')}"


def check_access_token(secret: str, recording_id: str, token: str) -> bool:
    """Whether ``token`` was made by :func:`access_token` for this recording and is valid now."""
    expiry, _, _ = token.partition(".")
    if not expiry.isdigit() or len(token) > 128:
        return False
    expires = int(expiry)
    if expires < time.time():
        return False
    return hmac.compare_digest(token, access_token(secret, recording_id, expires))


# --- authorization -------------------------------------------------------------------------


def _bearer(request: web.Request) -> str:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


async def require_key_or_host(request: web.Request, room_id: str) -> str:
    """The API key, or a host join token for ``room_id`` still admitted; returns who is acting.

    Credentials that are neither count as a failed attempt of the client's address,
    and a locked-out address is refused (429), as in :func:`require_api_key`.

    A host token must pass the domain's admission check too: a host the session
    removed, or a token of a session that no longer exists or has ended, is refused
    with that check's error (``removed`` 403, ``room_not_found`` 404, ``session_ended``
    409, ...), exactly as joining would be.
    """
    attempts = request.app[appkeys.ADMIN_ATTEMPTS]
    address = client_address(request)
    attempts.check(address)
    token = _bearer(request)
    if token and hmac.compare_digest(token.encode(), request.app[appkeys.API_KEY].encode()):
        attempts.succeeded(address)
        return "api"
    if not token:
        raise Unauthorized("api_key_missing", "send Authorization: Bearer <api key or host token>")
    catalog = request.app[appkeys.CATALOG]
    try:
        claims = catalog.signer.verify(token)
    except Unauthorized as exc:
        # Neither the key nor a token we signed: a guess, counted like a wrong key.
        attempts.failed(address)
        raise Unauthorized("credentials_invalid", "neither the API key nor a valid token") from exc
    if claims.room != room_id or claims.invitee.role is not Role.HOST:
        raise Unauthorized("not_host", "only the host of this session may do this")
    await catalog.check_token(claims, fresh=True)
    return f"host:{claims.invitee.identity}"


def _room_id(request: web.Request) -> str:
    room_id = request.match_info["room_id"]
    if len(room_id) > _ROOM_ID_LENGTH or not is_recording_id(room_id):
        raise NotFound("room_not_found", "no room has this id")
    return room_id


def _recording_id(request: web.Request) -> str:
    recording_id = request.match_info["recording_id"]
    if not is_recording_id(recording_id):
        raise RecordingNotFound("recording_not_found", "no recording has this id")
    return recording_id


def _json(
    model: RecordingInfo | RecordingList | RecordingDetail | RenderStatus, status: int = 200
) -> web.Response:
    return web.Response(
        text=model.model_dump_json(), status=status, content_type="application/json"
    )


# --- handlers ------------------------------------------------------------------------------


async def start_recording(request: web.Request) -> web.Response:
    """Start recording a session whose media this node hosts."""
    room_id = _room_id(request)
    actor = await require_key_or_host(request, room_id)
    ack = await request.app[appkeys.CLUSTER].router.admin(room_id, "start_recording", actor)
    return _json(RecordingInfo.model_validate(acks.raise_for(ack)["recording"]), 201)


async def stop_recording(request: web.Request) -> web.Response:
    """Stop the session's recording (files closed, manifest written, combined video queued)."""
    room_id = _room_id(request)
    actor = await require_key_or_host(request, room_id)
    ack = await request.app[appkeys.CLUSTER].router.admin(room_id, "stop_recording", actor)
    return _json(RecordingInfo.model_validate(acks.raise_for(ack)["recording"]))


def _time_bound(value: str | None, name: str, end_of_day: bool) -> float | None:
    if not value:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=ARCHIVE_TZ)
            if end_of_day:
                moment += timedelta(days=1)
            return moment.timestamp() - (0.001 if end_of_day else 0.0)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidRequest("invalid_request", f"{name}: not an ISO 8601 date or time") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ARCHIVE_TZ)
    return parsed.timestamp()


async def list_recordings(request: web.Request) -> web.Response:
    """The archive, newest first; filters: q (title), from, to, venue, speaker, limit."""
    query = request.query
    try:
        limit = min(max(int(query.get("limit", "100")), 1), MAX_LIMIT)
    except ValueError as exc:
        raise InvalidRequest("invalid_request", "limit: not a number") from exc
    for name in ("q", "venue", "speaker"):
        if len(query.get(name, "")) > 200:
            raise InvalidRequest("invalid_request", f"{name}: at most 200 characters")
    found, renders = await request.app[appkeys.RECORDING_SERVICE].search(
        query=query.get("q") or None,
        since=_time_bound(query.get("from"), "from", end_of_day=False),
        until=_time_bound(query.get("to"), "to", end_of_day=True),
        venue=query.get("venue") or None,
        speaker=query.get("speaker") or None,
        limit=limit,
    )
    return _json(RecordingList(recordings=found, render=renders))


async def get_recording(request: web.Request) -> web.Response:
    """One recording: summary, manifest, render job status, and a file access token."""
    recording_id = _recording_id(request)
    expires = int(time.time()) + ACCESS_TTL
    token = access_token(request.app[appkeys.API_KEY], recording_id, expires)
    detail = await request.app[appkeys.RECORDING_SERVICE].detail(recording_id, token, expires)
    return _json(detail)


async def render_recording(request: web.Request) -> web.Response:
    """Queue the combined video (again); its progress shows in the detail's ``render``."""
    status = await request.app[appkeys.RECORDING_SERVICE].render(_recording_id(request))
    return _json(status, 202)


#: The optional header naming the person deleting (the API key is shared; audit needs a name).
OPERATOR_HEADER = "X-Yitang-Operator"


def _operator(request: web.Request) -> str | None:
    raw = request.headers.get(OPERATOR_HEADER)
    if raw is None:
        return None
    try:
        # Percent-encoded UTF-8, since browsers send only Latin-1 header values.
        name = urllib.parse.unquote(raw, errors="strict")
        name.encode("utf-8")
        return TypeAdapter(DisplayName).validate_python(name)
    except (ValidationError, UnicodeError) as exc:
        raise InvalidRequest(
            "invalid_request", f"{OPERATOR_HEADER}: 1 to 64 characters, no control characters"
        ) from exc


async def delete_recording(request: web.Request) -> web.Response:
    """Delete a recording's files and archive entry (audited: who, from where, what)."""
    recording_id = _recording_id(request)
    operator = _operator(request)
    await request.app[appkeys.RECORDING_SERVICE].delete(
        recording_id, by="api", operator=operator, address=client_address(request)
    )
    return web.Response(status=204)


async def get_file(request: web.Request) -> web.StreamResponse:
    """One file of a recording, with Range support (206 Partial Content)."""
    recording_id = _recording_id(request)
    access = request.query.get("access", "")
    if not (access and check_access_token(request.app[appkeys.API_KEY], recording_id, access)):
        require_api_key(request)
    name = request.match_info["name"]
    if not is_file_name(name):
        raise RecordingNotFound("file_not_found", "no file has this name")
    service = request.app[appkeys.RECORDING_SERVICE]
    manifest = await service.manifest(recording_id)
    if not manifest.downloadable(name):
        raise RecordingNotFound("file_not_found", "this recording has no file with this name")
    directory = service.directory(recording_id).resolve()
    path = (directory / name).resolve()
    if path.parent != directory or not path.is_file():
        raise RecordingNotFound("file_not_found", "this recording has no file with this name")
    headers = {
        "Content-Type": _CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
        "Cache-Control": "private, max-age=3600",
    }
    if request.query.get("download"):
        headers["Content-Disposition"] = f'attachment; filename="{recording_id}-{name}"'
    return web.FileResponse(path, headers=headers)


async def archive_page(request: web.Request) -> web.FileResponse:
    """The archive page (it asks for the API key and keeps it in sessionStorage)."""
    return web.FileResponse(STATIC_DIR / "archive.html", headers={"Cache-Control": "no-cache"})


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/api/rooms/{room_id}/recording/start",
        start_recording,
        "Start recording a session (API key, or the session host's join token)",
        response=RecordingInfo,
        status=201,
    ),
    Endpoint(
        "POST",
        "/api/rooms/{room_id}/recording/stop",
        stop_recording,
        "Stop recording a session (API key, or the session host's join token)",
        response=RecordingInfo,
    ),
    Endpoint(
        "GET",
        "/api/recordings",
        list_recordings,
        "Search the archive: q (title), from, to, venue, speaker, limit",
        response=RecordingList,
    ),
    Endpoint(
        "GET",
        "/api/recordings/{recording_id}",
        get_recording,
        "One recording: summary, manifest, combined-video job",
        response=RecordingDetail,
    ),
    Endpoint(
        "POST",
        "/api/recordings/{recording_id}/render",
        render_recording,
        "Queue the combined video of a recording",
        response=RenderStatus,
        status=202,
    ),
    Endpoint(
        "DELETE",
        "/api/recordings/{recording_id}",
        delete_recording,
        "Delete a recording",
        status=204,
    ),
    Endpoint(
        "GET",
        "/api/recordings/{recording_id}/files/{name}",
        get_file,
        "Download or stream a recording file (Range requests; API key or ?access= token)",
    ),
)

#: Endpoints that check credentials themselves (host tokens, access tokens).
_SELF_AUTHORIZED = {start_recording, stop_recording, get_file}


def _guarded(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        if endpoint.admin and endpoint.handler not in _SELF_AUTHORIZED:
            require_api_key(request)
        return await endpoint.handler(request)

    return handle


def add_routes(app: web.Application) -> None:
    """Register the recording endpoints and the archive page."""
    for endpoint in ENDPOINTS:
        app.router.add_route(endpoint.method, endpoint.path, _guarded(endpoint))
    app.router.add_get("/archive", archive_page)
