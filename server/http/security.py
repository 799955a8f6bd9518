"""Security headers on every response: a strict Content-Security-Policy, no sniffing, no framing.

The browser client is plain ES modules and style sheets from `/static/` (no
inline script, style or handler), so scripts and styles come from 'self'
alone. Video elements show MediaStreams through `srcObject`, which no policy
restricts; the archive plays recording files from this origin. Pages connect
(Socket.IO over WebSocket, fetch) to this node and to every public origin of
the deployment, because after a failover a page served by one node reconnects
to another.

Join links carry the token in the query string: `Referrer-Policy: no-referrer`
keeps it out of the Referer header of anything a page loads or links to.

The headers are added in `on_response_prepare`, not in a middleware: that
signal fires for every response of the application just before its headers
go out (pages, static files, JSON, errors, redirects, WebSocket handshakes),
whereas a middleware misses responses a handler sends itself (the Socket.IO
WebSocket) and exceptions it lets through.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aiohttp import web

_WEBSOCKET_SCHEMES = {"http": "ws", "https": "wss"}


def content_security_policy(origins: Iterable[str]) -> str:
    """The policy for pages that may connect to `origins` (``scheme://host[:port]``)."""
    connect = ["'self'"]
    for origin in origins:
        scheme, _, rest = origin.partition("://")
        connect += [origin, f"{_WEBSOCKET_SCHEMES[scheme]}://{rest}"]
    directives = {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self' data: blob:",
        "media-src": "'self' blob:",
        "connect-src": " ".join(dict.fromkeys(connect)),
        "object-src": "'none'",
        "base-uri": "'none'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def security_headers(origins: Iterable[str]) -> dict[str, str]:
    """Every header added to every response."""
    return {
        "Content-Security-Policy": content_security_policy(origins),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }


def add_security_headers(app: web.Application, origins: Iterable[str]) -> None:
    """Put the security headers on every response `app` sends."""
    headers: Mapping[str, str] = security_headers(origins)

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(headers)

    app.on_response_prepare.append(on_prepare)
