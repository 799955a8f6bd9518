"""Relaying a `/live/{room}` request to the node whose worker writes the broadcast.

Used by a node that is not the room's owner and cannot read the owner's
directory (another box). Only the known file names reach here (the routes
check them), the viewer's ``?token=`` and live cookie go along (the owner
checks access again), and the answer streams back with its content type and
cache header; the edge sets its own cookie. Bounded: connecting and each read
time out, a file larger than ``max_bytes`` is cut off. A request that was
relayed once carries ``RELAYED_HEADER`` and is never relayed again (a stale
record cannot make two nodes bounce a request between them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import aiohttp
from aiohttp import web

from server.rooms.errors import NotFound, RoomError

from .access import COOKIE
from .locator import BroadcastLocation

logger = logging.getLogger(__name__)

#: Marks a request one node relayed to another.
RELAYED_HEADER = "X-Yitang-Live-Relayed"
#: The ``Via`` header of a relayed answer (RFC 9110: a proxy says so).
VIA = "1.1 yitang-live"
#: Connecting to the owner, and waiting for each chunk of its answer (seconds).
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 5.0
#: A whole relayed answer at most (seconds); segments are 2 s of video.
TOTAL_TIMEOUT = 20.0
#: The largest file relayed: a 2 s 720p segment is well under 2 MB.
MAX_BYTES = 32 * 1024 * 1024
_CHUNK = 64 * 1024
#: An owner's error answer relayed as it is (a small JSON body) up to this size.
_MAX_ERROR_BYTES = 4096


class OwnerUnreachable(RoomError):
    """The owner of the broadcast did not answer (the player retries)."""

    status = 502


class BroadcastRelay:
    """One HTTP client for the node's relayed requests."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(
                total=TOTAL_TIMEOUT, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT
            )
            # No cookie jar: each viewer's cookie is forwarded with its own request only.
            self._session = aiohttp.ClientSession(
                timeout=timeout, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
            )
        return self._session

    async def close(self) -> None:
        """Close the client (the node is stopping)."""
        if self._session is not None:
            await self._session.close()

    async def get(
        self,
        request: web.Request,
        location: BroadcastLocation,
        room_id: str,
        name: str,
        finish: Callable[[web.StreamResponse], None],
    ) -> web.StreamResponse:
        """Fetch `/live/{room_id}/{name}` from the owner and stream it to the viewer
        (`finish` adds this node's headers, such as the cookie, before it is sent)."""
        if RELAYED_HEADER in request.headers:
            raise NotFound("not_live", "the broadcast is not live on this node")
        headers = {RELAYED_HEADER: "1"}
        cookie = request.cookies.get(COOKIE)
        if cookie is not None:
            headers["Cookie"] = f"{COOKIE}={cookie}"
        params = {"token": request.query["token"]} if "token" in request.query else None
        url = f"{location.url.rstrip('/')}/live/{room_id}/{name}"
        try:
            async with self._client().get(url, headers=headers, params=params) as upstream:
                return await self._stream(request, upstream, finish)
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.info("relaying %s from %s failed: %r", name, location.node, exc)
            raise OwnerUnreachable(
                "owner_unreachable", "the node with this broadcast did not answer; try again"
            ) from exc

    async def _stream(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        finish: Callable[[web.StreamResponse], None],
    ) -> web.StreamResponse:
        if upstream.status != 200:
            # The owner's refusal (404 not_live, 401, 403 ...) as it is, small and JSON.
            body = await upstream.content.read(_MAX_ERROR_BYTES)
            return web.Response(status=upstream.status, body=body, content_type="application/json")
        length = upstream.content_length
        if length is not None and length > self.max_bytes:
            raise OwnerUnreachable("too_large", "the broadcast's file is too large to relay")
        response = web.StreamResponse(status=200, headers={"Via": VIA})
        for header in ("Content-Type", "Cache-Control", "Content-Length", "Last-Modified", "ETag"):
            value = upstream.headers.get(header)
            if value is not None:
                response.headers[header] = value
        finish(response)
        await response.prepare(request)
        sent = 0
        async for chunk in upstream.content.iter_chunked(_CHUNK):
            sent += len(chunk)
            if sent > self.max_bytes:
                # Headers are gone: cutting the connection is the only refusal left.
                raise ConnectionResetError("relayed file over the size limit")
            await response.write(chunk)
        await response.write_eof()
        return response
