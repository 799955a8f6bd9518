"""Signed join tokens (JWT, HS256): the only source of a participant's room, role and venue.

The server never takes those from what a client sends; it reads them from a
token it signed itself. A token also names the room's incarnation: deleting a
room and creating one with the same id makes every earlier token void.
"""

from __future__ import annotations

import time
import uuid

import jwt
from pydantic import ValidationError

from server.rooms.errors import Unauthorized
from server.rooms.models import Invitee, Slug, Strict

ISSUER = "yitang"
ALGORITHM = "HS256"
#: Tokens longer than this are refused before any decoding is attempted.
MAX_TOKEN_LENGTH = 2048


class JoinClaims(Strict):
    """What a verified token says: who, where, with which role, until when."""

    room: Slug
    invitee: Invitee
    expires_at: int
    token_id: str
    #: The room's incarnation when the token was issued ("" for rooms made before them).
    incarnation: str = ""


class TokenSigner:
    """Issues and verifies join tokens with one secret key."""

    def __init__(self, secret: str) -> None:
        if len(secret) < 32:
            raise ValueError("token secret must be at least 32 characters")
        self._secret = secret

    def issue(
        self, room_id: str, invitee: Invitee, ttl_seconds: int, incarnation: str = ""
    ) -> tuple[str, JoinClaims]:
        """Sign a token for `invitee` in this incarnation of `room_id`, valid for `ttl_seconds`."""
        now = int(time.time())
        claims = JoinClaims(
            room=room_id,
            invitee=invitee,
            expires_at=now + ttl_seconds,
            token_id=uuid.uuid4().hex,
            incarnation=incarnation,
        )
        payload = {
            "iss": ISSUER,
            "sub": invitee.identity,
            "iat": now,
            "exp": claims.expires_at,
            "jti": claims.token_id,
            "room": room_id,
            "name": invitee.name,
            "role": invitee.role.value,
            "venue": invitee.venue,
            "inc": incarnation,
        }
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM), claims

    def verify(self, token: object) -> JoinClaims:
        """Return the claims of a valid token; raise Unauthorized with the reason otherwise."""
        if not isinstance(token, str) or not token:
            raise Unauthorized("token_missing", "a join token is required")
        if len(token) > MAX_TOKEN_LENGTH:
            raise Unauthorized("token_invalid", "the join token is too long")
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "iss", "jti"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token_expired", "the join token has expired") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized("token_invalid", "the join token is not valid") from exc
        try:
            return JoinClaims.model_validate(
                {
                    "room": payload.get("room"),
                    "invitee": {
                        "identity": payload.get("sub"),
                        "name": payload.get("name"),
                        "role": payload.get("role"),
                        "venue": payload.get("venue"),
                    },
                    "expires_at": payload["exp"],
                    "token_id": payload["jti"],
                    "incarnation": payload.get("inc", ""),
                }
            )
        except ValidationError as exc:
            raise Unauthorized("token_invalid", "the join token's claims are not valid") from exc
