"""The `/room` Socket.IO protocol's limits and validation (docs/protocol.md documents it).

The events a client may send and their payload schemas are the domain's one
table (`server.rooms.commands`); this module measures and validates payloads
against it before anything is relayed. A payload that does not match is
refused with an `invalid_payload` error ack and changes nothing.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from server.rooms.acks import error as error_ack
from server.rooms.acks import ok as ok_ack
from server.rooms.commands import CLIENT_COMMANDS, CONNECTION_EVENTS
from server.rooms.models import describe
from server.rooms.payloads import MAX_SDP_BYTES, Payload

__all__ = ["error_ack", "ok_ack"]

NAMESPACE = "/room"

#: Largest JSON payload accepted for any control event (bytes, UTF-8).
MAX_CONTROL_PAYLOAD_BYTES = 4 * 1024
#: Events that carry SDP may be this large; every other event is a control event.
MAX_SDP_PAYLOAD_BYTES = MAX_SDP_BYTES + 1024
#: Largest Socket.IO message the server accepts at all (SDP offers are the biggest).
MAX_MESSAGE_BYTES = 256 * 1024
#: Longest event name echoed back in an error (names are otherwise unbounded strings).
MAX_EVENT_NAME = 64

#: Every client -> server event and its payload schema.
CLIENT_EVENTS: dict[str, type[Payload]] = {
    **CONNECTION_EVENTS,
    **{event: spec.schema for event, spec in CLIENT_COMMANDS.items()},
}

#: Events allowed above the control-event size limit, with their own limit.
LARGE_EVENTS = {"publish_offer": MAX_SDP_PAYLOAD_BYTES, "subscriber_answer": MAX_SDP_PAYLOAD_BYTES}

#: Server -> client events (payload shapes are in docs/protocol.md).
SERVER_EVENTS = (
    "participant_joined",
    "participant_left",
    "participant_updated",
    "live_state",
    "timeline",
    "mute_requested",
    "removed",
    "replaced",
    "session_ended",
    "subscriber_offer",
    "active_speaker",
    "media_connection",
    "recording",
    "recording_error",
    "media_moved",
    "resync",
    "reconnect",
    "lobby",
    "admitted",
    "lobby_closed",
)


class PayloadError(ValueError):
    """A client payload is not acceptable; `code` and message go into the error ack."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def measure(payload: Any) -> int:
    """The payload's size as JSON (UTF-8); over every limit if it is not JSON at all."""
    try:
        return len(json.dumps(payload, ensure_ascii=False).encode())
    except (TypeError, ValueError):
        return MAX_MESSAGE_BYTES + 1


def parse_payload(event: str, payload: Any) -> Payload:
    """Validate a client event's payload against its schema and size limit."""
    schema = CLIENT_EVENTS.get(event)
    if schema is None:
        raise PayloadError("unknown_event", f"unknown event {event[:MAX_EVENT_NAME]!r}")
    limit = LARGE_EVENTS.get(event, MAX_CONTROL_PAYLOAD_BYTES)
    if measure(payload) > limit:
        raise PayloadError("payload_too_large", f"{event} payload exceeds {limit} bytes")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise PayloadError("invalid_payload", f"{event} expects a JSON object")
    try:
        return schema.model_validate(payload)
    except ValidationError as exc:
        raise PayloadError("invalid_payload", f"{event}: {describe(exc, 'payload')}") from exc
