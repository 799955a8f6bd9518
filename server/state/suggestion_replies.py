"""How each micro-suggestion was handled after the session: status and reply, in Redis.

The suggestions themselves belong to the room's owner (its snapshot and the
`suggestion_submitted` timeline entries). Their handling is the secretariat's,
set over the REST API, usually after the session has ended and no node owns
the room any more; so it has a key of its own
(`keys.room_suggestion_replies`), written by whichever node serves the
request, never by the owner. The two writers never touch the same key, so
neither fences the other, and both survive the room ending and any node
restarting (Redis persists them; the embedded Valkey has its append-only
file). Deleting the room deletes them with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis

from server.rooms.models import Strict, Suggestion, SuggestionReply, SuggestionStatus
from server.state import keys


class SuggestionHandling(Strict):
    """What the secretariat set on one suggestion."""

    status: SuggestionStatus
    reply: SuggestionReply | None = None
    #: ms since the epoch.
    handled_at: float


class SuggestionReplies:
    """Reads and writes the handling of a room's suggestions."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis: Any = client

    async def all(self, room_id: str) -> dict[str, SuggestionHandling]:
        """Every suggestion's handling, by suggestion id."""
        raw = await self._redis.hgetall(keys.room_suggestion_replies(room_id))
        return {
            (
                k.decode() if isinstance(k, bytes) else str(k)
            ): SuggestionHandling.model_validate_json(v)
            for k, v in raw.items()
        }

    async def set(self, room_id: str, suggestion_id: str, handling: SuggestionHandling) -> None:
        """Set one suggestion's handling (the last write wins)."""
        await self._redis.hset(
            keys.room_suggestion_replies(room_id), suggestion_id, handling.model_dump_json()
        )


def handled(
    suggestions: Iterable[Suggestion], handling: dict[str, SuggestionHandling]
) -> list[Suggestion]:
    """The suggestions with the status and reply set on them."""
    found = []
    for suggestion in suggestions:
        done = handling.get(suggestion.id)
        found.append(
            suggestion
            if done is None
            else suggestion.model_copy(
                update={"status": done.status, "reply": done.reply, "handled_at": done.handled_at}
            )
        )
    return found
