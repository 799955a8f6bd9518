"""Browser pages: the landing page, the join page, the organizer page, the control room and
their static assets."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"


#: Security headers (no Referer, CSP, ...) are added to every response by server/http/security.py.
_PAGE_HEADERS = {"Cache-Control": "no-cache"}


async def _page(name: str) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / name, headers=_PAGE_HEADERS)


async def index(request: web.Request) -> web.FileResponse:
    """The landing page."""
    return await _page("index.html")


async def join(request: web.Request) -> web.FileResponse:
    """The page a join link opens; the token stays in the URL and is sent over Socket.IO."""
    return await _page("join.html")


async def organizer(request: web.Request) -> web.FileResponse:
    """The organizer page; it calls the REST API with the key the user types in."""
    return await _page("organizer.html")


async def control(request: web.Request) -> web.FileResponse:
    """The control room; it connects to `/control` over Socket.IO with the key the user types in."""
    return await _page("control.html")


def add_routes(app: web.Application) -> None:
    """Register the pages and the static folder."""
    app.router.add_get("/", index)
    app.router.add_get("/join", join)
    app.router.add_get("/organizer", organizer)
    app.router.add_get("/control", control)
    app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)
