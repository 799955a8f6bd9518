"""JSON errors for every failure the HTTP edge can produce: `{"error": {"code", "message"}}`."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler
from redis.exceptions import RedisError

from server.http.attempts import TooManyAttempts
from server.rooms.errors import RoomError

logger = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str) -> web.Response:
    """The one shape of every error body."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn domain errors and aiohttp's HTTP errors into JSON; hide tracebacks."""
    try:
        return await handler(request)
    except TooManyAttempts as exc:
        response = error_response(exc.status, exc.code, exc.message)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except RoomError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except RedisError:
        # Room state is in Redis: while it is unreachable the request cannot be answered
        # truthfully, and it is the deployment's fault, not the caller's. A 503 with a
        # Retry-After tells clients and load balancers to come back; live sessions go on
        # (the owner node holds each room in memory, docs/cluster.md).
        logger.warning("redis unavailable on %s %s", request.method, request.path)
        response = error_response(
            503, "state_unavailable", "room state is unreachable for now; retry shortly"
        )
        response.headers["Retry-After"] = "2"
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        return error_response(exc.status, code, exc.reason)
    except Exception:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "the server could not handle this request")
