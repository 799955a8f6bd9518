"""`GET /metrics`: the node's metrics in the Prometheus text format, for a scraper with a key.

Access: `Authorization: Bearer <key>` with the metrics token (`--metrics-token`,
meant for Prometheus: it can read metrics and nothing else) or the admin API
key. Wrong keys count against the address like every admin call, and a
locked-out address is refused (429) here too. Metrics carry no identity or
room id, but they show the deployment's activity, which is not public.

With `--metrics-port`, the node also serves `/metrics` alone on a port of its
own (`metrics_listener`): the node processes of a box share the main port, and
a scraper must reach each of them.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from server import appkeys
from server.http.api import client_address
from server.http.errors import error_middleware
from server.rooms.errors import Unauthorized


def _accepted_keys(app: web.Application) -> list[str]:
    keys = [app[appkeys.API_KEY]]
    token = app[appkeys.SETTINGS].metrics_token
    if token:
        keys.append(token)
    return keys


def require_metrics_key(app: web.Application, request: web.Request) -> None:
    """Refuse requests without the metrics token or the API key (401; 429 when locked out)."""
    attempts = app[appkeys.ADMIN_ATTEMPTS]
    address = client_address(request)
    attempts.check(address)
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("metrics_key_missing", "send Authorization: Bearer <metrics token>")
    given = key.strip().encode()
    # Compare with every accepted key (no early exit: the time taken says nothing).
    matches = [hmac.compare_digest(given, k.encode()) for k in _accepted_keys(app)]
    if not any(matches):
        attempts.failed(address)
        raise Unauthorized("metrics_key_invalid", "the metrics token is not valid")
    attempts.succeeded(address)


async def metrics_response(app: web.Application, request: web.Request) -> web.Response:
    """The Prometheus exposition of the node whose application is `app`."""
    require_metrics_key(app, request)
    exporter = app[appkeys.METRICS]
    await exporter.refresh()
    body, content_type = exporter.render(request.headers.get("Accept", ""))
    return web.Response(
        body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"}
    )


async def metrics_handler(request: web.Request) -> web.Response:
    """`GET /metrics` on the main port."""
    return await metrics_response(request.app, request)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def count_lockouts_of(app: web.Application) -> Middleware:
    """A middleware counting requests refused because their address is locked out (429)
    into `app`'s metrics."""

    @web.middleware
    async def count_lockouts(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if response.status == 429:
            app[appkeys.METRICS].metrics.admin_locked_out()
        return response

    return count_lockouts


def add_routes(app: web.Application) -> None:
    """Serve `/metrics`."""
    app.router.add_get("/metrics", metrics_handler)


async def metrics_listener(app: web.Application) -> AsyncIterator[None]:
    """A cleanup context: `/metrics` alone on `settings.metrics_port`, if one is set."""
    settings = app[appkeys.SETTINGS]
    if not settings.metrics_port:
        yield
        return

    async def handler(request: web.Request) -> web.Response:
        return await metrics_response(app, request)

    # Errors as JSON, like the main port; lock-outs refused here are counted there.
    listener = web.Application(middlewares=[count_lockouts_of(app), error_middleware])
    listener.router.add_get("/metrics", handler)
    runner = web.AppRunner(listener, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.metrics_port).start()
        yield
    finally:
        await runner.cleanup()
