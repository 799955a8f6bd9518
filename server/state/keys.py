"""Every Redis key Yitang uses, in one place (LiveKit's redisstore.go is the model).

Each function returns one key; the comment above it gives the key's Redis type
and what it holds. Nothing else in the code base builds a key by hand, so this
module is the whole schema.
"""

from __future__ import annotations

PREFIX = "yitang"

# zset: room id => creation time (ms since epoch); the index of all rooms.
ROOMS = f"{PREFIX}:rooms"

# hash: node id => JSON NodeInfo (address, started, load); entries of dead nodes are
# pruned by whoever notices their heartbeat key has expired.
NODES = f"{PREFIX}:nodes"

# hash: room id => node id; the node whose process hosts the room's media.
ROOM_NODE = f"{PREFIX}:room_node"

# zset: room id => floor deadline (ms since epoch) for floors granted with a time limit.
FLOOR_DEADLINES = f"{PREFIX}:floor_deadlines"

# set: ids of rooms with participants present; the presence sweep's work list.
ACTIVE_ROOMS = f"{PREFIX}:active_rooms"

# channel: Socket.IO fan-out between server processes (python-socketio's AsyncRedisManager).
SOCKETIO_CHANNEL = f"{PREFIX}:socketio"


def node_alive(node_id: str) -> str:
    """string with TTL: "1" while the node heartbeats; its expiry means the node is gone."""
    return f"{PREFIX}:node:{node_id}:alive"


def room_definition(room_id: str) -> str:
    """string: JSON Room (title, topic, schedule, venues, agenda); written once at creation."""
    return f"{PREFIX}:room:{room_id}:definition"


def room_live(room_id: str) -> str:
    """string: JSON LiveState (status, floor, speaking queue, agenda position, lock, version).

    Changed only by optimistic transactions (WATCH) so concurrent hosts and nodes never
    lose each other's updates.
    """
    return f"{PREFIX}:room:{room_id}:live"


def room_participants(room_id: str) -> str:
    """hash: identity => JSON Participant for everyone currently connected."""
    return f"{PREFIX}:room:{room_id}:participants"


def room_presence(room_id: str) -> str:
    """zset: identity => presence deadline (ms since epoch), pushed forward by node heartbeats.

    A member whose deadline passed is gone (its node died); sweeps remove it.
    """
    return f"{PREFIX}:room:{room_id}:presence"


def room_roster(room_id: str) -> str:
    """hash: identity => JSON Invitee (name, role, venue) for everyone a token was issued to."""
    return f"{PREFIX}:room:{room_id}:roster"


def room_admitted(room_id: str) -> str:
    """set: identities that have joined this session; a locked room still re-admits them."""
    return f"{PREFIX}:room:{room_id}:admitted"


def room_banned(room_id: str) -> str:
    """set: identities the host removed; refused at connect for the rest of the session."""
    return f"{PREFIX}:room:{room_id}:banned"


def room_timeline(room_id: str) -> str:
    """stream: the session's timeline (joined, left, hand, floor, agenda, chat...).

    Fields: `type` and `data` (JSON). Capped at TIMELINE_MAXLEN entries.
    """
    return f"{PREFIX}:room:{room_id}:timeline"


def room_keys(room_id: str) -> list[str]:
    """All per-room keys, for deleting a room completely."""
    return [
        room_definition(room_id),
        room_live(room_id),
        room_participants(room_id),
        room_presence(room_id),
        room_roster(room_id),
        room_admitted(room_id),
        room_banned(room_id),
        room_timeline(room_id),
    ]


#: Upper bound on a room's timeline stream length (approximate trimming).
TIMELINE_MAXLEN = 20_000


# --- recordings (server/recording) ---------------------------------------------------------

# zset: recording id => start time (ms since epoch); the archive listed by date.
RECORDINGS = f"{PREFIX}:recordings"

# hash: room id => recording id of the room's recording in progress (any node).
ACTIVE_RECORDINGS = f"{PREFIX}:active_recordings"


def recording(recording_id: str) -> str:
    """string: JSON RecordingSummary (title, room, venues, speakers, state, duration...)."""
    return f"{PREFIX}:recording:{recording_id}"


def recording_lease(recording_id: str) -> str:
    """string with TTL: the node id writing this recording; its expiry means the writer died."""
    return f"{PREFIX}:recording:{recording_id}:lease"


def recording_render(recording_id: str) -> str:
    """hash: the combined-video job (state, progress 0-100, message, job_id, attempt, updated)."""
    return f"{PREFIX}:recording:{recording_id}:render"


def recordings_by_venue(venue_id: str) -> str:
    """zset: recording id => start time (ms) for recordings in which this venue took part."""
    return f"{PREFIX}:recordings:venue:{venue_id}"


def recordings_by_speaker(speaker: str) -> str:
    """zset: recording id => start time (ms) for recordings in which `speaker` spoke.

    `speaker` is an identity or a case-folded display name (both are indexed).
    """
    return f"{PREFIX}:recordings:speaker:{speaker}"


def recordings_by_term(term: str) -> str:
    """zset: recording id => start time (ms) for titles containing `term`.

    Terms are the case-folded title's single characters and character pairs, so a
    substring search (Chinese has no spaces) intersects a few sets instead of scanning.
    """
    return f"{PREFIX}:recordings:term:{term}"
