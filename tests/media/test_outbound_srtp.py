"""The server's own outbound SRTP (AEAD AES-GCM) protects RTP as libsrtp would, and a
subscriber decrypts everything it sends (server/media/outbound_srtp.py)."""

from __future__ import annotations

import hashlib
import inspect
import os
import random
import struct

import pylibsrtp
import pytest
from aiortc import rtcdtlstransport
from aiortc.rtcdtlstransport import RTCDtlsTransport
from media_testkit import RoomHarness, require_compiled
from pylibsrtp import Policy, Session

from server.media import outbound_srtp

GCM = {
    "AES-128-GCM": (Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16),
    "AES-256-GCM": (Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 32),
}


@pytest.fixture(autouse=True)
def compiled() -> None:
    require_compiled("the outbound SRTP", outbound_srtp.IMPORT_ERROR)


def sessions(profile: str, seed: int) -> tuple[Session, outbound_srtp.OutboundSrtpSession, Session]:
    """libsrtp's sender, ours and a receiver (libsrtp, as a subscriber's) for one key."""
    libsrtp_profile, key_length = GCM[profile]
    rng = random.Random(seed)
    key, salt = rng.randbytes(key_length), rng.randbytes(12)

    def policy(ssrc_type: int) -> Policy:
        p = Policy(key=key + salt, ssrc_type=ssrc_type, srtp_profile=libsrtp_profile)
        p.allow_repeat_tx = True  # aiortc's policies
        p.window_size = 1024
        return p

    reference = Session(policy(Policy.SSRC_ANY_OUTBOUND))
    rtcp = Session(policy(Policy.SSRC_ANY_OUTBOUND))
    ours = outbound_srtp.OutboundSrtpSession(key, salt, rtcp=rtcp)
    receiver = Session(policy(Policy.SSRC_ANY_INBOUND))
    return reference, ours, receiver


def rtp(seq: int, ssrc: int, payload: bytes, *, extension: bool = True, csrcs: int = 0) -> bytes:
    first = 0x80 | (0x10 if extension else 0) | csrcs
    header = struct.pack("!BBHII", first, 96, seq & 0xFFFF, 90_000, ssrc)
    header += b"".join(struct.pack("!I", 7 + i) for i in range(csrcs))
    if extension:  # one-byte form, abs-send-time
        header += struct.pack("!HH", 0xBEDE, 1) + bytes([0x22, 1, 2, 3])
    return header + payload


def outcome(protect: object, packet: bytes) -> bytes | str:
    try:
        return protect(packet)  # type: ignore[operator,no-any-return]
    except (pylibsrtp.Error, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.mark.parametrize("profile", sorted(GCM))
def test_every_packet_is_what_libsrtp_sends_and_a_subscriber_decrypts_it(profile: str) -> None:
    """A random walk of three streams: in order, late, repeated (NACK), jumps ahead, and far
    behind (refused as libsrtp refuses it), across sequence number wraps (rollover counter)."""
    reference, ours, receiver = sessions(profile, seed=len(profile))
    rng = random.Random(7)
    first_seq = {ssrc: rng.randrange(65536) for ssrc in (1, 0x8000_0000, 0xFFFF_FFFF)}
    next_seq = dict(first_seq)
    refused = repeated = 0
    for _ in range(30_000):
        ssrc = rng.choice(list(next_seq))
        step = rng.random()
        seq = next_seq[ssrc]
        if step < 0.90:
            next_seq[ssrc] = seq + 1
        elif step < 0.95:
            seq -= rng.randrange(1, 40)  # late, or sent again
        elif step < 0.98:
            next_seq[ssrc] = seq = seq + rng.randrange(1, 3000)
        else:
            seq -= rng.randrange(1100, 3000)  # behind the 1024-packet window
        packet = rtp(
            seq,
            ssrc,
            rng.randbytes(rng.randrange(0, 1200)),
            extension=rng.random() < 0.8,
            csrcs=rng.choice((0, 0, 2)),
        )
        expected = outcome(reference.protect, packet)
        assert outcome(ours.protect, packet) == expected
        if isinstance(expected, str):
            refused += 1
            continue
        try:
            assert receiver.unprotect(expected) == packet
        except pylibsrtp.Error:
            repeated += 1  # the receiver's replay check: a copy it has already had
    assert ours.streams == 3
    # The walk went where it had to.
    assert all(next_seq[s] >> 16 >= 3 + (first_seq[s] >> 16) for s in next_seq)  # 3 wraps each
    assert refused >= 100 and repeated >= 100


def test_the_parts_and_the_fast_path_protect_as_the_whole_packet() -> None:
    """protect_parts (the Python forwarding path) and the compiled fan-out's C function
    give the same bytes as protect, and advance the same stream."""
    reference, ours, _ = sessions("AES-128-GCM", seed=3)
    protector = outbound_srtp.OutboundSrtpProtector(ours)
    for seq in range(65530, 65540):
        packet = rtp(seq, 42, os.urandom(300))
        header, payload = packet[:20], packet[20:]
        assert protector.protect(header, payload) == reference.protect(packet)
    path = protector.fast_path()
    assert path["session"] is ours and path["max_length"] == 1500 - 144
    assert isinstance(path["protect"], int) and isinstance(path["srtp"], int)


def test_bad_input_is_refused_as_libsrtp_refuses_it() -> None:
    reference, ours, _ = sessions("AES-128-GCM", seed=5)
    for packet in (
        b"\x80" * 11,  # shorter than a header
        struct.pack("!BBHII", 0x90, 96, 3, 0, 5) + b"\0\0",  # extension cut short
        struct.pack("!BBHII", 0x90, 96, 3, 0, 5) + struct.pack("!HH", 0xBEDE, 9),  # its length
        struct.pack("!BBHII", 0x83, 96, 3, 0, 5) + b"\0" * 8,  # CSRCs cut short
        rtp(1, 5, b""),  # empty payload: protected (the tag alone)
        rtp(2, 5, os.urandom(1500 - 144 - 20 + 1)),  # too long for the buffer
    ):
        assert outcome(ours.protect, packet) == outcome(reference.protect, packet)
    with pytest.raises(TypeError):
        ours.protect(bytearray(rtp(3, 5, b"x")))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="master key"):
        outbound_srtp.OutboundSrtpSession(b"k" * 24, b"s" * 12, rtcp=reference)
    with pytest.raises(ValueError, match="salt"):
        outbound_srtp.OutboundSrtpSession(b"k" * 16, b"s" * 14, rtcp=reference)
    with pytest.raises(RuntimeError, match="already"):  # never re-keyed in its life
        ours.__init__(b"k" * 16, b"s" * 12, rtcp=reference)  # type: ignore[misc]
    unkeyed = outbound_srtp.OutboundSrtpSession.__new__(outbound_srtp.OutboundSrtpSession)
    with pytest.raises(RuntimeError, match="not initialised"):
        unkeyed.protect(rtp(4, 5, b"x"))


