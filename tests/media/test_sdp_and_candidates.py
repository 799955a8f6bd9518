"""Malformed, oversized or disallowed SDP and candidates are refused cleanly."""

from __future__ import annotations

import ipaddress
import re

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from media_testkit import LOOPBACK, RoomHarness, client_configuration, loopback_config

from server.media import IceAddress, MediaError
from server.media.aiortc_internals import gather_only_on
from server.media.ice_policy import IcePolicy
from server.media.subscribe_connection import offer_id


async def _valid_offer(harness: RoomHarness, pid: str) -> str:
    client = harness.client(pid)
    with gather_only_on(LOOPBACK):
        return await client.make_publish_offer()


def _bad_offers(valid: str) -> dict[str, object]:
    m_line = valid[valid.index("m=video") :]
    return {
        "not a string": b"v=0",
        "empty": "",
        "garbage": "hello world",
        "no media": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n",
        "oversized": valid + "a=x-padding:" + "x" * (64 * 1024) + "\r\n",
        "too many m-lines": valid + m_line * 8,
        "bad payload type": re.sub(r"(m=video \d+ UDP/TLS/RTP/SAVPF) 97", r"\1 300", valid),
        "control characters": valid.replace("a=mid:1", "a=mid:1\x00"),
        "no fingerprint": "\r\n".join(
            line for line in valid.splitlines() if not line.startswith("a=fingerprint")
        ),
        "no ice credentials": "\r\n".join(
            line for line in valid.splitlines() if not line.startswith("a=ice-pwd")
        ),
        "data channel": valid + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:9\r\n",
        "unsupported codec only": valid.replace("VP8/90000", "VP9/90000").replace(
            "H264/90000", "H265/90000"
        ),
        "broken candidate": re.sub(r"a=candidate:[^\r\n]*", "a=candidate:garbage", valid, count=1),
    }


async def test_bad_publish_offers_raise_bad_sdp_and_leave_nothing(harness: RoomHarness) -> None:
    await harness.room.add_participant("mallory", can_publish=True)
    valid = await _valid_offer(harness, "mallory")
    assert re.search(r"m=video \d+ UDP/TLS/RTP/SAVPF 97 ", valid)
    for name, offer in _bad_offers(valid).items():
        with pytest.raises(MediaError) as info:
            await harness.room.publish("mallory", offer)  # type: ignore[arg-type]
        assert info.value.code == "bad_sdp", name
        assert harness.room.peer_connections() == [], f"{name} left a peer connection"
        assert harness.room.tracks() == ()
    # The same participant can then publish properly, and the room works.
    mallory = harness.clients["mallory"]
    await mallory.close()
    await mallory.publish()
    viewer = harness.client("viewer", video=False, audio=False)
    await viewer.join(publish=False)
    await harness.wait_until(
        lambda: viewer.frames_from("mallory", "video") >= 3, "media after the bad offers"
    )


async def test_bad_subscriber_answers(harness: RoomHarness) -> None:
    alice = harness.client("alice")
    await alice.join()
    # bob is registered but answers by hand.
    await harness.room.add_participant("bob", can_publish=False)
    with pytest.raises(MediaError) as info:
        await harness.room.subscriber_answer("bob", "v=0\r\n")
    assert info.value.code == "bad_sdp"
    offer = await harness.wait_for_offer("bob")
    with pytest.raises(MediaError) as info:
        await harness.room.subscriber_answer("bob", offer)  # an offer is not an answer
    assert info.value.code == "bad_sdp"
    with pytest.raises(MediaError) as info:
        await harness.room.subscriber_answer(
            "bob",
            offer.replace("a=setup:actpass", "a=setup:active").replace("sendonly", "sendrecv"),
        )
    assert info.value.code == "bad_sdp"
    # A real answer still works after the bad ones.
    bob = harness.client("bob", video=False, audio=False)
    await bob.on_subscriber_offer(offer)
    await harness.wait_until(lambda: bob.frames_from("alice", "video") >= 3, "bob's media")
    # No offer is outstanding now.
    with pytest.raises(MediaError) as info:
        await harness.room.subscriber_answer("bob", bob.sub_pc.localDescription.sdp)  # type: ignore[union-attr]
    assert info.value.code == "bad_state"


