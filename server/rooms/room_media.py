"""RoomMedia: the consultation's use of the SFU — who may publish, whose video is pinned,
and where the media layer's events go.

The domain drives the media layer through this one class; the media layer
reports back through the callback given here and never knows about rooms,
roles or sockets. A room's media lives on the node it is pinned to; this node
serves media only for rooms pinned to it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from server.media import (
    ActiveSpeaker,
    MediaError,
    MediaEvent,
    MediaNode,
    MediaRoom,
    ParticipantMediaState,
    SubscriberOffer,
)
from server.media.events import ConnectionName
from server.rooms.errors import Conflict, Forbidden, InvalidRequest, RoomError
from server.rooms.models import Role
from server.rooms.notifier import RoomNotifier

logger = logging.getLogger(__name__)

_MEDIA_ERRORS: dict[str, type[RoomError]] = {
    "bad_sdp": InvalidRequest,
    "bad_candidate": InvalidRequest,
    "bad_participant_id": InvalidRequest,
    "not_allowed": Forbidden,
    "unknown_participant": Conflict,
    "participant_exists": Conflict,
    "bad_state": Conflict,
    "closed": Conflict,
}
_CODE_RENAMES = {"not_allowed": "publish_forbidden", "unknown_participant": "not_joined"}


def room_error(exc: MediaError) -> RoomError:
    """The client-facing error for a media-layer refusal."""
    kind = _MEDIA_ERRORS.get(exc.code, InvalidRequest)
    return kind(_CODE_RENAMES.get(exc.code, exc.code), exc.message)


def subscriber_tracks(sdp: str) -> list[dict[str, str]]:
    """Map each m-line of a subscriber offer to its publisher: [{mid, identity, kind}].

    The media layer sets each m-line's msid to `<publisher identity> <track id>`;
    inactive m-lines (removed tracks) are left out.
    """
    tracks = []
    for section in re.split(r"\r?\n(?=m=)", sdp)[1:]:
        kind = section[2:].split(" ", 1)[0]
        mid = re.search(r"^a=mid:(\S+)", section, re.MULTILINE)
        msid = re.search(r"^a=msid:(\S+) ", section, re.MULTILINE)
        if mid and msid and not re.search(r"^a=inactive", section, re.MULTILINE):
            tracks.append({"mid": mid.group(1), "identity": msid.group(1), "kind": kind})
    return tracks


class RoomMedia:
    """This node's media for the rooms pinned to it."""

    def __init__(self, node: MediaNode, notifier: RoomNotifier) -> None:
        self._node = node
        self._notifier = notifier
        #: room id => identity => (role, session) of participants with media here.
        self._members: dict[str, dict[str, tuple[Role, str]]] = {}
        #: room id => identity holding the floor.
        self._floor: dict[str, str | None] = {}

    def room(self, room_id: str) -> MediaRoom | None:
        """This node's media room for `room_id`, if it hosts one (diagnostics and tests)."""
        return self._node.get_room(room_id)

    def _room(self, room_id: str) -> MediaRoom:
        return self._node.room(room_id, on_event=lambda event: self._on_event(room_id, event))

    def room_ids(self) -> list[str]:
        """Rooms whose media this node hosts."""
        return list(self._members)

    def _existing(self, room_id: str, identity: str, session: str) -> MediaRoom:
        room = self._node.get_room(room_id)
        entry = self._members.get(room_id, {}).get(identity)
        # The session must match: a replaced connection cannot touch its successor's media.
        if room is None or entry is None or entry[1] != session:
            raise Conflict("not_joined", "your media session is not set up; join again")
        return room

    async def add(self, room_id: str, identity: str, role: Role, session: str) -> None:
        """Set up media for a joining participant (replacing an older connection's)."""
        members = self._members.setdefault(room_id, {})
        room = self._room(room_id)
        if identity in members:
            await room.remove_participant(identity)
        members[identity] = (role, session)
        await room.add_participant(identity, can_publish=role is not Role.OBSERVER)
        self._update_pins(room_id)

    async def remove(self, room_id: str, identity: str, session: str | None = None) -> None:
        """Tear down a participant's media; their tracks end for everyone."""
        members = self._members.get(room_id, {})
        entry = members.get(identity)
        if entry is None or (session is not None and entry[1] != session):
            return
        del members[identity]
        room = self._node.get_room(room_id)
        if not members:
            # Nobody left: release the room (its tasks, its state) until someone joins again.
            await self.close_room(room_id)
        elif room is not None:
            await room.remove_participant(identity)
            self._update_pins(room_id)

    async def close_room(self, room_id: str) -> None:
        """End all media of a room (session ended or deleted)."""
        self._members.pop(room_id, None)
        self._floor.pop(room_id, None)
        room = self._node.get_room(room_id)
        if room is not None:
            await room.close()

    def set_floor(self, room_id: str, identity: str | None) -> None:
        """The floor holder's video, like the host's, reaches everyone."""
        if self._floor.get(room_id) != identity:
            self._floor[room_id] = identity
            self._update_pins(room_id)

    def _update_pins(self, room_id: str) -> None:
        room = self._node.get_room(room_id)
        if room is None:
            return
        members = self._members.get(room_id, {})
        pinned = {identity for identity, (role, _) in members.items() if role is Role.HOST}
        speaker = self._floor.get(room_id)
        if speaker is not None:
            pinned.add(speaker)
        room.set_pinned(pinned)

    async def publish(self, room_id: str, identity: str, session: str, offer_sdp: str) -> str:
        """Answer a participant's publish offer."""
        try:
            return await self._existing(room_id, identity, session).publish(identity, offer_sdp)
        except MediaError as exc:
            raise room_error(exc) from exc

    async def subscriber_answer(
        self, room_id: str, identity: str, session: str, answer_sdp: str
    ) -> None:
        """Apply a participant's answer to our subscriber offer."""
        try:
            room = self._existing(room_id, identity, session)
            await room.subscriber_answer(identity, answer_sdp)
        except MediaError as exc:
            raise room_error(exc) from exc

    async def add_candidate(
        self,
        room_id: str,
        identity: str,
        session: str,
        pc: ConnectionName,
        candidate: dict[str, Any],
    ) -> None:
        """Add a trickled ICE candidate of the client's publish or subscribe connection."""
        try:
            room = self._existing(room_id, identity, session)
            await room.add_remote_candidate(identity, pc, candidate)
        except MediaError as exc:
            raise room_error(exc) from exc

    async def restart(self, room_id: str, identity: str, session: str) -> None:
        """Start a fresh subscribe connection (the client re-publishes on its own)."""
        try:
            await self._existing(room_id, identity, session).resubscribe(identity)
        except MediaError as exc:
            raise room_error(exc) from exc

    async def _on_event(self, room_id: str, event: MediaEvent) -> None:
        members = self._members.get(room_id, {})
        if isinstance(event, SubscriberOffer):
            entry = members.get(event.participant_id)
            if entry is not None:
                payload = {"sdp": event.sdp, "tracks": subscriber_tracks(event.sdp)}
                await self._notifier.send(entry[1], "subscriber_offer", payload)
        elif isinstance(event, ActiveSpeaker):
            await self._notifier.broadcast(
                room_id, "active_speaker", {"identity": event.participant_id}
            )
        elif isinstance(event, ParticipantMediaState):
            await self._notifier.broadcast(
                room_id,
                "media_connection",
                {
                    "identity": event.participant_id,
                    "connection": event.connection,
                    "state": event.state,
                },
            )
