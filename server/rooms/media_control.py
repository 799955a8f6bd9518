"""Media commands: a participant's publish offer, subscriber answer, candidates, restart;
and the SFU's events back to the session.

Negotiation takes longer than any other command (the server gathers its
candidates before answering), so the actor runs these outside its one-at-a-time
order, one at a time per participant, after checking the caller is current.
"""

from __future__ import annotations

from server.media import (
    ActiveSpeaker,
    MediaEvent,
    ParticipantMediaState,
    PublisherHint,
    SubscriberOffer,
    VideoQuality,
)
from server.media.subscribe_connection import offer_id
from server.rooms import acks, payloads, reconnection
from server.rooms.errors import Forbidden, NotFound
from server.rooms.models import Participant, Role
from server.rooms.owned_room import MediaRecovering, OwnedRoom
from server.rooms.room_media import subscriber_tracks
from server.rooms.server_events import (
    ActiveSpeakerChanged,
    MediaConnectionState,
    ReconnectMedia,
    SubscriberOfferEvent,
    TrackRef,
    VideoQualityChanged,
)
from server.rooms.server_events import PublisherHint as PublisherHintEvent
from server.rooms.stage import may_publish


async def publish_offer(
    room: OwnedRoom, actor: Participant, req: payloads.PublishOffer
) -> acks.Ack:
    """Answer the participant's publish offer (camera and microphone)."""
    if actor.role is Role.OBSERVER:
        raise Forbidden("publish_forbidden", "observers receive only")
    holds_floor = room.live.floor is not None and room.live.floor.identity == actor.identity
    if not may_publish(actor.role, holds_floor):
        raise Forbidden("floor_required", "a guest publishes only while holding the floor")
    answer = await room.media.publish(actor.identity, actor.session, req.sdp, req.low_video)
    return acks.ok(sdp=answer)


async def video_view(room: OwnedRoom, actor: Participant, req: payloads.VideoView) -> acks.Ack:
    """The participant's layout: whom it pinned large, whether its tiles are shown."""
    room.media.set_view(actor.identity, actor.session, req.pinned, req.tiles_visible)
    return acks.ok()


async def subscriber_answer(
    room: OwnedRoom, actor: Participant, req: payloads.SubscriberAnswer
) -> acks.Ack:
    """Apply the participant's answer to the server's subscriber offer."""
    await room.media.subscriber_answer(actor.identity, actor.session, req.sdp, req.offer_id)
    return acks.ok()


async def ice_candidate(
    room: OwnedRoom, actor: Participant, req: payloads.IceCandidate
) -> acks.Ack:
    """Add a candidate the client trickled for one of its connections."""
    candidate = req.candidate.model_dump(exclude_none=True)
    await room.media.add_candidate(actor.identity, actor.session, req.pc, candidate)
    return acks.ok()


async def media_restart(room: OwnedRoom, actor: Participant, _: payloads.MediaRestart) -> acks.Ack:
    """The client rebuilds both connections (after network trouble): the room sees it
    reconnecting until it is back; its publish connection is dropped (a new client
    connection cannot take over the one the server holds: aiortc does no ICE restart), so
    its next publish offer makes a fresh one; it gets a fresh subscribe connection."""
    media = room.media.media_room
    # It publishes if it has a publish connection, or had one that failed (released since).
    publishes = room.media_waits_for_publish.get(actor.identity, False)
    has_publish = (
        media is not None
        and actor.identity in media.participant_ids
        and media.connection_states(actor.identity)["publish"] != "none"
    )
    if media is not None and has_publish:
        publishes = True
        await media.reset_publish(actor.identity)
    room.post(MediaRecovering(actor.identity, actor.session, publishes))
    await room.media.restart(actor.identity, actor.session)
    return acks.ok()


async def ask_to_reconnect(room: OwnedRoom, identity: str) -> acks.Ack:
    """The control room asks a participant's client to rebuild its peer connections
    (`reconnect_media`; the client then sends `media_restart` and publishes again)."""
    participant = room.present(identity)
    media = room.media.media_room
    if media is not None and identity in media.participant_ids:
        # A new client connection cannot take over the one the server holds (aiortc does
        # no ICE restart): drop it, so the client's next publish offer makes a fresh one.
        if media.connection_states(identity)["publish"] != "none":
            room.media_waits_for_publish[identity] = True
        await media.reset_publish(identity)
    await room.send(participant, "reconnect_media", ReconnectMedia(by="control"))
    return acks.ok()


async def set_venue_quality(room: OwnedRoom, venue: str, cap: payloads.VenueQuality) -> acks.Ack:
    """The control room caps what a venue receives and sends (a lifted `cap` uncaps it):
    its participants now and later, until lifted or the session's media ends here. Each
    capped receiver is told by its `video_quality` notice (`capped`), a capped camera
    by `publisher_hint`."""
    room.require_open()
    if room.room.venue(venue) is None:
        raise NotFound("venue_not_found", f"no venue {venue[:64]!r} in this session")
    applied = room.media.set_venue_quality(venue, cap)
    return acks.ok(venue=venue, quality=cap.model_dump(), participants=applied)


async def media_event(room: OwnedRoom, event: MediaEvent) -> None:
    """Pass an SFU event to the session: offers to their participant, the rest to everyone."""
    if isinstance(event, SubscriberOffer):
        session = room.media.session_of(event.participant_id)
        participant = room.participants.get(event.participant_id)
        # An offer for a connection that was replaced meanwhile is void.
        if participant is not None and participant.session == session:
            tracks = [TrackRef(**t) for t in subscriber_tracks(event.sdp)]
            offer = SubscriberOfferEvent(sdp=event.sdp, tracks=tracks, offer_id=offer_id(event.sdp))
            await room.send(participant, "subscriber_offer", offer)
    elif isinstance(event, ActiveSpeaker):
        await room.broadcast("active_speaker", ActiveSpeakerChanged(identity=event.participant_id))
    elif isinstance(event, VideoQuality):
        participant = room.participants.get(event.participant_id)
        if participant is not None and event.level in ("full", "reduced", "audio_only"):
            quality = VideoQualityChanged(
                level=event.level,  # type: ignore[arg-type]
                paused=event.paused,
                capped=event.capped,
            )
            await room.send(participant, "video_quality", quality)
    elif isinstance(event, PublisherHint):
        participant = room.participants.get(event.participant_id)
        if participant is not None:
            hint = PublisherHintEvent(max_bitrate=event.max_bitrate)
            await room.send(participant, "publisher_hint", hint)
    elif isinstance(event, ParticipantMediaState):
        await reconnection.media_state(room, event)
        state = MediaConnectionState(
            identity=event.participant_id, connection=event.connection, state=event.state
        )
        await room.broadcast("media_connection", state)
