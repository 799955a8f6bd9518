"""RTP to frames to files, with packets made by aiortc's own encoders and packetizers.

Loss, reordering, sequence wrap-around, H.264 fragmentation, timestamp jumps and
a full disk are produced directly at this level, where they can be controlled.
"""

from __future__ import annotations

import fractions
import math
import os
import shutil
import struct
from pathlib import Path

import av
import pytest
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from server.recording.recovery import remux_part
from server.recording.rtp_frames import (
    EncodedFrame,
    OpusFrameAssembler,
    VideoFrameAssembler,
    vp8_dimensions,
)
from server.recording.track_file import TrackFile
from server.recording.track_recorder import TimestampMapper
from tests.media.media_testkit import make_counter_frame, read_counter_frame

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
H264 = RTCRtpCodecParameters(
    mimeType="video/H264",
    clockRate=90000,
    payloadType=97,
    parameters={"packetization-mode": "1", "profile-level-id": "42e01f"},
)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)


def video_packets(
    codec: RTCRtpCodecParameters,
    frames: int,
    *,
    keyframes: tuple[int, ...] = (0,),
    seq: int = 1000,
    timestamp: int = 12345,
    size: tuple[int, int] = (320, 240),
) -> list[RtpPacket]:
    """RTP packets of ``frames`` counter frames at 30 fps, keyframes where asked."""
    encoder = get_encoder(codec)
    packets = []
    for index in range(frames):
        frame = make_counter_frame(1, index, *size)
        frame.pts = index * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        payloads, ts = encoder.encode(frame, force_keyframe=index in keyframes)
        for position, payload in enumerate(payloads):
            packets.append(
                RtpPacket(
                    payload_type=codec.payloadType,
                    marker=int(position == len(payloads) - 1),
                    sequence_number=seq & 0xFFFF,
                    timestamp=(timestamp + ts) & 0xFFFFFFFF,
                    ssrc=4242,
                    payload=payload,
                )
            )
            seq += 1
    return packets


def opus_packets(count: int, seq: int = 5) -> list[RtpPacket]:
    encoder = get_encoder(OPUS)
    packets = []
    for index in range(count):
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        pcm = b"".join(
            struct.pack(
                "<hh", int(8000 * math.sin(2 * math.pi * 440 * (index * 960 + i) / 48000)), 0
            )
            for i in range(960)
        )
        frame.planes[0].update(pcm)
        frame.sample_rate = 48000
        frame.pts = index * 960
        frame.time_base = fractions.Fraction(1, 48000)
        payloads, ts = encoder.encode(frame)
        for payload in payloads:
            packets.append(
                RtpPacket(
                    payload_type=111,
                    sequence_number=(seq + len(packets)) & 0xFFFF,
                    timestamp=(777 + ts) & 0xFFFFFFFF,
                    ssrc=99,
                    payload=payload,
                )
            )
    return packets


def assemble(assembler: VideoFrameAssembler, packets: list[RtpPacket]) -> list[EncodedFrame]:
    frames: list[EncodedFrame] = []
    for position, packet in enumerate(packets):
        frames += assembler.push(packet, arrival=position * 0.001)
    return frames


def write_all(file: TrackFile, frames: list[EncodedFrame]) -> None:
    for index, frame in enumerate(frames):
        file.write(frame, index / 30)


def decoded_counters(codec_name: str, frames: list[EncodedFrame]) -> list[int]:
    decoder = av.CodecContext.create(codec_name, "r")
    counters = []
    for frame in frames:
        for picture in decoder.decode(av.Packet(frame.data)):
            counters.append(read_counter_frame(picture)[1])
    return counters


@pytest.mark.parametrize("codec", [VP8, H264], ids=["vp8", "h264"])
def test_frames_rebuilt_in_order_even_when_packets_are_reordered(
    codec: RTCRtpCodecParameters,
) -> None:
    packets = video_packets(codec, 30, seq=65500)  # wraps around 65535
    # Swap neighbours all along the stream (late packets, as after a NACK round trip).
    shuffled = list(packets)
    for i in range(0, len(shuffled) - 1, 3):
        shuffled[i], shuffled[i + 1] = shuffled[i + 1], shuffled[i]
    assembler = VideoFrameAssembler(codec.name)
    frames = assemble(assembler, shuffled)
    assert len(frames) == 30 and frames[0].keyframe and assembler.gaps == 0
    assert [f.timestamp for f in frames] == sorted({p.timestamp for p in packets})
    name = "vp8" if codec is VP8 else "h264"
    assert decoded_counters(name, frames) == list(range(30))
    if codec is VP8:
        assert vp8_dimensions(frames[0].data) == (320, 240)


@pytest.mark.parametrize("codec", [VP8, H264], ids=["vp8", "h264"])
def test_a_lost_packet_drops_frames_until_the_next_keyframe(codec: RTCRtpCodecParameters) -> None:
    packets = video_packets(codec, 40, keyframes=(0, 25))
    lost_frame_ts = sorted({p.timestamp for p in packets})[10]
    lost = next(p for p in packets if p.timestamp == lost_frame_ts)
    assembler = VideoFrameAssembler(codec.name)
    frames: list[EncodedFrame] = []
    waited = False
    for position, packet in enumerate(packets):
        if packet is lost:
            continue
        # Arrival times far enough apart that the hole is given up on.
        frames += assembler.push(packet, arrival=position * 0.1)
        waited = waited or (len(frames) >= 10 and assembler.needs_keyframe)
    frames += assembler.flush()
    assert assembler.gaps == 1 and waited and not assembler.needs_keyframe
    name = "vp8" if codec is VP8 else "h264"
    assert decoded_counters(name, frames) == list(range(10)) + list(range(25, 40))


