"""Redis command latency and errors, measured around the asyncio client's calls.

redis-py has no per-command hook, so the client instance's `execute_command`
(every command method goes through it, Lua scripts too) and `pipeline` (a
pipeline's `execute`, counted as one `PIPELINE`) are wrapped. The pub/sub
listener's connection is not: its reads wait for messages, not for Redis.
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.metrics.server_metrics import ServerMetrics


def error_label(exc: BaseException) -> str:
    """A bounded name for a failure (the classes an operator acts on differently)."""
    if isinstance(exc, RedisTimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, RedisConnectionError | ConnectionError | OSError):
        return "connection"
    if isinstance(exc, ResponseError):
        return "response"
    return "other"


def command_label(args: tuple[Any, ...]) -> str:
    """The command's name, upper case (`other` for anything unexpected)."""
    name = args[0] if args else None
    if isinstance(name, bytes):
        name = name.decode("ascii", "replace")
    return name.upper() if isinstance(name, str) else "other"


def instrument_redis(client: aioredis.Redis, metrics: ServerMetrics) -> None:
    """Time every command and pipeline `client` runs from now on."""
    execute_command: Any = client.execute_command
    make_pipeline: Any = client.pipeline

    async def timed_execute_command(*args: Any, **options: Any) -> Any:
        started = time.perf_counter()
        error: str | None = None
        try:
            return await execute_command(*args, **options)
        except Exception as exc:
            error = error_label(exc)
            raise
        finally:
            metrics.redis_command(command_label(args), time.perf_counter() - started, error)

    def timed_pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = make_pipeline(*args, **kwargs)
        execute = pipe.execute

        async def timed_execute(*exec_args: Any, **exec_kwargs: Any) -> Any:
            started = time.perf_counter()
            error: str | None = None
            try:
                return await execute(*exec_args, **exec_kwargs)
            except Exception as exc:
                error = error_label(exc)
                raise
            finally:
                metrics.redis_command("PIPELINE", time.perf_counter() - started, error)

        pipe.execute = timed_execute
        return pipe

    client.execute_command = timed_execute_command  # type: ignore[method-assign]
    client.pipeline = timed_pipeline  # type: ignore[method-assign]
