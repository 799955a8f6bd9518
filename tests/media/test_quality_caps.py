"""The control room's caps on a receiver's level and a publisher's bitrate, without a network.

A receiver's level is the lower of its link's and the cap: the adaptive level
keeps moving underneath and can make it lower, never higher. A publisher's
hinted bitrate cap is the lower of its uplink's and the operator's.
"""

from __future__ import annotations

from media_testkit import loopback_config

from server.media.ice_policy import IcePolicy
from server.media.publish_connection import PublishConnection
from server.media.quality_tiers import AUDIO_ONLY, FULL, REDUCED, TierThresholds
from server.media.subscribe_connection import SubscribeConnection


def _receiver(notices: list[tuple[str, int, bool]]) -> SubscribeConnection:
    # No hold between steps: each lossy report steps the link down at once.
    config = loopback_config(tiers=TierThresholds(hold=0.0))
    return SubscribeConnection(
        participant_id="county",
        config=config,
        policy=IcePolicy(config),
        emit_offer=lambda sdp: None,
        on_state=lambda state: None,
        on_quality=lambda level, paused, capped: notices.append((level, paused, capped)),
    )


def test_the_cap_bounds_the_level_and_the_link_can_still_go_lower() -> None:
    notices: list[tuple[str, int, bool]] = []
    receiver = _receiver(notices)
    assert receiver.quality_level == "full"

    receiver.set_level_cap(REDUCED)
    assert (receiver.quality_level, receiver.level_cap) == ("reduced", "reduced")
    assert notices[-1] == ("reduced", 0, True)

    # The link itself weakens (what each receiver report calls): its level goes down
    # under the cap, then below it.
    receiver._on_report(0.5, 0.0)
    assert receiver.quality_level == "reduced"
    receiver._on_report(0.5, 0.0)
    assert receiver.quality_level == "audio_only"
    assert notices[-1] == ("audio_only", 0, False)  # the link sets it now, not the cap

    # Capped at audio only, then lifted: the link's own level shows again.
    receiver.set_level_cap(AUDIO_ONLY)
    assert receiver.quality_level == "audio_only"
    receiver.set_level_cap(FULL)
    assert (receiver.quality_level, receiver.level_cap) == ("audio_only", "full")


def test_lifting_the_cap_restores_a_clean_links_level() -> None:
    notices: list[tuple[str, int, bool]] = []
    receiver = _receiver(notices)
    receiver.set_level_cap(AUDIO_ONLY)
    receiver._on_report(0.0, 0.0)  # a clean link does not lift a cap
    assert receiver.quality_level == "audio_only"
    receiver.set_level_cap(FULL)
    assert receiver.quality_level == "full"
    assert notices == [("audio_only", 0, True), ("full", 0, False)]


def test_the_operators_bitrate_cap_is_the_lower_of_the_two() -> None:
    config = loopback_config()
    publisher = PublishConnection(
        participant_id="county",
        config=config,
        policy=IcePolicy(config),
        can_publish=True,
        new_track_id=lambda kind: kind,
        on_tracks_changed=lambda: None,
        on_state=lambda state: None,
        audio_level_meter=None,
    )
    assert publisher.uplink_cap is None
    assert publisher.set_operator_cap(300_000) is True
    assert (publisher.uplink_cap, publisher.operator_cap) == (300_000, 300_000)
    assert publisher.set_operator_cap(300_000) is False  # no change: no new hint
    assert publisher.set_operator_cap(None) is True
    assert publisher.uplink_cap is None
