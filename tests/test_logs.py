"""Logs an operator can use: JSON lines with context, and never a token or a key.

The suite-wide check itself (every log line of every test, tests/log_secrets.py)
is shown here to catch what it is meant to catch.
"""

from __future__ import annotations

import contextvars
import io
import json
import logging
from pathlib import Path

import aiohttp

from server import log_context
from server.logging_setup import JsonFormatter, ScrubbingTextFormatter, SecretScrubber
from server.rooms.models import Invitee, Role
from server.rooms.tokens import TokenSigner
from signaling.client import RoomClient
from tests.conftest import free_port
from tests.helpers import ROOM_SPEC, eventually
from tests.log_secrets import GuardHandler, LogSecretsGuard
from tests.processes import server_process

SECRET = "s" * 40
API_KEY = "an-admin-key-of-the-test-0123456789"


def _token() -> str:
    invitee = Invitee(identity="m1", name="m1", role=Role.MEMBER, venue="zhuzhou")
    token, _ = TokenSigner(SECRET).issue("room-1", invitee, 3600)
    return token


def test_the_guard_finds_a_planted_token_a_key_and_a_bearer_header() -> None:
    guard = LogSecretsGuard()
    guard.add_secrets(API_KEY)
    logger = logging.getLogger("tests.planted")
    handler = GuardHandler(guard)
    logger.addHandler(handler)
    # Planted lines stay out of the run's own guard (it would rightly fail this test).
    logger.propagate = False
    try:
        logger.warning("GET /join?token=%s 200", _token())
        logger.warning("nothing to see: room-1 joined by m1")
        try:
            raise RuntimeError(f"bad key {API_KEY}")
        except RuntimeError:
            logger.exception("request failed")  # the key is in the traceback only
        logger.warning("headers: Authorization: Bearer abcdefghijklmnop")
        logger.warning("send Authorization: Bearer <api key>")  # help text, not a credential
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    findings = guard.findings()
    assert len(findings) == 3, findings
    assert "a JWT" in findings[0]
    assert "a server secret" in findings[1]
    assert "a bearer credential" in findings[2]
    guard.add_lines("server process", ["2026-12-01 INFO x: Admin API key: " + API_KEY])
    assert len(guard.findings()) == 4


def _record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError(f"failed with {API_KEY}")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    record = logging.LogRecord("server.x", logging.WARNING, __file__, 1, message, args, exc_info)
    record.event = "join"
    return record


def test_json_lines_carry_context_and_no_secrets() -> None:
    scrubber = SecretScrubber([API_KEY])
    formatter = JsonFormatter(scrubber)

    def in_a_request() -> str:
        log_context.node.set("node-a")
        log_context.room.set("room-1")
        log_context.identity.set("m1")
        return formatter.format(_record("join with %s", _token(), exc=True))

    line = contextvars.copy_context().run(in_a_request)
    assert "\n" not in line
    fields = json.loads(line)
    assert fields["level"] == "warning"
    assert fields["logger"] == "server.x"
    assert fields["time"].endswith("Z")
    assert (fields["node"], fields["room"], fields["identity"]) == ("node-a", "room-1", "m1")
    assert fields["event"] == "join"
    assert fields["message"] == "join with [redacted]"
    assert "ValueError: failed with [redacted]" in fields["exception"]
    # Outside any room, the fields are absent rather than null.
    outside = json.loads(formatter.format(_record("plain")))
    assert "room" not in outside and "identity" not in outside
    text = ScrubbingTextFormatter(scrubber).format(_record("key %s", API_KEY))
    assert API_KEY not in text and "key [redacted]" in text


async def test_serve_writes_json_lines_naming_node_room_and_identity(tmp_path: Path) -> None:
    port = free_port()
    args = ("--log-format", "json", "--render-workers", "1")  # workers share the log
    async with server_process(tmp_path / "data", port, *args) as server:
        headers = {"Authorization": f"Bearer {server.api_key}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.post(f"{server.base_url}/api/rooms", json=ROOM_SPEC) as response:
                room_id = (await response.json())["id"]
            body = {"identity": "m1", "name": "m1", "role": "member", "venue": "zhuzhou"}
            url = f"{server.base_url}/api/rooms/{room_id}/tokens"
            async with http.post(url, json=body) as response:
                token = (await response.json())["token"]
            # A join link fetched: the access log line must not show the token.
            async with http.get(f"{server.base_url}/join?token={token}") as response:
                assert response.status == 200
        client = RoomClient(server.base_url, token)
        await client.connect()
        await client.close()
        await eventually(
            lambda: '"logger": "rq.' in server.log.read_text(), "the render worker logs", 30
        )
        assert await server.stop() == 0
    lines = [json.loads(line) for line in server.log.read_text().splitlines() if line.strip()]
    nodes = {line.get("node") for line in lines if line["logger"].startswith("server.")}
    assert len(nodes) == 1 and None not in nodes, nodes
    joins = [line for line in lines if line.get("event") == "join"]
    assert joins and joins[0]["room"] == room_id and joins[0]["identity"] == "m1"
    assert joins[0]["message"].endswith(": ok")
    access = [line["message"] for line in lines if "/join?" in line["message"]]
    assert access and all("token=[redacted]" in m for m in access), access
    assert any(line.get("event") == "started" for line in lines)
    assert any(line["logger"].startswith("rq.") for line in lines), "the render worker's lines"
    # A REST call about a room is logged as that room's.
    issued = [line for line in lines if f"POST /api/rooms/{room_id}/tokens" in line["message"]]
    assert issued and issued[0].get("room") == room_id, issued
    # The graceful shutdown says how it went.
    drained = [line for line in lines if line.get("event") == "drained"]
    assert len(drained) == 1 and "1 of 1 rooms handed over" in drained[0]["message"], drained


def test_an_io_stream_gets_one_object_per_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(SecretScrubber()))
    logger = logging.getLogger("tests.json_stream")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("first\nsecond line of the same record")
        logger.warning("third")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["message"] for line in lines] == [
        "first\nsecond line of the same record",
        "third",
    ]