async def test_an_answer_to_a_replaced_offer_is_refused_not_applied_to_the_new_one(
    harness: RoomHarness,
) -> None:
    """bob's subscribe connection is replaced while its first offer is unanswered (a
    takeover sets a participant up twice, a quick media restart): the late answer to the
    first offer names it, is refused, and the answer to the new offer connects."""
    alice = harness.client("alice")
    await alice.join()
    await harness.room.add_participant("bob", can_publish=False)
    first = await harness.wait_for_offer("bob")
    await harness.room.remove_participant("bob")
    await harness.room.add_participant("bob", can_publish=False)
    await harness.wait_until(
        lambda: harness.offers_for("bob")[-1] != first, "a second offer for bob"
    )
    second = harness.offers_for("bob")[-1]
    assert offer_id(first) != offer_id(second)

    late = RTCPeerConnection(client_configuration())
    try:
        await late.setRemoteDescription(RTCSessionDescription(sdp=first, type="offer"))
        with gather_only_on(LOOPBACK):
            await late.setLocalDescription(await late.createAnswer())
        with pytest.raises(MediaError) as info:
            await harness.room.subscriber_answer("bob", late.localDescription.sdp, offer_id(first))
        assert info.value.code == "bad_state"
    finally:
        await late.close()
    bob = harness.client("bob", video=False, audio=False)
    await bob.on_subscriber_offer(second)
    await harness.wait_until(lambda: bob.frames_from("alice", "video") >= 3, "bob's media")


