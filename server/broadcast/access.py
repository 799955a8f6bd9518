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

from aiohttp import web

from server.rooms.errors import Forbidden, Unauthorized
from server.rooms.models import Role, Room
from server.rooms.tokens import TokenSigner

COOKIE = "yitang_live"
#: A cookie is good for this long at most (and never beyond its token).
COOKIE_SECONDS = 4 * 3600
_MAX_COOKIE = 256


class LiveAccess:
    """Checks viewer tokens and issues and checks the live cookie."""

    def __init__(self, signer: TokenSigner, secret: str) -> None:
        self.signer = signer
        self._key = hashlib.sha256(b"yitang live cookie\0" + secret.encode()).digest()

    def _sign(self, room: Room, expires: int) -> str:
        message = f"{room.id}|{room.incarnation}|{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:40]

    def cookie_value(self, room: Room, expires: int) -> str:
        """The cookie admitting to `room`'s broadcast until `expires` (epoch seconds)."""
        return f"{expires}.{self._sign(room, expires)}"

    def _cookie_ok(self, room: Room, value: str) -> bool:
        if len(value) > _MAX_COOKIE or "." not in value:
            return False
        expires_text, signature = value.split(".", 1)
        if not expires_text.isdigit() or int(expires_text) < time.time():
            return False
        return hmac.compare_digest(signature, self._sign(room, int(expires_text)))

    def authorize(self, request: web.Request, room: Room) -> int | None:
        """Refuse (401/403) a request that may not watch; the cookie expiry to set, if a
        token was presented, else None."""
        if room.broadcast == "public":
            return None
        token = request.query.get("token")
        if token is None:
            cookie = request.cookies.get(COOKIE)
            if cookie is not None and self._cookie_ok(room, cookie):
                return None
            raise Unauthorized("token_missing", "this broadcast needs a viewer link")
        claims = self.signer.verify(token)
        if claims.room != room.id or claims.incarnation != room.incarnation:
            raise Forbidden("wrong_room", "this link is for another session")
        if claims.invitee.role is not Role.VIEWER:
            raise Forbidden("not_viewer", "the live broadcast needs a viewer token")
        return min(claims.expires_at, int(time.time()) + COOKIE_SECONDS)

    def set_cookie(
        self, response: web.StreamResponse, room: Room, expires: int, *, secure: bool
    ) -> None:
        """Admit this browser to the room's broadcast until `expires`."""
        response.set_cookie(
            COOKIE,
            self.cookie_value(room, expires),
            path=f"/live/{room.id}",
            max_age=max(0, expires - int(time.time())),
            httponly=True,
            samesite="Lax",
            secure=secure,
        )
