"""The HTTP edge against browsers and guessers: security headers, Socket.IO origins, the
access log without tokens, and the lock-out of addresses that guess the admin key."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from server import appkeys
from server.app import create_app
from server.http.access_log import redact_url
from server.http.attempts import FailedAttempts
from server.http.pages import STATIC_DIR
from server.settings import Settings
from tests.conftest import free_port
from tests.helpers import ROOM_SPEC, ServerHandle, run_server
from tests.processes import server_process

# --- security headers ----------------------------------------------------------------------

PATHS = [
    "/",
    "/join?token=x",
    "/organizer",
    "/control",
    "/archive",
    "/static/js/join.js",
    "/static/css/app.css",
    "/static/vendor/socket.io.esm.min.js",
    "/api/openapi.json",
    "/healthz",
    "/readyz",
    "/api/rooms",  # 401 without the key
    "/api/nothing",  # 404 from the router
    "/metrics",  # 401 without the metrics token
    "/static/missing.js",  # 404 from the static route
]


def _directives(policy: str) -> dict[str, list[str]]:
    parts = [part.split() for part in policy.split(";") if part.strip()]
    return {part[0]: part[1:] for part in parts}


async def test_every_response_carries_the_security_headers(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    origins = ("https://yitang.example", "http://node2.example:8080")
    async with run_server(
        tmp_path / "data", free_port(), redis_url=redis_url, allowed_origins=origins
    ) as server:
        for path in PATHS:
            async with server.http.get(server.base_url + path) as response:
                headers = response.headers
                assert headers.get("X-Content-Type-Options") == "nosniff", path
                assert headers.get("Referrer-Policy") == "no-referrer", path
                assert headers.get("X-Frame-Options") == "DENY", path
                policy = _directives(headers.get("Content-Security-Policy", ""))
            assert policy["default-src"] == ["'self'"], path
            assert policy["script-src"] == ["'self'"], path
            assert policy["frame-ancestors"] == ["'none'"], path
            assert policy["object-src"] == ["'none'"], path
            assert policy["base-uri"] == ["'none'"], path
            assert not any("unsafe" in value for values in policy.values() for value in values)
            assert set(policy["connect-src"]) == {
                "'self'",
                "https://yitang.example",
                "wss://yitang.example",
                "http://node2.example:8080",
                "ws://node2.example:8080",
            }, path
            assert "blob:" in policy["media-src"] and "blob:" in policy["img-src"]


async def test_the_default_policy_lets_pages_connect_to_their_own_node(
    server: ServerHandle,
) -> None:
    async with server.http.get(server.base_url + "/join") as response:
        policy = _directives(response.headers["Content-Security-Policy"])
    port = server.base_url.rsplit(":", 1)[1]
    assert set(policy["connect-src"]) == {
        "'self'",
        f"http://127.0.0.1:{port}",
        f"ws://127.0.0.1:{port}",
    }


class _InlineCode(HTMLParser):
    """Collects what a policy without 'unsafe-inline' would block in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style>")
        self.found += [f"{tag} {name}=" for name in names if name == "style" or name[:2] == "on"]


@pytest.mark.parametrize("page", sorted(p.name for p in STATIC_DIR.glob("*.html")))
def test_pages_have_no_inline_script_style_or_handler(page: str) -> None:
    parser = _InlineCode()
    parser.feed((STATIC_DIR / page).read_text(encoding="utf-8"))
    assert parser.found == [], f"{page} needs 'unsafe-inline': {parser.found}"


# --- Socket.IO origins -----------------------------------------------------------------------

EVIL = "http://evil.example"


async def _polling_handshake(server: ServerHandle, origin: str | None) -> int:
    headers = {"Origin": origin} if origin else {}
    url = server.base_url + "/socket.io/?EIO=4&transport=polling"
    async with server.http.get(url, headers=headers) as response:
        return response.status


async def _websocket_handshake(server: ServerHandle, origin: str | None) -> int:
    headers = {"Origin": origin} if origin else {}
    url = server.base_url + "/socket.io/?EIO=4&transport=websocket"
    try:
        async with server.http.ws_connect(url, headers=headers) as ws:
            opening = await ws.receive_str(timeout=10)
            assert opening.startswith("0{"), opening  # engine.io "open" with the session id
            return 101
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status