def test_stream_starts_at_the_first_keyframe() -> None:
    packets = video_packets(VP8, 20, keyframes=(0, 8))
    first_key = next(
        i for i, p in enumerate(packets) if p.timestamp == packets[0].timestamp + 8 * 3000
    )
    assembler = VideoFrameAssembler("VP8")
    frames = assemble(assembler, packets[first_key - 5 :])  # joined mid-stream
    assert frames[0].keyframe and decoded_counters("vp8", frames) == list(range(8, 20))


def test_opus_duplicates_and_late_packets_are_dropped() -> None:
    packets = opus_packets(10)
    assembler = OpusFrameAssembler()
    stream = [*packets[:5], packets[3], packets[4], *packets[5:]]
    frames = [f for p in stream for f in assembler.push(p, 0.0)]
    assert [f.timestamp for f in frames] == [p.timestamp for p in packets]
    assert assembler.dropped == 2


def test_timestamp_mapper_wraps_reanchors_and_refines_the_offset() -> None:
    mapper = TimestampMapper(90000)
    start = 0xFFFFFFFF - 45000  # wraps after half a second
    # The first frame arrived late (0.3 s): the offset is refined by the next ones.
    assert mapper.map(start, 1, arrival=2.3) == 0.0
    assert mapper.map((start + 90000) & 0xFFFFFFFF, 1, arrival=3.0) == pytest.approx(1.0)
    assert mapper.offset == pytest.approx(2.0)
    # A new SSRC (the publisher reconnected) continues from its arrival time.
    assert mapper.map(500, 2, arrival=6.0) == pytest.approx(4.0)
    assert mapper.map(500 + 9000, 2, arrival=6.1) == pytest.approx(4.1)
    # A timestamp jump far from the arrival time re-anchors as well.
    assert mapper.map(500 + 9000 * 1000, 2, arrival=6.2) == pytest.approx(4.2)
    assert mapper.reanchors == 2


def test_h264_file_waits_for_parameter_sets_and_plays(tmp_path: Path) -> None:
    packets = video_packets(H264, 30)
    frames = assemble(VideoFrameAssembler("H264"), packets)
    file = TrackFile(
        tmp_path,
        "m1-video-1.mkv",
        kind="video",
        codec_name="h264",
        participant="m1",
        track_id="m1-video-1",
        start_offset=0.0,
    )
    no_sps = EncodedFrame(frames[1].data, frames[1].timestamp, 1, False, 0.0)
    assert not file.write(no_sps, 0.0) and not file.opened
    for index, frame in enumerate(frames):
        assert file.write(frame, index / 30)
    file.close()
    assert (file.width, file.height) == (320, 240)
    with av.open(str(tmp_path / "m1-video-1.mkv")) as container:
        counters = [read_counter_frame(f)[1] for f in container.decode(video=0)]
        assert counters == list(range(30))
        assert container.streams.video[0].codec_context.name == "h264"


def test_opus_file_has_the_header_browsers_need(tmp_path: Path) -> None:
    file = TrackFile(
        tmp_path,
        "a.webm",
        kind="audio",
        codec_name="opus",
        participant="m1",
        track_id="a",
        start_offset=0.0,
    )
    for index, packet in enumerate(opus_packets(50)):
        file.write(EncodedFrame(packet.payload, packet.timestamp, 99, True, 0.0), index * 0.02)
    file.close()
    with av.open(str(tmp_path / "a.webm")) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.extradata[:8] == b"OpusHead"
        assert stream.codec_context.channels == 2 and stream.rate == 48000
        assert sum(f.samples for f in container.decode(stream)) == 50 * 960
        assert float(container.duration or 0) / 1e6 == pytest.approx(1.0, abs=0.03)


def test_full_disk_raises_os_error(tmp_path: Path) -> None:
    os.symlink("/dev/full", tmp_path / "v.webm.part")
    file = TrackFile(
        tmp_path,
        "v.webm",
        kind="video",
        codec_name="vp8",
        participant="m1",
        track_id="v",
        start_offset=0.0,
    )
    frames = assemble(VideoFrameAssembler("VP8"), video_packets(VP8, 3))
    with pytest.raises(OSError, match="No space left"):
        write_all(file, frames)
    file.abandon()


def test_a_killed_writers_part_file_is_remuxed(tmp_path: Path) -> None:
    file = TrackFile(
        tmp_path,
        "v.webm",
        kind="video",
        codec_name="vp8",
        participant="m1",
        track_id="v",
        start_offset=0.0,
    )
    frames = assemble(VideoFrameAssembler("VP8"), video_packets(VP8, 100, keyframes=(0, 50)))
    for index, frame in enumerate(frames):
        file.write(frame, index / 30)
    # What a kill -9 leaves on disk is what was written so far, with no trailer.
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    shutil.copy(file.part_path, crashed / "v.webm.part")
    file.abandon()
    result = remux_part(crashed / "v.webm.part", crashed / "v.webm")
    assert not (crashed / "v.webm.part").exists()
    with av.open(str(crashed / "v.webm")) as container:
        counters = [read_counter_frame(f)[1] for f in container.decode(video=0)]
    # Clusters close every second: everything but the last open cluster is there.
    assert counters == list(range(len(counters))) and len(counters) >= 60
    assert result.packets == len(counters) and result.duration >= 2.0