def test_a_transport_protects_a_bounded_number_of_streams() -> None:
    _, ours, _ = sessions("AES-256-GCM", seed=9)
    limit = outbound_srtp.MAX_STREAMS
    for ssrc in range(limit):
        ours.protect(rtp(1, ssrc, b"x"))
    with pytest.raises(pylibsrtp.Error):
        ours.protect(rtp(1, limit, b"x"))
    assert ours.streams == limit
    ours.protect(rtp(2, 0, b"x"))  # the known ones still go


def test_rtcp_stays_with_libsrtp() -> None:
    reference, ours, _ = sessions("AES-128-GCM", seed=11)
    report = bytes([0x80, 200, 0, 6]) + struct.pack("!I", 77) + bytes(20)
    assert len(ours.protect_rtcp(report)) == len(reference.protect_rtcp(report))


@pytest.mark.parametrize(("name", "digest"), sorted(outbound_srtp.PORTED_SOURCES.items()))
def test_the_aiortc_code_it_relies_on_is_unchanged(name: str, digest: str) -> None:
    method = getattr(RTCDtlsTransport, name.split(".")[1])
    assert hashlib.sha256(inspect.getsource(method).encode()).hexdigest() == digest, (
        f"aiortc changed {name}: compare it with server/media/outbound_srtp.py "
        "(_transmit_key, OutboundSrtpSession), then update the digest"
    )


# --- end to end: a room's subscribe transports --------------------------------------------


def subscribe_sessions(harness: RoomHarness) -> list[object]:
    return [
        sender.transport._tx_srtp
        for participant in harness.room._participants.values()
        for sender in participant.subscribe.senders
    ]


async def media_both_ways(harness: RoomHarness) -> None:
    alice, bob = harness.client("alice"), harness.client("bob")
    await alice.join()
    await bob.join()
    await harness.wait_until(
        lambda: all(
            c.frames_from(o, kind) >= 10
            for c, o in ((alice, "bob"), (bob, "alice"))
            for kind in ("audio", "video")
        ),
        "both clients to decode each other's audio and video",
    )


async def test_subscribers_decode_what_the_server_protects_itself(
    fanout_path: str, harness: RoomHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over real DTLS (aiortc picks AES-256-GCM), each subscribe transport's RTP goes through
    the server's own protector, from the compiled fan-out or the Python path, and the
    clients (libsrtp) decrypt and decode it."""
    monkeypatch.setattr(outbound_srtp, "enabled", True)
    await media_both_ways(harness)
    used = subscribe_sessions(harness)
    assert used and all(isinstance(s, outbound_srtp.OutboundSrtpSession) for s in used)
    # Each transport protected its audio and video streams (and no more).
    assert {s.streams for s in used} == {2}  # type: ignore[attr-defined]
    senders = [s for p in harness.room._participants.values() for s in p.subscribe.senders]
    if fanout_path == "compiled":
        assert all(s.fast_stream is not None and s.fast_stream.fast_sent > 0 for s in senders)


async def test_libsrtp_protects_when_switched_off_or_not_gcm(
    harness: RoomHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With AES-CM negotiated (a peer without GCM) the server keeps libsrtp, and media flows."""
    monkeypatch.setattr(outbound_srtp, "enabled", True)
    aes_cm_only = [rtcdtlstransport.SRTP_AES128_CM_SHA1_80]
    monkeypatch.setattr(rtcdtlstransport, "SRTP_PROFILES", aes_cm_only)
    await media_both_ways(harness)
    used = subscribe_sessions(harness)
    assert used and all(type(s) is Session for s in used)


async def test_a_transport_already_keyed_is_never_switched(
    harness: RoomHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libsrtp may have protected RTP with a connected transport's keys: switching then could
    send two packets under one nonce, so install() leaves such a transport alone."""
    monkeypatch.setattr(outbound_srtp, "enabled", False)
    await media_both_ways(harness)
    monkeypatch.setattr(outbound_srtp, "enabled", True)
    pcs = [p.subscribe._pc for p in harness.room._participants.values()]
    assert all(pc is not None for pc in pcs)
    assert sum(outbound_srtp.install(pc) for pc in pcs) == 0  # type: ignore[arg-type]
    assert all(type(s) is Session for s in subscribe_sessions(harness))
