"""Errors a user can cause, each with a stable code and a readable message.

The HTTP edge turns them into `{"error": {"code", "message"}}` with `status`;
the Socket.IO edge into an error ack. Nothing else is shown to clients.
"""

from __future__ import annotations


class RoomError(Exception):
    """A request the domain refuses; `code` is stable and documented in docs/protocol.md."""

    status = 400

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class InvalidRequest(RoomError):
    """The request is well-formed JSON but its content is not acceptable."""

    status = 422


class NotFound(RoomError):
    """The room, participant or recording does not exist."""

    status = 404


class Forbidden(RoomError):
    """The caller's role does not allow this action."""

    status = 403


class Conflict(RoomError):
    """The action clashes with the current state (id taken, session ended, room locked...)."""

    status = 409


class Unauthorized(RoomError):
    """Missing, malformed, expired or wrongly signed credentials."""

    status = 401


class PayloadTooLarge(RoomError):
    """The request or message exceeds its size limit."""

    status = 413


class RateLimited(RoomError):
    """Too many requests from this client; try again shortly."""

    status = 429
