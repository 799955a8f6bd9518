"""Rate limits a room's owner applies per identity, so reconnecting never resets them.

The signaling edge also limits each connection (it protects the node); these
limits protect the session: a member who reconnects in a loop keeps the same
budget, and no one (nor everyone together) can wash the timeline with chat.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.ratelimit import BucketMap, TokenBucket


@dataclass(frozen=True)
class LimitSettings:
    """Budgets of one room (events per second, burst)."""

    #: Every command of one identity, whichever connection it came on.
    event_rate: float = 20.0
    event_burst: float = 40.0
    #: Chat messages of one identity.
    chat_rate: float = 1.0
    chat_burst: float = 5.0
    #: Chat messages of the whole room: a readable chat, and a timeline chat cannot flood.
    room_chat_rate: float = 10.0
    room_chat_burst: float = 30.0
    #: Joins of one identity (each writes `joined` and `left` to the timeline).
    join_rate: float = 0.5
    join_burst: float = 10.0


class IdentityLimits:
    """The buckets of one room's participants, keyed by identity."""

    def __init__(self, settings: LimitSettings) -> None:
        self._events: BucketMap[str] = BucketMap(settings.event_rate, settings.event_burst)
        self._chat: BucketMap[str] = BucketMap(settings.chat_rate, settings.chat_burst)
        self._joins: BucketMap[str] = BucketMap(settings.join_rate, settings.join_burst)
        self._room_chat = TokenBucket(settings.room_chat_rate, settings.room_chat_burst)

    def allow_event(self, identity: str, event: str) -> bool:
        """Whether `identity` may send `event` now (its chat also counts against the room)."""
        if not self._events.allow(identity):
            return False
        if event == "chat":
            return self._chat.allow(identity) and self._room_chat.allow()
        return True

    def allow_join(self, identity: str) -> bool:
        """Whether `identity` may join (again) now."""
        return self._joins.allow(identity)
