"""The session record REST API: attendance, speaking record, minutes, moment search, export.

Endpoints (API key; errors are ``{"error": {"code", "message"}}``):

    GET /api/rooms/{room_id}/attendance?format=json|csv          a live room, until now
    GET /api/rooms/{room_id}/speaking                            a live room, until now
    GET /api/recordings/{recording_id}/attendance?format=json|csv
    GET /api/recordings/{recording_id}/speaking
    GET /api/recordings/{recording_id}/record                    attendance + speaking + chat
    GET /api/recordings/{recording_id}/minutes?format=docx|md    the minutes draft
    GET /api/moments?q=&recording=&limit=                        search inside sessions
    GET /api/recordings/{recording_id}/export                    everything, one ZIP + SHA256SUMS
    GET /api/audit?recording=&limit=                             who deleted what, newest first

Query parameters are checked: an unknown parameter or value is a 422
``invalid_request`` naming it; ids are checked against their patterns before
Redis or the disk is touched (404 otherwise).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

from aiohttp import web
from pydantic import BaseModel

from server import appkeys
from server.http.api import Endpoint
from server.http.recordings import _guarded, _recording_id, _room_id
from server.recording.attendance import Attendance, attendance, attendance_csv
from server.recording.audit import AuditList
from server.recording.models import is_recording_id
from server.recording.moment_index import MAX_QUERY_LENGTH, MomentHits
from server.recording.session_record import (
    SessionRecord,
    live_room_source,
    recording_source,
    room_suggestions,
    session_record,
)
from server.recording.session_source import SessionSource
from server.recording.speaking import SpeakingRecord, speaking_record
from server.rooms.errors import InvalidRequest
from server.rooms.models import Suggestion


def check_query(query: Mapping[str, str], allowed: Mapping[str, tuple[str, ...] | None]) -> None:
    """Refuse unknown parameters, repeated ones, and values outside their choices (422)."""
    for name in query:
        if name not in allowed:
            known = ", ".join(allowed) or "none"
            raise InvalidRequest("invalid_request", f"{name}: unknown parameter (known: {known})")
        values = query.getall(name) if hasattr(query, "getall") else [query[name]]
        if len(values) > 1:
            raise InvalidRequest("invalid_request", f"{name}: given more than once")
        choices = allowed[name]
        if choices is not None and values[0] not in choices:
            raise InvalidRequest("invalid_request", f"{name}: must be one of {', '.join(choices)}")


def _json(model: BaseModel) -> web.Response:
    return web.Response(text=model.model_dump_json(), content_type="application/json")


def _csv(text: str, filename: str) -> web.Response:
    return web.Response(
        body=text.encode("utf-8"),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def _recording(request: web.Request) -> SessionSource:
    recording_id = _recording_id(request)
    manifest = await request.app[appkeys.RECORDING_SERVICE].manifest(recording_id)
    return recording_source(manifest)


async def _kept_suggestions(request: web.Request, source: SessionSource) -> list[Suggestion] | None:
    """The room's suggestions with their handling, if the recording's room is still kept."""
    store = request.app[appkeys.CATALOG].store
    return await room_suggestions(store, source.room.id, source.started_at)


async def _live(request: web.Request) -> SessionSource:
    room_id = _room_id(request)
    return await live_room_source(request.app[appkeys.CATALOG].store, room_id)


def _attendance_response(record: Attendance, request: web.Request, name: str) -> web.Response:
    if request.query.get("format", "json") == "csv":
        return _csv(attendance_csv(record), f"{name}-attendance.csv")
    return _json(record)


async def room_attendance(request: web.Request) -> web.Response:
    """A live room's attendance since it was created (JSON, or CSV with ``format=csv``)."""
    check_query(request.query, {"format": ("json", "csv")})
    source = await _live(request)
    return _attendance_response(attendance(source), request, source.room.id)


async def room_speaking(request: web.Request) -> web.Response:
    """A live room's speaking record since it was created."""
    check_query(request.query, {})
    return _json(speaking_record(await _live(request)))


async def recording_attendance(request: web.Request) -> web.Response:
    """A stopped recording's attendance (JSON, or CSV with ``format=csv``)."""
    check_query(request.query, {"format": ("json", "csv")})
    source = await _recording(request)
    return _attendance_response(attendance(source), request, source.recording_id or "record")


async def recording_speaking(request: web.Request) -> web.Response:
    """A stopped recording's speaking record."""
    check_query(request.query, {})
    return _json(speaking_record(await _recording(request)))


async def recording_record(request: web.Request) -> web.Response:
    """A stopped recording's whole record: attendance, speaking record, chat."""
    check_query(request.query, {})
    source = await _recording(request)
    return _json(session_record(source, await _kept_suggestions(request, source)))


DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


async def recording_minutes(request: web.Request) -> web.Response:
    """The minutes draft of a stopped recording: Word (``format=docx``, default) or Markdown."""
    check_query(request.query, {"format": ("docx", "md")})
    # Imported on first use: python-docx takes about a second to import.
    from server.recording.minutes import minutes_docx, minutes_markdown

    source = await _recording(request)
    record = session_record(source, await _kept_suggestions(request, source))
    name = f"{source.recording_id}-minutes"
    if request.query.get("format", "docx") == "md":
        return web.Response(
            text=minutes_markdown(record),
            content_type="text/markdown",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.md"'},
        )
    body = await asyncio.to_thread(minutes_docx, record)
    return web.Response(
        body=body,
        content_type=DOCX_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{name}.docx"'},
    )


MAX_MOMENTS = 200


