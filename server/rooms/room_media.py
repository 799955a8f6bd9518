"""RoomMedia: one owned room's use of the SFU — who may publish, whose video is pinned.

The room's owner drives its media through this one object; the media layer
reports back through the callback given here (the owner's actor takes the
events in order) and never knows about roles or sockets. A room's media lives
on its owner node only: the media room is created on the first participant and
closed when the room is handed over or ends.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from server.media import MediaError, MediaEvent, MediaNode, MediaRoom
from server.media.events import ConnectionName
from server.rooms.errors import Conflict, Forbidden, InvalidRequest, RoomError
from server.rooms.models import Role
from server.rooms.payloads import VenueQuality
from server.rooms.stage import may_publish

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
        msid = re.search(r"^a=msid:(\S+) (\S+)", section, re.MULTILINE)
        if mid and msid and not re.search(r"^a=inactive", section, re.MULTILINE):
            tracks.append(
                {
                    "mid": mid.group(1),
                    "identity": msid.group(1),
                    "kind": kind,
                    "track": msid.group(2),
                }
            )
    return tracks


def _track_number(track_id: str) -> int:
    """Track ids end in a number the media layer counts up (`<identity>-<kind>-<n>`)."""
    tail = track_id.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


class RoomMedia:
    """The media of one room on its owner node."""

    def __init__(
        self, node: MediaNode, room_id: str, on_event: Callable[[MediaEvent], None]
    ) -> None:
        self._node = node
        self.room_id = room_id
        self._on_event = on_event
        #: identity => (role, session) of participants with media here.
        self._members: dict[str, tuple[Role, str]] = {}
        self._floor: str | None = None
        #: Who a host pinned into the spotlight, or who shares a screen: their video
        #: reaches everyone too.
        self._spotlight: frozenset[str] = frozenset()
        #: (pinned, screen sharer) as the live state has them, for the stage's order.
        self._featured: tuple[str | None, ...] = ()
        #: identity => its venue (the control room caps quality per venue).
        self._venue_of: dict[str, str] = {}
        #: venue id => the control room's caps on it (lifted caps are removed). Kept as
        #: long as this object: the session's media on this owner; a new owner starts
        #: without caps.
        self._venue_caps: dict[str, VenueQuality] = {}
        self._closed = False

    @property
    def media_room(self) -> MediaRoom | None:
        """The open media room, if anyone has joined (recording taps it)."""
        return self._node.get_room(self.room_id)

    @property
    def active_speaker(self) -> str | None:
        """Whose voice is loudest now, if anyone has spoken."""
        room = self.media_room
        return None if room is None else room.active_speaker

    def _room(self) -> MediaRoom:
        if self._closed:
            raise Conflict("closed", "this session's media has moved or ended")
        return self._node.room(self.room_id, on_event=self._on_event)

    def _existing(self, identity: str, session: str) -> MediaRoom:
        room = self.media_room
        entry = self._members.get(identity)
        # The session must match: a replaced connection cannot touch its successor's media.
        if room is None or entry is None or entry[1] != session:
            raise Conflict("not_joined", "your media session is not set up; join again")
        return room

    async def add(self, identity: str, role: Role, session: str, venue: str = "") -> None:
        """Set up media for a joining participant (replacing an older connection's)."""
        room = self._room()
        if identity in self._members:
            await room.remove_participant(identity)
        self._members[identity] = (role, session)
        self._venue_of[identity] = venue
        await room.add_participant(identity, can_publish=may_publish(role, identity == self._floor))
        cap = self._venue_caps.get(venue)
        if cap is not None:
            self._apply_cap(room, identity, cap)
        self._update_pins()

    @property
    def venue_caps(self) -> dict[str, VenueQuality]:
        """venue id => the control room's caps on it (venues without caps left out)."""
        return dict(self._venue_caps)

    def set_venue_quality(self, venue: str, cap: VenueQuality) -> list[str]:
        """Cap (or with a lifted `cap`, uncap) what a venue receives and sends, for its
        participants now and those who join later; returns whom it applied to now."""
        if cap.lifted:
            self._venue_caps.pop(venue, None)
        else:
            self._venue_caps[venue] = cap
        room = self.media_room
        if room is None or self._closed:
            return []
        applied = []
        for identity in self._members:
            if self._venue_of.get(identity) == venue and identity in room.participant_ids:
                self._apply_cap(room, identity, cap)
                applied.append(identity)
        return applied

    @staticmethod
    def _apply_cap(room: MediaRoom, identity: str, cap: VenueQuality) -> None:
        try:
            room.set_quality_cap(
                identity, receive=cap.receive, send_max_bitrate=cap.send_max_bitrate
            )
        except MediaError as exc:
            raise room_error(exc) from exc

    async def set_role(self, identity: str, role: Role) -> None:
        """A participant's role changed in the room (an observer on stage, and back)."""
        entry = self._members.get(identity)
        if entry is not None and entry[0] is not role:
            self._members[identity] = (role, entry[1])
            await self.apply_publish_rights()

    async def apply_publish_rights(self, *, withdraw: bool = True) -> None:
        """Give (and unless `withdraw` is False, withdraw) the right to send media by role
        and floor (guests publish only while they hold it): a guest whose turn ended stops
        reaching everyone at once."""
        room = self.media_room
        if room is None or self._closed:
            return
        for identity, (role, _) in list(self._members.items()):
            if identity not in room.participant_ids:
                continue
            allowed = may_publish(role, identity == self._floor)
            if room.can_publish(identity) != allowed and (allowed or withdraw):
                await room.set_can_publish(identity, allowed)

    async def remove(self, identity: str, session: str | None = None) -> None:
        """Tear down a participant's media; their tracks end for everyone."""
        entry = self._members.get(identity)
        if entry is None or (session is not None and entry[1] != session):
            return
        del self._members[identity]
        self._venue_of.pop(identity, None)
        room = self.media_room
        if room is None:
            return
        if not self._members:
            # Nobody left: release the room (its tasks, its state) until someone joins again.
            await room.close()
        else:
            await room.remove_participant(identity)
            self._update_pins()

    async def close(self) -> None:
        """End all media of the room (hand-over, session ended or deleted); idempotent."""
        self._closed = True
        self._members.clear()
        self._venue_caps.clear()
        room = self.media_room
        if room is not None:
            await room.close()

    def set_floor(self, identity: str | None, *featured: str | None) -> None:
        """The floor holder's video and that of the featured (pinned, sharing a screen),
        like the host's, reach everyone."""
        spotlight = frozenset(f for f in featured if f is not None)
        if (self._floor, self._spotlight, self._featured) != (identity, spotlight, featured):
            self._floor = identity
            self._spotlight = spotlight
            self._featured = featured
            self._update_pins()

    def newest_video_track(self, identity: str) -> str | None:
        """The video track `identity` published last (a screen added beside the camera)."""
        room = self.media_room
        if room is None:
            return None
        ids = [
            t.track_id for t in room.tracks() if t.participant_id == identity and t.kind == "video"
        ]
        return max(ids, key=_track_number, default=None)

    def _update_pins(self) -> None:
        room = self.media_room
        if room is None:
            return
        pinned = {identity for identity, (role, _) in self._members.items() if role is Role.HOST}
        if self._floor is not None:
            pinned.add(self._floor)
        pinned |= self._spotlight
        room.set_pinned(pinned)
        room.set_spotlight(self._stage())

    def _stage(self) -> set[str]:
        """Who is on the stage (receivers get their camera in high quality), in the
        page's order: the screen sharer, whom a host pinned, the floor holder, the host."""
        for candidate in (*reversed(self._featured), self._floor):
            if candidate is not None and candidate in self._members:
                return {candidate}
        return {i for i, (role, _) in self._members.items() if role is Role.HOST}

    async def publish(
        self,
        identity: str,
        session: str,
        offer_sdp: str,
        low_video: Mapping[str, str] | None = None,
    ) -> str:
        """Answer a participant's publish offer (`low_video`: {low mid: camera mid})."""
        try:
            room = self._existing(identity, session)
            return await room.publish(identity, offer_sdp, low_video=low_video)
        except MediaError as exc:
            raise room_error(exc) from exc

    def set_view(
        self, identity: str, session: str, pinned: str | None, tiles_visible: bool
    ) -> None:
        """A receiver's layout: whom it pinned large, whether its tiles are on screen."""
        try:
            self._existing(identity, session).set_view(
                identity, pinned=pinned, tiles_visible=tiles_visible
            )
        except MediaError as exc:
            raise room_error(exc) from exc

    async def subscriber_answer(
        self, identity: str, session: str, answer_sdp: str, offer_id: str | None = None
    ) -> None:
        """Apply a participant's answer to our subscriber offer (`offer_id`: which one)."""
        try:
            await self._existing(identity, session).subscriber_answer(
                identity, answer_sdp, offer_id
            )
        except MediaError as exc:
            raise room_error(exc) from exc

    async def add_candidate(
        self, identity: str, session: str, pc: ConnectionName, candidate: dict[str, Any]
    ) -> None:
        """Add a trickled ICE candidate of the client's publish or subscribe connection."""
        try:
            room = self._existing(identity, session)
            await room.add_remote_candidate(identity, pc, candidate)
        except MediaError as exc:
            raise room_error(exc) from exc

    async def restart(self, identity: str, session: str) -> None:
        """Start a fresh subscribe connection (the client re-publishes on its own)."""
        try:
            await self._existing(identity, session).resubscribe(identity)
        except MediaError as exc:
            raise room_error(exc) from exc

    def session_of(self, identity: str) -> str | None:
        """The session whose media is set up for `identity`, if any."""
        entry = self._members.get(identity)
        return entry[1] if entry else None
