"""Browser pages: the landing page, the join page and the static assets behind them."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"


async def _page(name: str) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / name, headers={"Cache-Control": "no-cache"})


async def index(request: web.Request) -> web.FileResponse:
    """The landing page."""
    return await _page("index.html")


async def join(request: web.Request) -> web.FileResponse:
    """The page a join link opens; the token stays in the URL and is sent over Socket.IO."""
    return await _page("join.html")


def add_routes(app: web.Application) -> None:
    """Register the pages and the static folder."""
    app.router.add_get("/", index)
    app.router.add_get("/join", join)
    app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)
