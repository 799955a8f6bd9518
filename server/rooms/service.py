"""ConsultationService: every operation on a consultation session, with its permission checks.

The edges (REST, Socket.IO) authenticate the caller and validate the payload
shape; this module decides whether the caller may do it, applies it to the
state in Redis, writes the timeline and tells the room. Roles, rooms and
venues always come from verified token claims, never from a request body.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from server.media.events import ConnectionName
from server.recording import RecordingInfo, RecordingService
from server.recording.errors import RecordingConflict
from server.rooms import floor
from server.rooms.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    RoomError,
    Unauthorized,
)
from server.rooms.models import (
    Invitee,
    LiveState,
    Participant,
    Role,
    Room,
    RoomSpec,
    Snapshot,
    TimelineEntry,
)
from server.rooms.notifier import RoomNotifier
from server.rooms.room_media import RoomMedia
from server.rooms.tokens import JoinClaims, TokenSigner
from server.state.store import RedisStore, RoomMissing, now_ms

logger = logging.getLogger(__name__)

#: Timeline entries included in a join snapshot.
SNAPSHOT_TIMELINE_LENGTH = 200
#: Connections of one identity a removal closes at most (a reconnect racing the ban).
MAX_REMOVAL_ROUNDS = 5


class ConsultationService:
    """The domain API used by the HTTP and Socket.IO edges of one server process."""

    def __init__(
        self,
        store: RedisStore,
        signer: TokenSigner,
        notifier: RoomNotifier,
        media: RoomMedia,
        node_id: str,
        presence_ttl_seconds: float,
    ) -> None:
        self.store = store
        self.signer = signer
        self.notifier = notifier
        self.media = media
        self.node_id = node_id
        self.presence_ttl_ms = presence_ttl_seconds * 1000.0
        #: (room id, identity) => session id of participants connected to this process.
        self.local_sessions: dict[tuple[str, str], str] = {}
        #: The node's recording service, once attached (see attach_recorder).
        self.recorder: RecordingService | None = None

    # --- rooms (organizer, API key) ---------------------------------------------------

    async def create_room(self, spec: RoomSpec) -> Room:
        """Create a session; the id is the spec's or a fresh one. Conflict if the id is taken."""
        room_id = spec.id or f"room-{secrets.token_hex(5)}"
        room = Room(**{**spec.model_dump(), "id": room_id, "created_at": datetime.now(UTC)})
        if not await self.store.create_room(room):
            raise Conflict("room_exists", f"a room with id {room_id!r} already exists")
        logger.info("room %s created: %s", room.id, room.title)
        return room

    async def get_room(self, room_id: str) -> Room:
        """The room's definition; NotFound otherwise."""
        room = await self.store.get_room(room_id)
        if room is None:
            raise NotFound("room_not_found", f"room {room_id!r} does not exist")
        return room

    async def live_state(self, room_id: str) -> LiveState:
        """The room's live state; NotFound otherwise."""
        live = await self.store.get_live(room_id)
        if live is None:
            raise NotFound("room_not_found", f"room {room_id!r} does not exist")
        return live

    async def delete_room(self, room_id: str) -> None:
        """Delete a room; anyone still connected is told the session ended and disconnected."""
        await self.get_room(room_id)
        present = await self.store.participants(room_id)
        await self._stop_recording_if_any(room_id)
        await self.store.delete_room(room_id)
        await self.media.close_room(room_id)
        await self.notifier.broadcast(room_id, "session_ended", {"reason": "deleted"})
        for participant in present:
            await self.notifier.disconnect(participant)

    async def issue_token(
        self, room_id: str, invitee: Invitee, ttl_seconds: int
    ) -> tuple[str, JoinClaims]:
        """Sign a join token for an invitee of an existing venue; hosts sit at the main venue."""
        room = await self.get_room(room_id)
        venue = room.venue(invitee.venue)
        if venue is None:
            raise InvalidRequest(
                "unknown_venue", f"room {room_id!r} has no venue {invitee.venue!r}"
            )
        if invitee.role is Role.HOST and not venue.main:
            raise InvalidRequest(
                "host_not_at_main_venue",
                f"the host sits at the main venue {room.main_venue.id!r}",
            )
        await self.store.add_invitee(room_id, invitee)
        return self.signer.issue(room_id, invitee, ttl_seconds)

    # --- joining and leaving --------------------------------------------------------

    async def join(self, claims: JoinClaims, session: str) -> Snapshot:
        """Admit the token's holder to its room; returns the snapshot to send them.

        A second connection with the same identity (a reload, another tab)
        replaces the first, which is disconnected.
        """
        room_id, invitee = claims.room, claims.invitee
        room = await self.check_admission(claims)
        participant = Participant(
            **invitee.model_dump(), session=session, node=self.node_id, joined_at=time.time()
        )
        replaced = await self.store.add_participant(
            room_id, participant, now_ms() + self.presence_ttl_ms
        )
        self.local_sessions[(room_id, invitee.identity)] = session
        try:
            return await self._admit(room, participant, replaced)
        except BaseException:
            # Leave no ghost behind: this connection never joined.
            await self.leave(room_id, invitee.identity, session, "join_failed", announce=False)
            raise

    async def _admit(
        self, room: Room, participant: Participant, replaced: Participant | None
    ) -> Snapshot:
        room_id, identity, session = room.id, participant.identity, participant.session
        if replaced is not None and replaced.session != session:
            await self.notifier.send(replaced.session, "replaced", {"reason": "joined elsewhere"})
            await self.notifier.disconnect(replaced)
        # The first node a room's participants reach hosts its media (LiveKit's room -> node map).
        if await self.store.pin_room(room_id, self.node_id) == self.node_id:
            await self.media.add(room_id, identity, participant.role, session)
        live, went_live = await self._change_live(room_id, lambda s: (floor.go_live(s), None))
        self.media.set_floor(room_id, live.floor.identity if live.floor else None)
        if went_live and room.auto_record:
            await self._auto_record(room_id)
        await self.notifier.broadcast(
            room_id, "participant_joined", participant.model_dump(mode="json")
        )
        await self._timeline(room_id, "joined", _who(participant))
        return await self.snapshot(room, participant)

    async def check_admission(self, claims: JoinClaims) -> Room:
        """Refuse a token whose session is gone, ended, locked to newcomers, or that was removed."""
        room_id, invitee = claims.room, claims.invitee
        room = await self.store.get_room(room_id)
        if room is None:
            raise NotFound("room_not_found", "this session no longer exists")
        if room.venue(invitee.venue) is None:
            raise Unauthorized(
                "token_invalid", "the token names a venue this session does not have"
            )
        live = await self.live_state(room_id)
        if live.status == "ended":
            raise Conflict("session_ended", "the session has ended")
        if await self.store.is_banned(room_id, invitee.identity):
            raise Forbidden("removed", "the host removed you from this session")
        if (
            live.locked
            and invitee.role is not Role.HOST
            and not await self.store.is_admitted(room_id, invitee.identity)
        ):
            raise Conflict("room_locked", "the host has locked this session")
        return room

    async def snapshot(self, room: Room, you: Participant) -> Snapshot:
        """The whole session as it is now, for one participant."""
        return Snapshot(
            room=room,
            you=you,
            participants=await self.store.participants(room.id),
            roster=await self.store.roster(room.id),
            live=await self.live_state(room.id),
            timeline=await self.store.timeline(room.id, count=SNAPSHOT_TIMELINE_LENGTH),
            server_time=now_ms(),
        )

    async def leave(
        self, room_id: str, identity: str, session: str, reason: str, announce: bool = True
    ) -> None:
        """A connection closed; forget the participant unless a newer session replaced it."""
        if self.local_sessions.get((room_id, identity)) == session:
            del self.local_sessions[(room_id, identity)]
        # Media is released even if a presence sweep already removed the record.
        await self.media.remove(room_id, identity, session)
        try:
            gone = await self.store.remove_participant(room_id, identity, session)
        except RoomMissing:
            return
        if gone is not None and announce:
            await self._forget(room_id, gone, reason)

    async def _forget(self, room_id: str, gone: Participant, reason: str) -> None:
        await self.media.remove(room_id, gone.identity, gone.session)
        try:
            await self._change_live(room_id, lambda s: (floor.forget(s, gone.identity), None))
        except NotFound:
            return
        await self.notifier.broadcast(
            room_id, "participant_left", {"identity": gone.identity, "reason": reason}
        )
        await self._timeline(room_id, "left", {**_who(gone), "reason": reason})

    # --- participant actions ------------------------------------------------------------

    async def raise_hand(self, actor: Participant, room_id: str) -> LiveState:
        """Ask for the floor."""
        if not actor.role.can_request_floor:
            raise Forbidden("forbidden", f"a {actor.role.value} cannot ask for the floor")
        state, changed = await self._change_live(
            room_id, lambda s: (floor.raise_hand(s, actor.identity), None)
        )
        if changed:
            await self._timeline(room_id, "hand_raised", _who(actor))
        return state

    async def lower_hand(self, actor: Participant, room_id: str, identity: str | None) -> LiveState:
        """Withdraw one's own request; the host may withdraw anyone's (skip)."""
        target = identity or actor.identity
        if target != actor.identity and actor.role is not Role.HOST:
            raise Forbidden("host_only", "only the host can lower someone else's hand")
        state, changed = await self._change_live(
            room_id, lambda s: (floor.lower_hand(s, target), None)
        )
        if changed:
            await self._timeline(
                room_id, "hand_lowered", {"identity": target, "by": actor.identity}
            )
        return state

    async def set_media_state(
        self, actor: Participant, room_id: str, audio_muted: bool, video_muted: bool
    ) -> Participant:
        """Record that the participant muted or unmuted their microphone or camera."""
        updated = await self.store.update_participant(
            room_id,
            actor.identity,
            actor.session,
            {"audio_muted": audio_muted, "video_muted": video_muted},
        )
        if updated is None:
            raise Conflict("not_joined", "you are no longer in this session")
        await self.notifier.broadcast(
            room_id, "participant_updated", updated.model_dump(mode="json")
        )
        return updated

    async def chat(self, actor: Participant, room_id: str, text: str) -> TimelineEntry:
        """Post a chat message (kept in the timeline)."""
        if not actor.role.can_chat:
            raise Forbidden("forbidden", "observers cannot write in the chat")
        live = await self.live_state(room_id)
        if live.status == "ended":
            raise Conflict("session_ended", "the session has ended")
        return await self._timeline(room_id, "chat", {**_who(actor), "text": text})

    # --- media ----------------------------------------------------------------------

    async def media_node_url(self, room_id: str) -> str | None:
        """The URL of the live node hosting the room's media, if one does."""
        owner = await self.store.room_node(room_id)
        if owner is None:
            return None
        return next((n.url for n in await self.store.live_nodes() if n.id == owner), None)

    async def _require_media_here(self, room_id: str) -> None:
        owner = await self.store.room_node(room_id)
        if owner is not None and owner != self.node_id:
            url = await self.media_node_url(room_id)
            raise Conflict("wrong_node", f"this session's media is served by {url or owner}")

    async def publish(self, actor: Participant, room_id: str, offer_sdp: str) -> str:
        """Answer the participant's publish offer (camera and microphone)."""
        if actor.role is Role.OBSERVER:
            raise Forbidden("publish_forbidden", "observers receive only")
        await self._require_media_here(room_id)
        return await self.media.publish(room_id, actor.identity, actor.session, offer_sdp)

    async def subscriber_answer(self, actor: Participant, room_id: str, answer_sdp: str) -> None:
        """Apply the participant's answer to the server's subscriber offer."""
        await self._require_media_here(room_id)
        await self.media.subscriber_answer(room_id, actor.identity, actor.session, answer_sdp)

    async def ice_candidate(
        self, actor: Participant, room_id: str, pc: ConnectionName, candidate: dict[str, Any]
    ) -> None:
        """Add a candidate the client trickled for one of its connections."""
        await self._require_media_here(room_id)
        await self.media.add_candidate(room_id, actor.identity, actor.session, pc, candidate)

    async def restart_media(self, actor: Participant, room_id: str) -> None:
        """Give the participant a fresh subscribe connection (after network trouble)."""
        await self._require_media_here(room_id)
        await self.media.restart(room_id, actor.identity, actor.session)

    # --- recording --------------------------------------------------------------------

    def attach_recorder(self, recorder: RecordingService) -> None:
        """Use `recorder` for this node's sessions; its changes are reported to the rooms."""
        self.recorder = recorder
        recorder.on_change = self.recording_changed
        recorder.on_error = self.recording_failed

    def _require_recorder(self) -> RecordingService:
        if self.recorder is None:
            raise Conflict("recording_unavailable", "this node does not record")
        return self.recorder

    async def start_recording(self, room_id: str, started_by: str) -> RecordingInfo:
        """Start recording a session whose media this node hosts."""
        recorder = self._require_recorder()
        room = await self.get_room(room_id)
        if (await self.live_state(room_id)).status == "ended":
            raise Conflict("session_ended", "the session has ended")
        await self._require_media_here(room_id)
        media_room = self.media.room(room_id)
        if media_room is None or media_room.closed:
            raise RecordingConflict(
                "no_media", "nobody has joined yet: start once media is flowing"
            )
        return await recorder.start(room_id, media_room, room, started_by)

    async def stop_recording(self, room_id: str) -> RecordingInfo:
        """Stop the session's recording (files closed, manifest written, combined video queued)."""
        recorder = self._require_recorder()
        if not recorder.is_recording(room_id):
            other = await recorder.index.active(room_id)
            holder = await recorder.index.lease_holder(other) if other else None
            if holder is not None:
                raise RecordingConflict(
                    "recording_elsewhere", f"node {holder} records this session; ask that node"
                )
        return await recorder.stop(room_id)

    async def host_start_recording(self, actor: Participant, room_id: str) -> RecordingInfo:
        """The host starts recording."""
        _require_host(actor)
        return await self.start_recording(room_id, f"host:{actor.identity}")

    async def host_stop_recording(self, actor: Participant, room_id: str) -> RecordingInfo:
        """The host stops recording."""
        _require_host(actor)
        return await self.stop_recording(room_id)

    async def _auto_record(self, room_id: str) -> None:
        try:
            await self.start_recording(room_id, "auto")
        except RoomError as exc:
            logger.warning("automatic recording of %s did not start: %s", room_id, exc.message)

    async def _stop_recording_if_any(self, room_id: str) -> None:
        if self.recorder is not None and self.recorder.is_recording(room_id):
            await self.recorder.stop(room_id)

    async def recording_changed(self, info: RecordingInfo) -> None:
        """Tell the room: the live state's recording flag, the timeline, a `recording` event."""
        recording = info.state == "recording"
        try:
            await self._change_live(
                info.room_id, lambda s: (s.model_copy(update={"recording": recording}), None)
            )
        except NotFound:
            return  # the session was deleted meanwhile
        if recording:
            data: dict[str, Any] = {"recording_id": info.id, "by": info.started_by}
            await self._timeline(info.room_id, "recording_started", data)
        elif info.state == "failed":
            data = {"recording_id": info.id, "error": info.error}
            await self._timeline(info.room_id, "recording_failed", data)
        else:
            data = {"recording_id": info.id, "state": info.state, "complete": info.complete}
            await self._timeline(info.room_id, "recording_stopped", data)
        await self.notifier.broadcast(info.room_id, "recording", info.model_dump(mode="json"))

    async def recording_failed(self, info: RecordingInfo) -> None:
        """Tell the session's hosts that recording failed (the session itself goes on)."""
        for participant in await self.store.participants(info.room_id):
            if participant.role is Role.HOST:
                payload = {"recording_id": info.id, "error": info.error}
                await self.notifier.send(participant.session, "recording_error", payload)

    # --- host actions -----------------------------------------------------------------

    async def grant_floor(
        self, actor: Participant, room_id: str, identity: str, time_limit_seconds: int | None
    ) -> LiveState:
        """Give the floor to a present participant who may publish."""
        _require_host(actor)
        target = await self._present(room_id, identity)
        if target.role is Role.OBSERVER:
            raise Conflict("cannot_speak", "an observer cannot be given the floor")
        return await self._grant(actor, room_id, target, time_limit_seconds)

    async def next_speaker(
        self, actor: Participant, room_id: str, time_limit_seconds: int | None
    ) -> LiveState:
        """Give the floor to the first present participant in the queue."""
        _require_host(actor)
        present = {p.identity: p for p in await self.store.participants(room_id)}
        live = await self.live_state(room_id)
        identity = floor.next_in_queue(live, set(present))
        return await self._grant(actor, room_id, present[identity], time_limit_seconds)

    async def _grant(
        self, actor: Participant, room_id: str, target: Participant, time_limit_seconds: int | None
    ) -> LiveState:
        grant_id = uuid.uuid4().hex[:16]
        state, _ = await self._change_live(
            room_id,
            lambda s: (
                floor.grant(s, target.identity, now_ms(), time_limit_seconds, grant_id),
                None,
            ),
        )
        await self._timeline(
            room_id,
            "floor_granted",
            {**_who(target), "by": actor.identity, "time_limit_seconds": time_limit_seconds},
        )
        return state

    async def revoke_floor(self, actor: Participant, room_id: str) -> LiveState:
        """Take the floor back (the host), or give it back (its holder)."""
        live = await self.live_state(room_id)
        holder = live.floor.identity if live.floor else None
        if actor.role is not Role.HOST and holder != actor.identity:
            raise Forbidden("host_only", "only the host or the speaker can end the speaker's turn")
        if holder is None:
            raise Conflict("no_floor", "nobody has the floor")
        expected = live.floor.grant_id if live.floor else ""
        state, changed = await self._change_live(
            room_id, lambda s: (floor.expire(s, expected), None)
        )
        if changed:
            await self._timeline(
                room_id, "floor_revoked", {"identity": holder, "by": actor.identity}
            )
        return state

    async def expire_floor(self, room_id: str) -> None:
        """End a time-limited floor whose deadline has passed (called by housekeeping)."""
        live = await self.store.get_live(room_id)
        if live is None or live.floor is None or live.floor.deadline is None:
            return
        if live.floor.deadline > now_ms():
            return
        grant = live.floor
        _, changed = await self._change_live(
            room_id, lambda s: (floor.expire(s, grant.grant_id), None)
        )
        if changed:
            await self._timeline(room_id, "floor_expired", {"identity": grant.identity})

    async def advance_agenda(
        self, actor: Participant, room_id: str, index: int | None
    ) -> LiveState:
        """Move to the next agenda item, or to a given one."""
        _require_host(actor)
        room = await self.get_room(room_id)
        state, changed = await self._change_live(
            room_id, lambda s: (floor.set_agenda_index(s, index, len(room.agenda)), None)
        )
        if changed:
            item = room.agenda[state.agenda_index]
            await self._timeline(
                room_id, "agenda_advanced", {"index": state.agenda_index, "title": item.title}
            )
        return state

    async def set_locked(self, actor: Participant, room_id: str, locked: bool) -> LiveState:
        """Lock the session against newcomers (those admitted before may still rejoin)."""
        _require_host(actor)
        state, changed = await self._change_live(
            room_id, lambda s: (floor.set_locked(s, locked), None)
        )
        if changed:
            await self._timeline(
                room_id, "locked" if locked else "unlocked", {"by": actor.identity}
            )
        return state

    async def request_mute(
        self, actor: Participant, room_id: str, identity: str, kind: str
    ) -> None:
        """Ask a participant to mute their microphone or camera."""
        _require_host(actor)
        target = await self._present(room_id, identity)
        await self.notifier.send(
            target.session, "mute_requested", {"kind": kind, "by": actor.identity}
        )
        await self._timeline(
            room_id, "mute_requested", {**_who(target), "kind": kind, "by": actor.identity}
        )

    async def remove(self, actor: Participant, room_id: str, identity: str, reason: str) -> None:
        """Remove a participant for the rest of the session."""
        _require_host(actor)
        if identity == actor.identity:
            raise InvalidRequest("cannot_remove_self", "the host cannot remove themselves")
        await self._present(room_id, identity)
        await self.store.ban(room_id, identity)
        # The ban stops new connections; whatever connection is current goes now, even
        # one that reconnected a moment before the ban (bounded: nobody gets back in).
        for _ in range(MAX_REMOVAL_ROUNDS):
            target = await self.store.get_participant(room_id, identity)
            if target is None:
                break
            payload = {"reason": reason, "by": actor.identity}
            await self.notifier.send(target.session, "removed", payload)
            gone = await self.store.remove_participant(room_id, identity, target.session)
            if gone is not None:
                await self._forget(room_id, gone, "removed")
            await self.notifier.disconnect(target)

    async def end_session(self, actor: Participant, room_id: str) -> None:
        """End the session for everyone: they are told, then disconnected."""
        _require_host(actor)
        await self._change_live(room_id, lambda s: (floor.end(s), None))
        await self._stop_recording_if_any(room_id)
        await self._timeline(room_id, "session_ended", {"by": actor.identity})
        await self.media.close_room(room_id)
        await self.notifier.broadcast(
            room_id, "session_ended", {"reason": "ended", "by": actor.identity}
        )
        for participant in await self.store.participants(room_id):
            await self.store.remove_participant(room_id, participant.identity, participant.session)
            # The host's own connection stays open so the ack reaches it; its client
            # closes on `session_ended` like everyone else's.
            if participant.session != actor.session:
                await self.notifier.disconnect(participant)

    # --- housekeeping ---------------------------------------------------------------

    async def sweep_expired_presence(self) -> int:
        """Forget participants whose node stopped heartbeating; returns how many."""
        count = 0
        at = now_ms()
        for room_id, identities in (await self.store.expired_presence(at)).items():
            for identity in identities:
                gone = await self.store.remove_expired(room_id, identity, at)
                if gone is not None:
                    count += 1
                    await self._forget(room_id, gone, "connection_lost")
        return count

    async def close_finished_media(self) -> None:
        """Release media (and recordings) of rooms this node hosts that ended or were deleted.

        Ending or deleting a session on another node cannot reach this node's
        memory; this sweep does, within a heartbeat.
        """
        for room_id in self.media.room_ids():
            live = await self.store.get_live(room_id)
            if live is None or live.status == "ended":
                await self._stop_recording_if_any(room_id)
                await self.media.close_room(room_id)

    async def refresh_local_presence(self) -> None:
        """Push forward the presence deadline of everyone connected to this process."""
        by_room: dict[str, list[str]] = {}
        for room_id, identity in self.local_sessions:
            by_room.setdefault(room_id, []).append(identity)
        await self.store.refresh_presence(by_room, now_ms() + self.presence_ttl_ms)

    # --- helpers ------------------------------------------------------------------------

    async def current_participant(self, room_id: str, identity: str, session: str) -> Participant:
        """The caller's own record, checking the connection is still the current one."""
        participant = await self.store.get_participant(room_id, identity)
        if participant is None or participant.session != session:
            raise Conflict("not_joined", "you are no longer in this session")
        return participant

    async def _present(self, room_id: str, identity: str) -> Participant:
        participant = await self.store.get_participant(room_id, identity)
        if participant is None:
            raise NotFound("participant_not_found", f"{identity!r} is not in the session")
        return participant

    async def _change_live(self, room_id: str, change: Any) -> tuple[LiveState, bool]:
        try:
            state, changed, _ = await self.store.update_live(room_id, change)
        except RoomMissing as exc:
            raise NotFound("room_not_found", f"room {room_id!r} does not exist") from exc
        if changed:
            self.media.set_floor(room_id, state.floor.identity if state.floor else None)
            await self.notifier.broadcast(room_id, "live_state", state.model_dump(mode="json"))
        return state, changed

    async def _timeline(self, room_id: str, event_type: str, data: dict[str, Any]) -> TimelineEntry:
        entry = await self.store.append_timeline(room_id, event_type, data)
        await self.notifier.broadcast(room_id, "timeline", entry.model_dump(mode="json"))
        return entry


def _require_host(actor: Participant) -> None:
    if actor.role is not Role.HOST:
        raise Forbidden("host_only", "only the host can do this")


def _who(participant: Invitee) -> dict[str, Any]:
    return {
        "identity": participant.identity,
        "name": participant.name,
        "venue": participant.venue,
        "role": participant.role.value,
    }
