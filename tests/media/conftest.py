"""Fixtures for the media tests (real aiortc peers on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from media_testkit import RoomHarness


@pytest.fixture
async def harness() -> AsyncIterator[RoomHarness]:
    """A media node with one room, closed (with its test clients) after the test."""
    h = RoomHarness()
    try:
        yield h
    finally:
        await h.close()
