"""Stored check results: Redis, keyed by room and identity, kept for a day."""

from __future__ import annotations

import logging
import time
from typing import Any

import redis.asyncio as aioredis
from pydantic import ValidationError

from server.state import keys

from .models import LegResult, PrecheckRecord
from .verdict import overall

logger = logging.getLogger(__name__)

#: Legs count as one check when they ended within this long of each other.
SAME_CHECK_SECONDS = 600.0
#: Identities shown per room (a roster is far smaller; this bounds a hostile one).
MAX_IDENTITIES_PER_ROOM = 500


class PrecheckResults:
    """Save legs as they end; read them back grouped per identity with an overall verdict."""

    def __init__(self, client: aioredis.Redis, *, ttl_seconds: int, turn_configured: bool) -> None:
        self._redis: Any = client
        self.ttl_seconds = ttl_seconds
        self.turn_configured = turn_configured

    async def save(self, record: PrecheckRecord) -> None:
        """Store one leg (replacing this identity's previous result for that leg)."""
        key = keys.room_prechecks(record.room)
        field = f"{record.identity}/{record.result.leg}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, field, record.model_dump_json())
            pipe.expire(key, self.ttl_seconds)
            pipe.zadd(keys.PRECHECK_ROOMS, {record.room: time.time() * 1000.0})
            await pipe.execute()

    async def identity(self, room_id: str, identity: str) -> dict[str, Any] | None:
        """One identity's latest check (its legs and overall verdict), if any."""
        raws = await self._redis.hmget(
            keys.room_prechecks(room_id), [f"{identity}/direct", f"{identity}/relay"]
        )
        records = [r for r in (_parse(raw) for raw in raws) if r is not None]
        return self._entry(records) if records else None

    async def rooms(self, limit: int) -> dict[str, list[dict[str, Any]]]:
        """Checks of the rooms checked within the TTL, newest first: room id => entries."""
        horizon = (time.time() - self.ttl_seconds) * 1000.0
        await self._redis.zremrangebyscore(keys.PRECHECK_ROOMS, "-inf", horizon)
        ids = [i.decode() for i in await self._redis.zrevrange(keys.PRECHECK_ROOMS, 0, limit - 1)]
        if not ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for room_id in ids:
                pipe.hgetall(keys.room_prechecks(room_id))
            hashes = await pipe.execute()
        found: dict[str, list[dict[str, Any]]] = {}
        for room_id, fields in zip(ids, hashes, strict=True):
            by_identity: dict[str, list[PrecheckRecord]] = {}
            for raw in fields.values():
                record = _parse(raw)
                if record is not None:
                    by_identity.setdefault(record.identity, []).append(record)
            entries = [self._entry(r) for r in by_identity.values()]
            entries.sort(key=lambda e: (e["venue"], e["identity"]))
            if entries:
                found[room_id] = entries[:MAX_IDENTITIES_PER_ROOM]
        return found

    def _entry(self, records: list[PrecheckRecord]) -> dict[str, Any]:
        """An identity's legs of its latest check, with the overall verdict."""
        latest = max(r.result.at for r in records)
        legs: dict[str, LegResult] = {
            r.result.leg: r.result for r in records if latest - r.result.at <= SAME_CHECK_SECONDS
        }
        first = records[0]
        verdict = overall(
            legs.get("direct"), legs.get("relay"), turn_configured=self.turn_configured
        )
        return {
            "identity": first.identity,
            "name": first.name,
            "role": first.role,
            "venue": first.venue,
            "at": latest,
            "legs": {leg: result.model_dump() for leg, result in legs.items()},
            "overall": verdict.model_dump(),
        }


def _parse(raw: bytes | None) -> PrecheckRecord | None:
    if raw is None:
        return None
    try:
        return PrecheckRecord.model_validate_json(raw)
    except ValidationError:
        logger.warning("a stored pre-session check could not be read; skipped")
        return None
