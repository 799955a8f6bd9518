"""Every Redis key and channel Yitang uses, in one place (LiveKit's redisstore.go is the model).

Each function returns one key; the comment above it gives the key's Redis type
and what it holds. Nothing else in the code base builds a key by hand, so this
module is the whole schema.

Who writes what: a room's live state (snapshot, timeline) is written only by
the node holding the room's lease, through a script that checks the lease
first (a fenced write); definitions and rosters are written by whichever node
serves the admin API; every node writes its own registry entry.
"""

from __future__ import annotations

PREFIX = "yitang"

# zset: room id => creation time (ms since epoch); the index of all rooms.
ROOMS = f"{PREFIX}:rooms"

# hash: node id => JSON NodeInfo (URL, started, load); entries of dead nodes are
# pruned by whoever notices their heartbeat key has expired.
NODES = f"{PREFIX}:nodes"


def node_alive(node_id: str) -> str:
    """string with TTL: "1" while the node heartbeats; its expiry means the node is gone."""
    return f"{PREFIX}:node:{node_id}:alive"


def room_definition(room_id: str) -> str:
    """string: JSON Room (title, topic, schedule, venues, agenda, incarnation); written once."""
    return f"{PREFIX}:room:{room_id}:definition"


def room_lease(room_id: str) -> str:
    """string with TTL: the id of the node that owns the room (its actor, its media).

    Taken with SET NX PX, renewed by the owner's heartbeat, released on hand-over;
    its expiry means the owner died and the next node that needs the room takes it.
    """
    return f"{PREFIX}:room:{room_id}:lease"


def room_broadcast(room_id: str) -> str:
    """string with TTL: JSON of where the room's live broadcast is (owner node, its URL, the
    directory of its files, the worker's origin tag); renewed by the owner while it runs."""
    return f"{PREFIX}:room:{room_id}:broadcast"


def room_snapshot(room_id: str) -> str:
    """string: JSON PersistedRoom, the owner's in-memory state written behind.

    Live state (floor, queue, agenda, lock, recording), participants with their
    node and session, removed and admitted identities, the broadcast sequence.
    A successor loads it on takeover; other nodes read it for the REST API.
    """
    return f"{PREFIX}:room:{room_id}:snapshot"


def room_roster(room_id: str) -> str:
    """hash: identity => JSON Invitee (name, role, venue) for everyone a token was issued to."""
    return f"{PREFIX}:room:{room_id}:roster"


def room_invitations(room_id: str) -> str:
    """hash: identity => JSON Invitation (the last join link issued to them and its expiry),
    so the organizer page can show the links again after a reload."""
    return f"{PREFIX}:room:{room_id}:invitations"


def room_timeline(room_id: str) -> str:
    """stream: the session's timeline (joined, left, hand, floor, agenda, chat...).

    Fields: `type` and `data` (JSON). Entry ids are assigned by the room's owner
    (monotonic `ms-seq`), so an entry keeps the id clients saw before it was
    written. Capped at TIMELINE_MAXLEN entries.
    """
    return f"{PREFIX}:room:{room_id}:timeline"


def room_prechecks(room_id: str) -> str:
    """hash with TTL: "<identity>/<leg>" => JSON PrecheckRecord, the latest pre-session
    connection check of each identity over each leg (direct, relay); see server/precheck."""
    return f"{PREFIX}:room:{room_id}:prechecks"


# zset: room id => time of its latest pre-session check (ms since epoch); which rooms the
# control room shows checks for (entries older than the checks' TTL are pruned on read).
PRECHECK_ROOMS = f"{PREFIX}:prechecks"


def room_suggestion_replies(room_id: str) -> str:
    """hash: suggestion id => JSON SuggestionHandling (status, reply, when) set after the
    session over the REST API; the suggestions themselves are in the snapshot and timeline."""
    return f"{PREFIX}:room:{room_id}:suggestion_replies"


def room_keys(room_id: str) -> list[str]:
    """All per-room keys, for deleting a room completely."""
    return [
        room_definition(room_id),
        room_lease(room_id),
        room_broadcast(room_id),
        room_snapshot(room_id),
        room_roster(room_id),
        room_invitations(room_id),
        room_timeline(room_id),
        room_prechecks(room_id),
        room_suggestion_replies(room_id),
    ]


#: Upper bound on a room's timeline stream length (approximate trimming).
TIMELINE_MAXLEN = 20_000


# --- the node-to-node bus (server/cluster/bus.py) --------------------------------------------


def node_channel(node_id: str) -> str:
    """pub/sub channel: messages for one node (requests to the rooms it owns, replies,
    events and closes for the sockets it holds)."""
    return f"{PREFIX}:bus:node:{node_id}"


def room_channel(room_id: str) -> str:
    """pub/sub channel: a room's broadcasts, from its owner to the nodes holding its sockets."""
    return f"{PREFIX}:bus:room:{room_id}"


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


# --- the session record (server/recording/moment_index.py, audit.py) -------------------------


def moments_by_term(term: str) -> str:
    """zset: ``<recording id>/<n>`` => recording start time (ms) for moments containing `term`.

    A moment is a speech, an agenda item, a chat message, an approved public question
    or a member's suggestion at a time in a recording; terms are characters and character pairs,
    as for titles, so Chinese is found without a segmenter.
    """
    return f"{PREFIX}:moments:term:{term}"


def recording_moments(recording_id: str) -> str:
    """hash: n => JSON Moment (kind, offset, who, text) of one recording's indexed moments."""
    return f"{PREFIX}:recording:{recording_id}:moments"


def recording_moment_terms(recording_id: str) -> str:
    """set: the terms one recording's moments are indexed under (to remove them again)."""
    return f"{PREFIX}:recording:{recording_id}:moment_terms"


# stream: audit entries (JSON `entry`: action, recording, who, from where, what was removed),
# capped at AUDIT_MAXLEN; deleting a recording (by the API or by retention) writes one.
AUDIT = f"{PREFIX}:audit"
#: Upper bound on the audit stream's length (approximate trimming).
AUDIT_MAXLEN = 100_000
