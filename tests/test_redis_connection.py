"""The server's Redis client fails in bounded time against a Redis that is gone or hangs,
and retries a failed connection with backoff."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.state import connection
from server.state.connection import redis_client


async def _listener(
    on_connect: asyncio.Event, close_at_once: bool
) -> tuple[asyncio.Server, list[asyncio.StreamWriter], list[int]]:
    """A TCP server on 127.0.0.1 that never answers (or closes every connection at once)."""
    writers: list[asyncio.StreamWriter] = []
    accepted = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted[0] += 1
        on_connect.set()
        if close_at_once:
            writer.close()
        else:
            writers.append(writer)  # kept open, silent: a Redis that hangs

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, writers, accepted


@pytest.fixture
async def silent_redis() -> AsyncIterator[tuple[str, list[int]]]:
    """The URL of a 'Redis' that accepts connections and never replies; connections so far."""
    server, writers, accepted = await _listener(asyncio.Event(), close_at_once=False)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0", accepted
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_redis_that_hangs_fails_the_call_within_the_timeout(
    silent_redis: tuple[str, list[int]],
) -> None:
    url, accepted = silent_redis
    client = redis_client(url, timeout=0.5)
    started = time.monotonic()
    try:
        # The bound only keeps a regression from hanging the suite; the call must fail first.
        async with asyncio.timeout(30):
            with pytest.raises(RedisTimeoutError):
                await client.set("key", "value")
    finally:
        await client.aclose()
    assert time.monotonic() - started < 3, "the client's timeout, not redis-py's default"
    assert accepted[0] == 1, "a read that timed out is not retried: it may have been executed"


async def test_a_busy_pool_makes_callers_wait_a_bounded_time(
    silent_redis: tuple[str, list[int]],
) -> None:
    client = redis_client(silent_redis[0], timeout=0.5, max_connections=1)
    try:
        async with asyncio.timeout(30):
            first = asyncio.create_task(client.get("a"))
            second = asyncio.create_task(client.get("b"))
            results = await asyncio.gather(first, second, return_exceptions=True)
    finally:
        await client.aclose()
    kinds = sorted(type(result).__name__ for result in results)
    assert kinds == ["ConnectionError", "TimeoutError"], results  # one hung, one found no slot


async def test_connection_errors_are_retried_with_backoff() -> None:
    connected = asyncio.Event()
    server, _, accepted = await _listener(connected, close_at_once=True)
    port = server.sockets[0].getsockname()[1]
    client = redis_client(f"redis://127.0.0.1:{port}/0", timeout=2.0, retries=3)
    started = time.monotonic()
    try:
        async with asyncio.timeout(30):
            with pytest.raises(RedisConnectionError):
                await client.ping()
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
    assert accepted[0] == 4, "the first attempt and three retries"
    backoffs = sum(
        min(connection.BACKOFF_CAP_SECONDS, connection.BACKOFF_BASE_SECONDS * 2**n)
        for n in (1, 2, 3)
    )
    assert time.monotonic() - started >= backoffs
