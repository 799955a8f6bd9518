"""Fixtures for the media tests (real aiortc peers on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from media_testkit import RoomHarness, require_compiled

from server.media import event_loop, fanout


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, object]:
    """The media tests run on the loop the server's processes run: asyncio's selector
    loop whose wait reads compiled socket readers inline (server/media/event_loop.py)."""
    return {"media_loop": event_loop.new_event_loop}


@pytest.fixture
async def harness() -> AsyncIterator[RoomHarness]:
    """A media node with one room, closed (with its test clients) after the test."""
    h = RoomHarness()
    try:
        yield h
    finally:
        await h.close()


@pytest.fixture(params=["compiled", "python"])
def fanout_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs the test with the compiled fan-out (server/media/_fanout.c) and with Python.

    The Python path is the reference (and the fallback); both must forward the
    same. Under CI=true a missing extension fails the test rather than skip it:
    scripts/bootstrap builds it, and production must not silently run without it.
    """
    if request.param == "compiled":
        require_compiled("the compiled fan-out", fanout.IMPORT_ERROR)
        monkeypatch.setattr(fanout, "enabled", True)
    else:
        monkeypatch.setattr(fanout, "enabled", False)
    return str(request.param)
