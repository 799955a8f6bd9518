"""``yitang archive render ID``: queue the combined video over the REST API, draw a progress bar.

The CLI talks to a running server like the other admin commands::

    status = await render_and_watch("http://127.0.0.1:8080", api_key, recording_id)

It asks for the render (``POST /api/recordings/{id}/render``), then polls
``GET /api/recordings/{id}`` and redraws one line on ``out`` until the job is
done (returns the final status) or failed (raises :class:`RenderFailed`).
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any, TextIO

import aiohttp

from .models import RenderStatus

_LABELS = {
    "none": "not queued",
    "queued": "queued",
    "running": "rendering",
    "done": "done",
    "failed": "failed",
}


class RenderFailed(Exception):
    """The render could not be queued, failed, or did not finish in time."""


def progress_line(status: RenderStatus, width: int = 30) -> str:
    """``[#########.....................]  31% rendering (attempt 1)``."""
    filled = round(width * min(max(status.progress, 0.0), 100.0) / 100.0)
    bar = "#" * filled + "." * (width - filled)
    attempt = f" (attempt {status.attempt})" if status.attempt > 1 else ""
    return f"[{bar}] {status.progress:5.1f}% {_LABELS.get(status.state, status.state)}{attempt}"


async def _json(response: aiohttp.ClientResponse) -> Any:
    body = await response.json() if response.content_type == "application/json" else None
    if response.status >= 400:
        error = (body or {}).get("error", {}) if isinstance(body, dict) else {}
        raise RenderFailed(error.get("message") or f"HTTP {response.status}")
    return body


async def render_and_watch(
    server: str,
    api_key: str,
    recording_id: str,
    *,
    out: TextIO = sys.stderr,
    interval: float = 0.5,
    timeout: float | None = None,
) -> RenderStatus:
    """Queue the render and show its progress until it ends; the final status, or RenderFailed."""
    headers = {"Authorization": f"Bearer {api_key}"}
    base = f"{server.rstrip('/')}/api/recordings/{recording_id}"
    deadline = None if timeout is None else time.monotonic() + timeout
    interactive = out.isatty()
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{base}/render") as response:
            status = RenderStatus.model_validate(await _json(response))
        last = ""
        while True:
            line = progress_line(status)
            if line != last:
                out.write(("\r" if interactive else "") + line + ("" if interactive else "\n"))
                out.flush()
                last = line
            if status.state in ("done", "failed"):
                break
            if deadline is not None and time.monotonic() > deadline:
                raise RenderFailed("timed out waiting for the render")
            await asyncio.sleep(interval)  # the job reports to Redis; the API is polled
            async with http.get(base) as response:
                status = RenderStatus.model_validate((await _json(response))["render"])
        if interactive:
            out.write("\n")
    if status.state == "failed":
        raise RenderFailed(status.message or "the render failed")
    return status
