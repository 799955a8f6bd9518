"""The one exception type the media layer raises for caller-visible failures."""

from __future__ import annotations

from typing import Final

#: Error codes a caller can switch on. Each maps to a client-facing 4xx-style reply.
ERROR_CODES: Final = frozenset(
    {
        "bad_sdp",  # malformed, oversized or unsupported SDP
        "bad_candidate",  # malformed, oversized or disallowed ICE candidate
        "bad_participant_id",  # participant id not usable as an SDP token
        "not_allowed",  # the participant's role forbids the operation
        "unknown_participant",  # no such participant in this room
        "participant_exists",  # add_participant for an id already present
        "bad_state",  # e.g. an answer when no offer is outstanding
        "closed",  # the room or node is closed
    }
)


class MediaError(Exception):
    """A failure the caller (and ultimately the client) caused or must know about.

    ``code`` is one of :data:`ERROR_CODES`; ``message`` is safe to show to a user
    (it never contains SDP or tracebacks).
    """

    def __init__(self, code: str, message: str) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown media error code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
