"""`GET /metrics`: the node's metrics in the Prometheus text format, for a scraper with a key.

Access: `Authorization: Bearer <key>` with the metrics token (`--metrics-token`,
meant for Prometheus: it can read metrics and nothing else) or the admin API
key. Wrong keys count against the address like every admin call, and a
locked-out address is refused (429) here too. Metrics carry no identity or
room id, but they show the deployment's activity, which is not public.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from server import appkeys
from server.http.api import client_address
from server.rooms.errors import Unauthorized


def _accepted_keys(request: web.Request) -> list[str]:
    keys = [request.app[appkeys.API_KEY]]
    token = request.app[appkeys.SETTINGS].metrics_token
    if token:
        keys.append(token)
    return keys


def require_metrics_key(request: web.Request) -> None:
    """Refuse requests without the metrics token or the API key (401; 429 when locked out)."""
    attempts = request.app[appkeys.ADMIN_ATTEMPTS]
    address = client_address(request)
    attempts.check(address)
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("metrics_key_missing", "send Authorization: Bearer <metrics token>")
    given = key.strip().encode()
    # Compare with every accepted key (no early exit: the time taken says nothing).
    matches = [hmac.compare_digest(given, k.encode()) for k in _accepted_keys(request)]
    if not any(matches):
        attempts.failed(address)
        raise Unauthorized("metrics_key_invalid", "the metrics token is not valid")
    attempts.succeeded(address)


async def metrics_handler(request: web.Request) -> web.Response:
    """The Prometheus exposition of this node."""
    require_metrics_key(request)
    exporter = request.app[appkeys.METRICS]
    await exporter.refresh()
    body, content_type = exporter.render(request.headers.get("Accept", ""))
    return web.Response(
        body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"}
    )


@web.middleware
async def count_lockouts(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Count admin requests refused because their address is locked out (429)."""
    response = await handler(request)
    if response.status == 429:
        request.app[appkeys.METRICS].metrics.admin_locked_out()
    return response


def add_routes(app: web.Application) -> None:
    """Serve `/metrics`."""
    app.router.add_get("/metrics", metrics_handler)
