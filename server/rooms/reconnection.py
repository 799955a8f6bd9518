"""Participants being waited for: a dropped socket, or media connections being rebuilt.

aiortc has no ICE restart, so a client whose network failed rebuilds both peer
connections, and a client whose socket dropped connects and joins again. Neither
is a departure: the participant stays in the session (its place in the queue,
the floor, its media on the server) in a `reconnecting` state, and the room sees
`participant_reconnecting` then `participant_reconnected`, never a leave and a
join. A dropped socket is held for the room's reconnect grace period; when it
ends without a new join, that is the leave (see `membership.expire_reconnect`).
Media being rebuilt is waited for as long as the socket stays: the participant is
still there, and the control room shows its connections. The owner notices lost
media itself too: a connection that failed on its side, or a connected publisher
from whom no packet arrived for FLOW_SILENCE_SECONDS (aiortc's own consent check
takes 30 s), until its packets flow again.
"""

from __future__ import annotations

from server.media import ParticipantMediaState
from server.rooms.models import Participant, ReconnectReason
from server.rooms.owned_room import (
    CheckMediaFlow,
    ExpireReconnect,
    MediaRecovering,
    OwnedRoom,
    loop_time,
)

#: How often the owner looks whether publishers' packets still arrive.
FLOW_CHECK_SECONDS = 2.0
#: A connected publisher from whom nothing arrived this long is waited for. A browser sends
#: packets for a muted microphone and a camera turned off too (silence, black frames).
FLOW_SILENCE_SECONDS = 6.0


async def mark(room: OwnedRoom, participant: Participant, reason: ReconnectReason) -> Participant:
    """Put a participant in the reconnecting state (a dropped socket outranks media) and
    tell the room once."""
    if participant.reconnecting == reason or participant.reconnecting == "connection_lost":
        return participant
    updated = participant.model_copy(update={"reconnecting": reason})
    room.participants[participant.identity] = updated
    room.touch()
    await room.broadcast("participant_reconnecting", updated)
    return updated


async def clear(room: OwnedRoom, participant: Participant) -> Participant:
    """The participant is back: out of the reconnecting state, and the room is told."""
    if participant.reconnecting is None:
        return participant
    updated = participant.model_copy(update={"reconnecting": None})
    room.participants[participant.identity] = updated
    room.touch()
    await room.broadcast("participant_reconnected", updated)
    return updated


async def hold(room: OwnedRoom, participant: Participant) -> None:
    """The participant's socket dropped: wait the grace period for it to join again."""
    await mark(room, participant, "connection_lost")
    delay = room.settings.reconnect_grace_seconds
    room.post_later(delay, ExpireReconnect(participant.identity, participant.session))


def holds_drops(room: OwnedRoom) -> bool:
    """Whether a dropped socket is held (a grace period is configured) or is a leave."""
    return room.settings.reconnect_grace_seconds > 0


async def media_recovering(room: OwnedRoom, command: MediaRecovering) -> None:
    """The client said it rebuilds its peer connections (`media_restart`)."""
    participant = room.participants.get(command.identity)
    if participant is None or participant.session != command.session:
        return
    room.media_waits_for_publish[command.identity] = command.publishes
    await mark(room, participant, "media")


async def media_state(room: OwnedRoom, event: ParticipantMediaState) -> None:
    """The server's side of a participant's connection changed state.

    A connection that failed on the server's side (consent lost) is media being
    waited for, as if the client had said so; the participant is back when the
    connection it sends on (or, receiving only, the one it receives on) connects.
    """
    participant = room.participants.get(event.participant_id)
    if participant is None:
        return
    if event.state == "failed":
        room.media_waits_for_publish[participant.identity] = event.connection == "publish"
        await mark(room, participant, "media")
        return
    if event.state != "connected" or participant.reconnecting != "media":
        return
    waits_for_publish = room.media_waits_for_publish.get(participant.identity, False)
    if event.connection == "publish" or not waits_for_publish:
        room.media_waits_for_publish.pop(participant.identity, None)
        await clear(room, participant)


def watch_media_flow(room: OwnedRoom) -> None:
    """Start looking at publishers' packets periodically (once per room; idempotent)."""
    if not room.media_flow_watched:
        room.media_flow_watched = True
        room.post_later(FLOW_CHECK_SECONDS, CheckMediaFlow())


async def check_media_flow(room: OwnedRoom) -> None:
    """Mark publishers whose packets stopped as reconnecting, and clear those whose packets
    came back; look again later while anyone is in the room."""
    media = room.media.media_room
    now = loop_time()
    received_by = media.packets_received_by_participant() if media is not None else {}
    for identity in list(room.media_flow):
        if identity not in received_by:
            del room.media_flow[identity]
    for identity, received in received_by.items():
        participant = room.participants.get(identity)
        if media is None or participant is None:
            continue
        if media.connection_states(identity)["publish"] != "connected":
            room.media_flow.pop(identity, None)
            continue
        before = room.media_flow.get(identity)
        if before is None or received != before[0]:
            room.media_flow[identity] = (received, now)
            if before is not None and participant.reconnecting == "media":
                waits = room.media_waits_for_publish.get(identity, False)
                if not waits:  # a rebuild in progress clears when its connection is up
                    await clear(room, participant)
        elif now - before[1] >= FLOW_SILENCE_SECONDS and participant.reconnecting is None:
            await mark(room, participant, "media")
    if room.participants:
        room.post_later(FLOW_CHECK_SECONDS, CheckMediaFlow())
    else:
        room.media_flow_watched = False
