"""Fixtures of the recording tests: a media room, its session in the test Valkey, a recorder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.recording.recording_kit import RecordingEnv, recording_env


@pytest.fixture
async def env(redis_client: aioredis.Redis, tmp_path: Path) -> AsyncIterator[RecordingEnv]:
    """A recording environment writing to a fresh folder (no render queue)."""
    async with recording_env(redis_client, tmp_path / "recordings") as recording:
        yield recording