async def search_moments(request: web.Request) -> web.Response:
    """Moments inside recordings (speeches, agenda items, chat) whose text contains ``q``."""
    query = request.query
    check_query(query, {"q": None, "recording": None, "limit": None})
    text = query.get("q", "").strip()
    if not text:
        raise InvalidRequest("invalid_request", "q: give the text to search for")
    if len(text) > MAX_QUERY_LENGTH:
        raise InvalidRequest("invalid_request", f"q: at most {MAX_QUERY_LENGTH} characters")
    recording = query.get("recording") or None
    if recording is not None and not is_recording_id(recording):
        raise InvalidRequest("invalid_request", "recording: not a recording id")
    raw_limit = query.get("limit", "50")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_MOMENTS:
        raise InvalidRequest("invalid_request", f"limit: a whole number from 1 to {MAX_MOMENTS}")
    moments = await request.app[appkeys.RECORDING_SERVICE].moments.search(
        text, recording_id=recording, limit=int(raw_limit)
    )
    return _json(MomentHits(query=text, moments=moments))


_EXPORT_CHUNK = 1 << 20


async def export_recording(request: web.Request) -> web.StreamResponse:
    """A stopped recording's whole record as one ZIP file with a SHA256SUMS list."""
    check_query(request.query, {})
    recording_id = _recording_id(request)
    archive = await request.app[appkeys.RECORDING_SERVICE].export(recording_id)
    try:
        size = os.fstat(archive.fileno()).st_size
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/zip",
                "Content-Length": str(size),
                "Content-Disposition": f'attachment; filename="{recording_id}.zip"',
                "Cache-Control": "no-store",
            }
        )
        await response.prepare(request)
        while chunk := await asyncio.to_thread(archive.read, _EXPORT_CHUNK):
            await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        archive.close()


MAX_AUDIT = 1000


async def audit_log(request: web.Request) -> web.Response:
    """Audit entries (deletions), newest first; ``recording`` narrows to one recording."""
    query = request.query
    check_query(query, {"recording": None, "limit": None})
    recording = query.get("recording") or None
    if recording is not None and not is_recording_id(recording):
        raise InvalidRequest("invalid_request", "recording: not a recording id")
    raw_limit = query.get("limit", "100")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_AUDIT:
        raise InvalidRequest("invalid_request", f"limit: a whole number from 1 to {MAX_AUDIT}")
    entries = await request.app[appkeys.RECORDING_SERVICE].audit.entries(int(raw_limit), recording)
    return _json(AuditList(entries=entries))


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "GET",
        "/api/rooms/{room_id}/attendance",
        room_attendance,
        "A live session's attendance by level and venue (format=json|csv)",
        response=Attendance,
    ),
    Endpoint(
        "GET",
        "/api/rooms/{room_id}/speaking",
        room_speaking,
        "A live session's speaking record per agenda item",
        response=SpeakingRecord,
    ),
    Endpoint(
        "GET",
        "/api/recordings/{recording_id}/attendance",
        recording_attendance,
        "A recorded session's attendance by level and venue (format=json|csv)",
        response=Attendance,
    ),
    Endpoint(
        "GET",
        "/api/recordings/{recording_id}/speaking",
        recording_speaking,
        "A recorded session's speaking record per agenda item",
        response=SpeakingRecord,
    ),
    Endpoint(
        "GET",
        "/api/recordings/{recording_id}/record",
        recording_record,
        "A recorded session's whole record: attendance, speaking record, chat",
        response=SessionRecord,
    ),
    Endpoint(
        "GET",
        "/api/recordings/{recording_id}/minutes",
        recording_minutes,
        "The minutes draft of a recorded session (format=docx|md)",
    ),
    Endpoint(
        "GET",
        "/api/moments",
        search_moments,
        "Search inside recorded sessions: speakers, agenda titles, chat (q, recording, limit)",
        response=MomentHits,
    ),
    Endpoint(
        "GET",
        "/api/recordings/{recording_id}/export",
        export_recording,
        "A recorded session's whole record as one ZIP with a SHA256SUMS checksum list",
    ),
    Endpoint(
        "GET",
        "/api/audit",
        audit_log,
        "Audit log of deletions (who, from where, what), newest first (recording, limit)",
        response=AuditList,
    ),
)


def _param(
    name: str, description: str, choices: tuple[str, ...] | None = None
) -> dict[str, object]:
    schema: dict[str, object] = {"type": "string"}
    if choices:
        schema["enum"] = list(choices)
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_FORMAT_TABLE = _param("format", "json (default) or csv", ("json", "csv"))
#: The query parameters of these endpoints, by path, for the OpenAPI document.
QUERY_PARAMETERS: dict[str, list[dict[str, object]]] = {
    "/api/rooms/{room_id}/attendance": [_FORMAT_TABLE],
    "/api/recordings/{recording_id}/attendance": [_FORMAT_TABLE],
    "/api/recordings/{recording_id}/minutes": [
        _param("format", "docx (default) or md", ("docx", "md"))
    ],
    "/api/moments": [
        {
            **_param("q", "text to find (1-100 characters; Chinese matched as substrings)"),
            "required": True,
        },
        _param("recording", "only inside this recording"),
        _param("limit", f"1-{MAX_MOMENTS}, default 50"),
    ],
    "/api/audit": [
        _param("recording", "only entries of this recording"),
        _param("limit", f"1-{MAX_AUDIT}, default 100"),
    ],
}


def add_routes(app: web.Application) -> None:
    """Register the session record endpoints (all need the API key)."""
    for endpoint in ENDPOINTS:
        app.router.add_route(endpoint.method, endpoint.path, _guarded(endpoint))