async def _wait_for_fanout(server: ServerHandle, redis_client: aioredis.Redis) -> None:
    """Wait until the server's Socket.IO fan-out listens on Redis, if it has one (bounded).

    The first accepted handshake starts python-socketio's Redis listener; cancelled
    before its SUBSCRIBE is done, that listener can swallow the cancellation, and the
    server's shutdown then waits for it forever (signaling/fanout.py).
    """
    channel = getattr(server.app[appkeys.SOCKETIO].manager, "channel", None)
    if channel is None:  # a manager without a Redis listener
        return
    async with asyncio.timeout(15):
        while (await redis_client.pubsub_numsub(channel))[0][1] < 1:
            await asyncio.sleep(0.02)


async def test_socketio_refuses_other_sites_and_accepts_configured_origins(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    own = f"http://127.0.0.1:{port}"
    other_node = "https://node2.example"
    async with run_server(
        tmp_path / "data", port, redis_url=redis_url, allowed_origins=(own, other_node)
    ) as server:
        for handshake in (_polling_handshake, _websocket_handshake):
            ok = 200 if handshake is _polling_handshake else 101
            assert await handshake(server, EVIL) == 400, handshake.__name__
            assert await handshake(server, "http://127.0.0.1:1") == 400, "another port"
            assert await handshake(server, own) == ok
            assert await handshake(server, other_node) == ok
            assert await handshake(server, None) == ok, "clients without Origin are not browsers"
        await _wait_for_fanout(server, redis_client)


async def test_socketio_origin_defaults_to_the_public_url(
    server: ServerHandle, redis_client: aioredis.Redis
) -> None:
    assert await _websocket_handshake(server, EVIL) == 400
    assert await _websocket_handshake(server, server.base_url) == 101
    await _wait_for_fanout(server, redis_client)


def test_allowed_origins_are_kept_as_browsers_send_them() -> None:
    settings = Settings(allowed_origins=("HTTPS://Yitang.Example:443/", "http://[::1]:8080"))
    assert settings.public_origins == ("https://yitang.example", "http://[::1]:8080")
    assert Settings(port=9000).public_origins == ("http://127.0.0.1:9000",)
    assert Settings(public_url="https://a.example/yitang/").public_origins == ("https://a.example",)
    for wrong in ("yitang.example", "ftp://a.example", "https://a.example/path", "https://a:x"):
        with pytest.raises(ValueError, match="origin"):
            Settings(allowed_origins=(wrong,))


# --- the access log ----------------------------------------------------------------------------


def test_redact_url_replaces_only_secret_values() -> None:
    assert redact_url("/join?token=abc.def.ghi") == "/join?token=[redacted]"
    assert redact_url("/f?x=1&Access=sig&download=1") == "/f?x=1&Access=[redacted]&download=1"
    assert redact_url("http://h/join?%74oken=abc#top") == "http://h/join?%74oken=[redacted]#top"
    assert redact_url("/join?tokens=1&token") == "/join?tokens=1&token"
    assert redact_url("/plain/path") == "/plain/path"


async def _wait_for_line(log: Path, pattern: str) -> str:
    """The first log line matching `pattern`, once the server has written it (bounded)."""
    regex = re.compile(pattern)
    async with asyncio.timeout(15):
        while True:
            for line in log.read_text(errors="replace").splitlines():
                if regex.search(line):
                    return line
            await asyncio.sleep(0.05)


async def test_the_access_log_never_shows_a_token(tmp_path: Path) -> None:
    secret = "eyJhbGciOiJIUzI1NiJ9.SECRET-PAYLOAD.SECRET-SIGNATURE"
    access = "1999999999.SECRET-ACCESS-SIGNATURE"
    async with server_process(tmp_path / "data", free_port()) as server:
        async with aiohttp.ClientSession() as http:
            referer = f"{server.base_url}/join?token={secret}"
            async with http.get(f"{server.base_url}/join?token={secret}&lang=en") as response:
                assert response.status == 200
            script = f"{server.base_url}/static/js/join.js"
            async with http.get(script, headers={"Referer": referer}) as response:
                assert response.status == 200
            file_url = f"{server.base_url}/api/recordings/rec-1/files/a.webm?access={access}"
            async with http.get(file_url) as response:
                assert response.status in (401, 404)
        await _wait_for_line(server.log, r'"GET /join\?token=\[redacted\]&lang=en HTTP/1.1" 200')
        await _wait_for_line(server.log, r'/join.js HTTP/1.1" 200 .*/join\?token=\[redacted\]"')
        await _wait_for_line(server.log, r"/files/a.webm\?access=\[redacted\]")
    log = server.log.read_text(errors="replace")
    assert "SECRET" not in log


# --- admin key attempts ------------------------------------------------------------------------


class ManualClock:
    """A clock the test moves by hand, so a lock-out ends without waiting for it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def _server_with_clock(
    redis_url: str, tmp_path: Path, clock: ManualClock, limit: int, window: float
) -> AsyncIterator[tuple[str, str]]:
    port = free_port()
    settings = Settings(
        port=port,
        data_dir=tmp_path / "data",
        redis_url=redis_url,
        render_workers=0,
        admin_attempt_limit=limit,
        admin_attempt_window_seconds=window,
    )
    app = create_app(settings)
    app[appkeys.ADMIN_ATTEMPTS] = FailedAttempts(limit, window, clock=clock)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield settings.base_url, app[appkeys.API_KEY]
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def _client_from(address: str) -> AsyncIterator[aiohttp.ClientSession]:
    """A client whose connections come from `address` (any of 127.0.0.0/8)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        yield http


async def _call(
    http: aiohttp.ClientSession, method: str, url: str, key: str | None, json: Any = None
) -> tuple[int, Any, str | None]:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    async with http.request(method, url, headers=headers, json=json) as response:
        return response.status, await response.json(), response.headers.get("Retry-After")


async def test_an_address_that_guesses_the_key_is_locked_out(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    clock = ManualClock()
    async with (
        _server_with_clock(redis_url, tmp_path, clock, limit=3, window=60) as (base, key),
        _client_from("127.0.0.1") as guesser,
        _client_from("127.0.0.2") as organizer,
    ):
        rooms = base + "/api/rooms"
        status, room, _ = await _call(organizer, "POST", rooms, key, {**ROOM_SPEC, "id": "kept"})
        assert status == 201, room
        for _ in range(3):
            status, body, _ = await _call(guesser, "GET", rooms, "wrong")
            assert (status, body["error"]["code"]) == (401, "api_key_invalid")
        clock.now += 59
        for method, url in [
            ("GET", rooms),
            ("GET", f"{rooms}/kept"),
            ("GET", base + "/api/recordings"),
            ("POST", f"{rooms}/kept/recording/start"),
        ]:
            status, body, retry_after = await _call(guesser, method, url, key)
            assert (status, body["error"]["code"]) == (429, "too_many_attempts"), url
            assert retry_after == "1", "seconds until the lock-out ends"
        status, _, _ = await _call(organizer, "GET", rooms, key)
        assert status == 200, "other addresses are not locked out"
        clock.now += 1
        status, _, _ = await _call(guesser, "GET", rooms, key)
        assert status == 200, "the lock-out ends with its window"


async def test_only_wrong_credentials_count_and_recordings_count_them_too(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    clock = ManualClock()
    async with (
        _server_with_clock(redis_url, tmp_path, clock, limit=3, window=60) as (base, key),
        _client_from("127.0.0.3") as http,
    ):
        rooms = base + "/api/rooms"
        for _ in range(5):
            status, body, _ = await _call(http, "GET", rooms, None)
            assert (status, body["error"]["code"]) == (401, "api_key_missing")
        status, _, _ = await _call(http, "GET", rooms, key)
        assert status == 200, "a missing key is not a guess"
        # Failures spread beyond the window never add up to a lock-out.
        for _ in range(4):
            await _call(http, "GET", rooms, "wrong")
            clock.now += 31
            await _call(http, "GET", rooms, key)
        status, _, _ = await _call(http, "GET", rooms, key)
        assert status == 200
        start = f"{rooms}/any-room/recording/start"
        for _ in range(3):
            status, body, _ = await _call(http, "POST", start, "not-a-token")
            assert (status, body["error"]["code"]) == (401, "credentials_invalid")
        status, body, _ = await _call(http, "GET", rooms, key)
        assert (status, body["error"]["code"]) == (429, "too_many_attempts")


def test_failed_attempts_remember_a_bounded_number_of_addresses() -> None:
    clock = ManualClock()
    attempts = FailedAttempts(limit=1, window_seconds=60, max_addresses=2, clock=clock)
    for address in ("a", "b", "c"):
        attempts.failed(address)
    assert len(attempts) == 2
    attempts.check("a")  # forgotten, the least recently seen
    for address in ("b", "c"):
        with pytest.raises(Exception, match="too many"):
            attempts.check(address)
