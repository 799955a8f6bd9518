"""Property-based tests over the Socket.IO event schemas, offline and against a live server."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.rooms.payloads import Payload
from signaling.events import (
    CLIENT_EVENTS,
    MAX_CONTROL_PAYLOAD_BYTES,
    PayloadError,
    parse_payload,
)
from signaling.server import RESERVED_EVENTS
from tests.conftest import free_port
from tests.helpers import run_server
from tests.processes import REPO

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "identity",
        "text",
        "time_limit_seconds",
        "index",
        "locked",
        "kind",
        "reason",
        "audio_muted",
        "video_muted",
        "role",
        "venue",
        "room",
    ]
)
payloads = json_values | st.dictionaries(field_names, json_values, max_size=4)
# Reserved Socket.IO names too: a client that sends `disconnect` must not fake its departure.
events = st.sampled_from(sorted(CLIENT_EVENTS) + sorted(RESERVED_EVENTS)) | st.text(max_size=30)

#: The error codes a client may see: every one is documented in docs/protocol.md.
DOCUMENTED_ERRORS = set(re.findall(r"`([a-z_]+)`", (REPO / "docs" / "protocol.md").read_text()))


@given(event=events, payload=payloads)
def test_parse_payload_accepts_or_refuses_cleanly(event: str, payload: Any) -> None:
    try:
        parsed = parse_payload(event, payload)
    except PayloadError as exc:
        assert exc.code in {"unknown_event", "invalid_payload", "payload_too_large"}
        assert exc.message
    else:
        assert isinstance(parsed, CLIENT_EVENTS[event])
        assert isinstance(parsed, Payload)


@given(text=st.text(min_size=1, max_size=1200))
def test_chat_text_limits(text: str) -> None:
    try:
        parsed = parse_payload("chat", {"text": text})
    except PayloadError:
        assert (
            len(text.strip()) == 0
            or len(text.strip()) > 1000
            or len(text.encode()) > MAX_CONTROL_PAYLOAD_BYTES
        )
    else:
        assert 1 <= len(parsed.text) <= 1000  # type: ignore[attr-defined]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(st.tuples(events, payloads), min_size=1, max_size=5))
async def test_random_events_from_a_member_never_break_the_server(
    tmp_path_factory: Any, redis_url: str, batch: list[tuple[str, Any]]
) -> None:
    # A fresh server per example would be slow; one per example batch keeps examples independent.
    async with run_server(
        tmp_path_factory.mktemp("data"),
        free_port(),
        redis_url=redis_url,
        event_rate=1000.0,
        event_burst=1000.0,
    ) as server:
        room = await server.create_room()
        member = await server.client(room["id"], "m1", "member", "zhuzhou")
        host = await server.client(room["id"], "host", "host", "hunan")
        left = False
        for event, payload in batch:
            before = member.live.version
            ack = await member.emit_raw(event, payload)
            assert isinstance(ack, dict) and isinstance(ack.get("ok"), bool), ack
            left = left or (event == "leave" and ack["ok"])
            if not ack["ok"]:
                # A clear refusal (documented, with a message), never a crash.
                assert ack["error"]["code"] != "internal_error", ack
                assert ack["error"]["code"] in DOCUMENTED_ERRORS, ack
                assert ack["error"]["message"], ack
                _, detail = await server.request("GET", f"/api/rooms/{room['id']}")
                assert detail["live"]["version"] == before, (
                    f"{event} was refused but changed the state"
                )
        # The member is still in the session (unless it left) and it still works for the host.
        _, detail = await server.request("GET", f"/api/rooms/{room['id']}")
        present = {p["identity"] for p in detail["participants"]}
        assert ("m1" in present) == (member.ended is None and not left), (present, batch)
        await host.chat("仍然可用")
        await host.close()
        await member.close()
