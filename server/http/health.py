"""Liveness (`/healthz`) and readiness (`/readyz`) of a node.

Liveness answers "is this process alive?" and must not depend on Redis: in
LiveKit #4663 a Redis outage failed every liveness check, and an orchestrator
restarting every node at once turns one outage into two. So `/healthz` is 200
whenever the process answers; its body still says whether Redis answers.

Readiness answers "should this node get new work?": 200 only while Redis
answers within READY_PING_SECONDS, the node is not draining and nothing it
needs was lost for good (server/http/readiness.py); 503 with the reasons
otherwise.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from redis.exceptions import RedisError

from server import appkeys
from server.http.schemas import Health, ReadyStatus

#: How long a health check waits for Redis to answer PING.
READY_PING_SECONDS = 1.0


async def redis_answers(app: web.Application) -> bool:
    """Whether the node's Redis answers PING within READY_PING_SECONDS."""
    try:
        async with asyncio.timeout(READY_PING_SECONDS):
            return bool(await app[appkeys.STORE].client.ping())
    except (TimeoutError, OSError, RedisError):
        return False


def _json(body: Health | ReadyStatus, status: int) -> web.Response:
    return web.Response(text=body.model_dump_json(), status=status, content_type="application/json")


async def health(request: web.Request) -> web.Response:
    """Liveness: 200 while the process answers; the body says whether Redis answers."""
    redis_ok = await redis_answers(request.app)
    body = Health(
        status="ok" if redis_ok else "degraded",
        node=request.app[appkeys.NODE].id,
        redis="ok" if redis_ok else "unreachable",
    )
    return _json(body, 200)


async def ready(request: web.Request) -> web.Response:
    """Readiness: 200 when Redis answers and the node is neither draining nor failed, else 503."""
    readiness = request.app[appkeys.READINESS]
    redis_ok = await redis_answers(request.app)
    reasons = []
    if not redis_ok:
        reasons.append("redis_unreachable")
    if readiness.draining:
        reasons.append("draining")
    if readiness.failure is not None:
        reasons.append("failed")
    body = ReadyStatus(
        status="not_ready" if reasons else "ready",
        node=request.app[appkeys.NODE].id,
        redis="ok" if redis_ok else "unreachable",
        draining=readiness.draining,
        reasons=reasons,
    )
    return _json(body, 503 if reasons else 200)
