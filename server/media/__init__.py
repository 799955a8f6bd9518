"""Yitang's media layer: an SFU on aiortc that forwards encoded RTP, never transcoding.

Public API (everything else in this package is internal)::

    config = MediaConfig(
        ice_addresses=[IceAddress(local="10.0.0.5", announced="203.0.113.7")],
        ice_remote_allow=[ipaddress.ip_network("0.0.0.0/0")],
        last_n=None,
    )
    node = MediaNode(config)                      # one per process
    room = node.room("room-id", on_event=cb)      # get-or-create; cb(event) may be async
    await room.add_participant("alice", can_publish=True)
    answer_sdp = await room.publish("alice", offer_sdp)
    await room.subscriber_answer("alice", answer_sdp)   # reply to a SubscriberOffer event
    await room.add_remote_candidate("alice", "publish", {"candidate": "...", "sdpMid": "0"})
    room.set_pinned({"host", "speaker"}); room.last_n = 4
    await room.resubscribe("alice")               # fresh subscribe connection after a failure
    await room.remove_participant("alice")
    if room.empty: await room.close()             # leaves node.rooms at once, no task left
    await node.close()

Flows the signaling layer implements:

* Publish (client offers): client creates a send-only peer connection with its
  camera/mic, sends the offer; reply with ``await room.publish(pid, offer)``.
  Renegotiation and recovery after failure use the same call. Observers
  (``can_publish=False``) get ``MediaError("not_allowed")`` for any offer that
  sends media.
* Subscribe (server offers): when the room has tracks for a participant, the
  ``on_event`` callback receives ``SubscriberOffer(pid, sdp)``; deliver it, and
  pass the client's answer to ``room.subscriber_answer``. A new offer comes
  when tracks are added or removed, never before the previous one was
  answered nor within ``subscriber_offer_interval`` of it (changes meanwhile
  are folded into one offer: a burst of joins costs a few). The msid of each
  m-line is ``<publisher id> <track id>``; ``TracksChanged`` lists the tracks
  (``TrackInfo``).
* Candidates: our candidates are in our SDP (aiortc gathers before answering,
  no trickle from the server). Client candidates may be trickled, at most
  ``max_remote_candidates`` per connection.
* Events: ``SubscriberOffer``, ``TracksChanged``, ``ActiveSpeaker``,
  ``ParticipantMediaState`` (per connection: connecting/connected/failed/closed;
  failed/closed connections are released), ``AudioLevels`` (if configured),
  ``VideoQuality`` (one receiver's link level changed: tell that participant),
  ``PublisherHint`` (cap a lossy publisher's high encoding).
  When more than ``max_pending_events`` are undelivered, new events are dropped,
  except ``SubscriberOffer``, which is never dropped (at most one per
  participant is pending; a newer one replaces it).
* Room life cycle: ``node.room(id)`` is get-or-create, also for the id of a
  closed room (a new, empty room); ``node.get_room(id)`` never creates. Rooms
  are never closed implicitly: when ``room.empty``, the owner closes it.
* Errors a client can cause raise :class:`MediaError` with ``code`` and a
  user-safe ``message``; state is unchanged when they do.

A recorder attaches to ``room.track_forwarder(track_id)`` as a
:class:`PacketSink` (see ``track_forwarder.py``); a sink that raises is
detached (and told the track ended), without disturbing anyone else.

Constraints and limits worth knowing:

* Participant ids are 1-64 characters of ``A-Z a-z 0-9 _ . - ~`` (they are the
  msid stream id in SDP).
* Client offers: audio/video m-lines only (no data channel on the publish
  connection), BUNDLE and rtcp-mux required, at most ``max_m_lines`` m-lines
  and ``max_sdp_bytes`` bytes. Video is VP8 (or H.264 constrained-baseline /
  baseline, packetization-mode 1, when the client offers no VP8 or the
  configuration prefers it); audio is Opus.
* Removed tracks leave an ``inactive`` m-line in the subscriber's SDP (aiortc
  can neither reject nor recycle m-lines); ``resubscribe()`` starts clean.
* Quality per receiver: a publisher may send its camera twice (``room.publish(pid,
  offer, low_video={low_mid: high_mid})``); each receiver gets the high encoding
  for its spotlight (``room.set_spotlight``, or whom it pinned: ``room.set_view``)
  and the low one for tiles, switched at keyframes without renegotiation, and
  steps down (spotlight low, then audio only) when its RTCP reports show a weak
  link (``VideoQuality`` events; see ``quality_tiers.py``). A publisher sending one
  encoding is sent in it to everyone. No simulcast (aiortc cannot receive it).
* aiortc-based clients must use ``RTCBundlePolicy.MAX_BUNDLE``: with aiortc's
  default policy an offer carrying two video tracks leaves one of them on a
  transport that BUNDLE discards (an aiortc client bug; browsers are fine).
"""

from .config import ActiveSpeakerConfig, IceAddress, MediaConfig
from .errors import MediaError
from .events import (
    ActiveSpeaker,
    AudioLevels,
    MediaEvent,
    ParticipantMediaState,
    PublisherHint,
    SubscriberOffer,
    TrackInfo,
    TracksChanged,
    VideoQuality,
)
from .node import MediaNode
from .room import MediaRoom, ReceiverLink, RoomStats
from .track_forwarder import PacketSink, TrackForwarder

__all__ = [
    "ActiveSpeaker",
    "ActiveSpeakerConfig",
    "AudioLevels",
    "IceAddress",
    "MediaConfig",
    "MediaError",
    "MediaEvent",
    "MediaNode",
    "MediaRoom",
    "PacketSink",
    "ParticipantMediaState",
    "PublisherHint",
    "ReceiverLink",
    "RoomStats",
    "SubscriberOffer",
    "TrackForwarder",
    "TrackInfo",
    "TracksChanged",
    "VideoQuality",
]
