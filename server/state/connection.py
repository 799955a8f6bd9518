"""The one way the server makes a Redis client: bounded waits everywhere, retries with backoff.

A Redis that is down, gone or hung must make every call fail within a known
time, so request handlers answer and the node stays alive. redis-py's defaults
do not give that: 5.x waits for a reply forever, 8.x waits 5 s but retries a
timed-out command ten times (and a write may then be applied twice), and the
default pool grows without bound. With the values below a call fails after at
most the pool wait plus (RETRIES + 1) connect timeouts plus the backoffs
(2 + 8 + 0.7 s) against an address that swallows packets, one read timeout
(2 s) against a server that hangs, and the backoffs (0.7 s) when the
connection is refused or the unix socket is gone.

Only connection errors are retried: a read that timed out may have been
executed, and retrying it could apply a change twice.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

#: Seconds to open a connection, to wait for a reply, and to wait for a free pooled connection.
TIMEOUT_SECONDS = 2.0
#: Connections per client (callers beyond wait for one, at most TIMEOUT_SECONDS).
MAX_CONNECTIONS = 128
#: Attempts after the first failed connection, and the backoff between them (0.1, 0.2, 0.4 s).
RETRIES = 3
BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 0.5


def redis_client(
    url: str,
    *,
    timeout: float = TIMEOUT_SECONDS,
    retries: int = RETRIES,
    max_connections: int = MAX_CONNECTIONS,
    health_check_interval: float = 0,
) -> aioredis.Redis:
    """A client of `url` (redis://, rediss:// or unix://) whose every call ends in bounded time.

    `timeout` bounds connecting, each reply and the wait for a pooled
    connection; `retries` is how often a connection error is retried;
    `health_check_interval` (pub/sub listeners) pings an idle connection that
    long after its last use, so one that died silently is noticed.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=health_check_interval,
        retry=Retry(
            ExponentialBackoff(cap=BACKOFF_CAP_SECONDS, base=BACKOFF_BASE_SECONDS),
            retries,
            supported_errors=(RedisConnectionError,),
        ),
    )
    # The client owns the pool: closing the client disconnects it.
    return aioredis.Redis.from_pool(pool)


def raise_if_cancelled() -> None:
    """Raise CancelledError if the current task was asked to stop.

    redis-py can swallow a cancellation that arrives while it (re)connects or
    reads (it surfaces as a ConnectionError, or as nothing at all), so a loop
    that catches Redis errors would go on for ever and `close()` would wait on
    it. Loops that outlive Redis outages call this after each Redis call.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
