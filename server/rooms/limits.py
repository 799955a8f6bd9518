"""Rate limits a room's owner applies per identity, so reconnecting never resets them.

The signaling edge also limits each connection (it protects the node); these
limits protect the session: a member who reconnects in a loop keeps the same
budget, and no one (nor everyone together) can wash the timeline with chat.

Besides the budget every event shares, the events that reach everyone in the
room (a chat message, a raised or lowered hand, a mute state) have their own,
matched to what a person does: nobody raises a hand ten times a second, and
each such event costs the node a message to every participant.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.ratelimit import BucketMap, TokenBucket

#: A host's room-wide actions, which share one budget.
MODERATION_EVENTS = frozenset(
    {"mute_all", "pin", "move_in_queue", "extend_floor", "rename_participant", "admit", "deny"}
)


@dataclass(frozen=True)
class LimitSettings:
    """Budgets of one room (events per second, burst)."""

    #: Every command of one identity, whichever connection it came on.
    event_rate: float = 20.0
    event_burst: float = 40.0
    #: Chat messages of one identity.
    chat_rate: float = 1.0
    chat_burst: float = 5.0
    #: Raised and lowered hands of one identity.
    hand_rate: float = 2.0
    hand_burst: float = 6.0
    #: Microphone/camera mute changes of one identity.
    media_state_rate: float = 2.0
    media_state_burst: float = 6.0
    #: Chat messages of the whole room: a readable chat, and a timeline chat cannot flood.
    room_chat_rate: float = 10.0
    room_chat_burst: float = 30.0
    #: A host's or co-host's room-wide actions (mute all, pin, reorder, extend, rename,
    #: admit, deny): each reaches everyone and writes the timeline.
    moderation_rate: float = 2.0
    moderation_burst: float = 10.0
    #: Gallery posts (questions and opinions) of one identity: a few, then one a minute.
    gallery_rate: float = 1 / 60
    gallery_burst: float = 3.0
    #: Gallery posts of the whole room: the moderators' queue stays readable.
    room_gallery_rate: float = 2.0
    room_gallery_burst: float = 20.0
    #: Micro-suggestions of one identity: a few, then one a minute (each is a written text).
    suggestion_rate: float = 1 / 60
    suggestion_burst: float = 5.0
    #: Joins of one identity (each writes `joined` and `left` to the timeline).
    join_rate: float = 0.5
    join_burst: float = 10.0


class IdentityLimits:
    """The buckets of one room's participants, keyed by identity."""

    def __init__(self, settings: LimitSettings) -> None:
        self._events: BucketMap[str] = BucketMap(settings.event_rate, settings.event_burst)
        chat: BucketMap[str] = BucketMap(settings.chat_rate, settings.chat_burst)
        hands: BucketMap[str] = BucketMap(settings.hand_rate, settings.hand_burst)
        media_state: BucketMap[str] = BucketMap(
            settings.media_state_rate, settings.media_state_burst
        )
        moderation: BucketMap[str] = BucketMap(settings.moderation_rate, settings.moderation_burst)
        #: The events that reach everyone, each with the budget it draws on too.
        self._by_event: dict[str, BucketMap[str]] = {
            "chat": chat,
            "raise_hand": hands,
            "lower_hand": hands,
            "media_state": media_state,
            **{event: moderation for event in MODERATION_EVENTS},
        }
        self._joins: BucketMap[str] = BucketMap(settings.join_rate, settings.join_burst)
        self._room_chat = TokenBucket(settings.room_chat_rate, settings.room_chat_burst)
        self._gallery: BucketMap[str] = BucketMap(settings.gallery_rate, settings.gallery_burst)
        self._room_gallery = TokenBucket(settings.room_gallery_rate, settings.room_gallery_burst)
        self._suggestions: BucketMap[str] = BucketMap(
            settings.suggestion_rate, settings.suggestion_burst
        )

    def allow_event(self, identity: str, event: str) -> bool:
        """Whether `identity` may send `event` now (its chat also counts against the room)."""
        if not self._events.allow(identity):
            return False
        own = self._by_event.get(event)
        if own is not None and not own.allow(identity):
            return False
        return event != "chat" or self._room_chat.allow()

    def allow_gallery_post(self, identity: str) -> bool:
        """Whether `identity` may post to the gallery now (posts also count against the
        room; the handler checks, so the refusal can say when to try again)."""
        return self._gallery.allow(identity) and self._room_gallery.allow()

    def allow_suggestion(self, identity: str) -> bool:
        """Whether `identity` may submit a suggestion now (the room's cap is checked apart)."""
        return self._suggestions.allow(identity)

    def allow_join(self, identity: str) -> bool:
        """Whether `identity` may join (again) now."""
        return self._joins.allow(identity)
