"""Who may watch a room's live broadcast: `public` anyone, `token` holders of a viewer token.

A viewer token (role ``viewer`` from the tokens endpoint) is presented once, as
``?token=`` on the page or the playlist; the answer sets a short-lived signed
cookie scoped to ``/live/{room}``, so the player's playlist reloads and segment
requests need no token in their URIs. ``?token=`` on any request works too
(players that keep no cookies). A cookie names the room's incarnation, so
deleting and re-creating a room voids it, as it voids tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

from aiohttp import web

from server.rooms.errors import Forbidden, Unauthorized
from server.rooms.models import Role, Room
from server.rooms.tokens import TokenSigner

COOKIE = "yitang_live"
#: A cookie is good for this long at most (and never beyond its token).
COOKIE_SECONDS = 4 * 3600
_MAX_COOKIE = 256


@dataclass(frozen=True)
class Viewer:
    """Who a request watches as: nobody in particular (public), or a viewer token's holder."""

    identity: str | None = None
    #: Set when the request presented the token: the cookie to set, until then.
    cookie_expires: int | None = None


class LiveAccess:
    """Checks viewer tokens and issues and checks the live cookie."""

    def __init__(self, signer: TokenSigner, secret: str) -> None:
        self.signer = signer
        self._key = hashlib.sha256(b"yitang live cookie\0" + secret.encode()).digest()

    def _sign(self, room: Room, identity: str, expires: int) -> str:
        message = f"{room.id}|{room.incarnation}|{identity}|{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:40]

    def cookie_value(self, room: Room, identity: str, expires: int) -> str:
        """The cookie admitting viewer `identity` to `room`'s broadcast until `expires`."""
        return f"{expires}~{identity}~{self._sign(room, identity, expires)}"

    def _cookie_viewer(self, room: Room, value: str) -> str | None:
        parts = value.split("~")
        if len(value) > _MAX_COOKIE or len(parts) != 3:
            return None
        expires_text, identity, signature = parts
        if not expires_text.isdigit() or int(expires_text) < time.time():
            return None
        if not hmac.compare_digest(signature, self._sign(room, identity, int(expires_text))):
            return None
        return identity

    def authorize(self, request: web.Request, room: Room) -> Viewer:
        """Who watches (401/403 if they may not): for a `token` broadcast the viewer's
        identity, and the cookie to set when the token came with this request."""
        if room.broadcast == "public":
            return Viewer()
        token = request.query.get("token")
        if token is None:
            cookie = request.cookies.get(COOKIE)
            identity = self._cookie_viewer(room, cookie) if cookie is not None else None
            if identity is not None:
                return Viewer(identity)
            raise Unauthorized("token_missing", "this broadcast needs a viewer link")
        claims = self.signer.verify(token)
        if claims.room != room.id or claims.incarnation != room.incarnation:
            raise Forbidden("wrong_room", "this link is for another session")
        if claims.invitee.role is not Role.VIEWER:
            raise Forbidden("not_viewer", "the live broadcast needs a viewer token")
        expires = min(claims.expires_at, int(time.time()) + COOKIE_SECONDS)
        return Viewer(claims.invitee.identity, expires)

    def set_cookie(
        self, response: web.StreamResponse, room: Room, viewer: Viewer, *, secure: bool
    ) -> None:
        """Admit this browser to the room's broadcast (when the request brought a token)."""
        if viewer.identity is None or viewer.cookie_expires is None:
            return
        expires = viewer.cookie_expires
        response.set_cookie(
            COOKIE,
            self.cookie_value(room, viewer.identity, expires),
            path=f"/live/{room.id}",
            max_age=max(0, expires - int(time.time())),
            httponly=True,
            samesite="Lax",
            secure=secure,
        )