async def test_trickled_candidates_are_validated(harness: RoomHarness) -> None:
    await harness.room.add_participant("alice", can_publish=True)
    good = {
        "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    }
    await harness.room.add_remote_candidate("alice", "publish", good)  # queued before the offer
    await harness.room.add_remote_candidate(
        "alice", "publish", {**good, "candidate": "candidate:1 1 udp 1 192.0.2.1 5 typ host"}
    )  # outside the allow-list: ignored, not an error
    bad_candidates: list[object] = [
        "candidate:1 1 udp 1 127.0.0.1 5 typ host",
        {"candidate": 5, "sdpMid": "0"},
        {"candidate": "candidate:garbage", "sdpMid": "0"},
        {"candidate": "candidate:1 1 udp 1 127.0.0.1 0 typ host", "sdpMid": "0"},
        {"candidate": "candidate:1 1 udp 1 127.0.0.1 5 typ host"},
        {"candidate": "candidate:1 1 udp 1 127.0.0.1 5 typ host", "sdpMid": "a b"},
        {"candidate": "candidate:1 1 udp 1 127.0.0.1 5 typ host", "sdpMLineIndex": -1},
        {"candidate": "candidate:" + "1" * 2000, "sdpMid": "0"},
    ]
    for candidate in bad_candidates:
        with pytest.raises(MediaError) as info:
            await harness.room.add_remote_candidate("alice", "publish", candidate)
        assert info.value.code == "bad_candidate", candidate
    with pytest.raises(MediaError) as info:
        await harness.room.add_remote_candidate("alice", "sideways", good)  # type: ignore[arg-type]
    assert info.value.code == "bad_candidate"
    # End-of-candidates and a good candidate after the offer are accepted.
    alice = harness.clients.get("alice") or harness.client("alice")
    await alice.publish()
    await harness.room.add_remote_candidate("alice", "publish", {**good, "candidate": ""})


def test_ice_policy_rewrites_announced_and_filters_remote() -> None:
    config = loopback_config(ice_addresses=[IceAddress("127.0.0.1", announced="198.51.100.7")])
    policy = IcePolicy(config)
    ours = (
        "v=0\r\nc=IN IP4 127.0.0.1\r\na=candidate:abc 1 udp 2130706431 127.0.0.1 40000 typ host\r\n"
    )
    rewritten = policy.rewrite_local_sdp(ours)
    assert "127.0.0.1" not in rewritten
    assert "a=candidate:abc 1 udp 2130706431 198.51.100.7 40000 typ host" in rewritten
    assert "c=IN IP4 198.51.100.7" in rewritten
    theirs = (
        "v=0\r\n"
        "a=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\n"
        "a=candidate:2 1 udp 1 10.1.2.3 5000 typ host\r\n"
        "a=candidate:3 1 udp 1 abcd.local 5000 typ host\r\n"
    )
    filtered = policy.filter_remote_sdp(theirs)
    assert "127.0.0.1" in filtered
    assert "10.1.2.3" not in filtered
    assert ".local" not in filtered
    assert policy.rtc_configuration().iceServers == []
    # No allow-list: everything passes; no ice_addresses: aiortc's default gathering.
    open_policy = IcePolicy(loopback_config(ice_remote_allow=[], ice_addresses=[]))
    assert open_policy.filter_remote_sdp(theirs) == theirs
    assert open_policy.gather_addresses is None


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6"):
        IceAddress("localhost")
    with pytest.raises(ValueError, match="last_n"):
        loopback_config(last_n=-1)
    with pytest.raises(ValueError, match="video_codecs"):
        loopback_config(video_codecs=("AV1",))
    config = loopback_config(ice_remote_allow=[ipaddress.ip_network("127.0.0.0/8")])
    assert config.gather_addresses == ("127.0.0.1",)


def _candidate(port: int, host: str = "127.0.0.1") -> dict[str, object]:
    return {
        "candidate": f"candidate:{port} 1 udp 2130706431 {host} {port} typ host",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    }


async def test_trickled_candidates_are_capped_per_connection() -> None:
    harness = RoomHarness(loopback_config(max_remote_candidates=3))
    room = harness.room
    try:
        alice = harness.client("alice")
        await room.add_participant("alice", can_publish=True)
        # Publish connection: two queued before the offer, one after: three in all.
        await room.add_remote_candidate("alice", "publish", _candidate(50001))
        await room.add_remote_candidate("alice", "publish", _candidate(50002))
        await alice.publish()
        await room.add_remote_candidate("alice", "publish", _candidate(50003))
        # Disallowed ones are ignored, not counted; end-of-candidates is not a candidate.
        await room.add_remote_candidate("alice", "publish", _candidate(50004, "192.0.2.1"))
        await room.add_remote_candidate("alice", "publish", {**_candidate(0), "candidate": ""})
        with pytest.raises(MediaError) as info:
            await room.add_remote_candidate("alice", "publish", _candidate(50005))
        assert info.value.code == "bad_candidate"

        # Subscribe connection: its own allowance.
        bob = harness.client("bob", video=False, audio=False)
        await bob.join(publish=False)
        await harness.wait_until(lambda: bob.frames_from("alice", "video") >= 1, "bob's media")
        for port in (50011, 50012, 50013):
            await room.add_remote_candidate("bob", "subscribe", _candidate(port))
        with pytest.raises(MediaError) as info:
            await room.add_remote_candidate("bob", "subscribe", _candidate(50014))
        assert info.value.code == "bad_candidate"
        # The refused candidates changed nothing: media still flows.
        frames = bob.frames_from("alice", "video")
        await harness.wait_until(
            lambda: bob.frames_from("alice", "video") >= frames + 3, "bob's media after refusals"
        )
        # A fresh connection starts a fresh count (queued until its answer).
        assert bob.sub_pc is not None
        old_pc, bob.sub_pc = bob.sub_pc, None  # the client, too, starts a new connection
        await old_pc.close()
        await room.resubscribe("bob")
        for port in (50021, 50022, 50023):
            await room.add_remote_candidate("bob", "subscribe", _candidate(port))
        await harness.wait_until(
            lambda: bob.sub_pc is not None and bob.sub_pc.connectionState == "connected",
            "bob's new subscribe connection",
        )
        with pytest.raises(MediaError) as info:
            await room.add_remote_candidate("bob", "subscribe", _candidate(50024))
        assert info.value.code == "bad_candidate"
    finally:
        await harness.close()


def test_max_remote_candidates_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_remote_candidates"):
        loopback_config(max_remote_candidates=0)


async def test_bundled_transport_gets_the_tagged_m_lines_candidates(harness: RoomHarness) -> None:
    # A browser with the "balanced" bundle policy (Chromium's default) offers one transport
    # per m-line; BUNDLE keeps the first. aiortc alone would give the shared transport the
    # last m-line's candidates: every check from the kept transport would then be a
    # peer-reflexive stranger, and its candidate type (host, relay) unknown to the server.
    offer = await _valid_offer(harness, "alice")
    video = offer.index("m=video")
    assert "a=group:BUNDLE 0 1" in offer and "a=candidate:" in offer[:video]
    balanced = offer[:video] + re.sub(
        r"(a=candidate:\S+ \d \S+ \d+ \S+) (\d+)", r"\1 9999", offer[video:]
    )
    policy = IcePolicy(loopback_config())

    async def remote_ports(text: str) -> set[int]:
        pc = RTCPeerConnection(policy.rtc_configuration())  # max-bundle, as the server
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=text, type="offer"))
            ice = pc.getTransceivers()[0].receiver.transport.transport
            return {c.port for c in ice.getRemoteCandidates()}
        finally:
            await pc.close()

    tagged = {int(p) for p in re.findall(r"a=candidate:\S+ \d \S+ \d+ \S+ (\d+)", offer[:video])}
    assert await remote_ports(balanced) == {9999}  # what aiortc does by itself
    assert await remote_ports(policy.remote_sdp(balanced)) == tagged
    # Nothing to do without a BUNDLE group, or for an SDP already max-bundled.
    unbundled = balanced.replace("a=group:BUNDLE 0 1\r\n", "")
    assert policy.remote_sdp(unbundled) == unbundled
    assert await remote_ports(policy.remote_sdp(offer)) == tagged
