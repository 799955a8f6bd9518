"""Recording real aiortc publishers through a MediaRoom, then reading the files back with PyAV.

Every participant publishes a 30 fps video whose frames carry a counter and a
tone; the recorded files are decoded and the counters read back, so a lost,
duplicated or reordered frame shows up as a jump in the sequence.
"""

from __future__ import annotations

import asyncio
import fractions
import itertools
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import av
import pytest
from aiortc.rtp import RtpPacket

from server.media import TrackInfo
from server.recording import track_recorder as track_recorder_module
from server.recording.archive_index import summarize
from server.recording.errors import ArchiveUnavailable, RecordingConflict
from server.recording.manifest_files import read_manifest
from server.recording.models import RecordingInfo
from server.recording.recovery import sha256_file
from server.recording.track_recorder import TrackRecorder
from tests.media.media_testkit import CounterVideoTrack, make_counter_frame, read_counter_frame
from tests.recording.recording_kit import (
    ROOM_ID,
    RecordingEnv,
    build_session,
    counter_jumps,
    decode_file,
    recording_env,
)


def within(value: float, expected: float, tolerance: float = 0.05) -> bool:
    """``value`` is within ``tolerance`` (relative) of ``expected``."""
    return abs(value - expected) <= tolerance * expected


async def test_record_stop_and_read_back(env: RecordingEnv) -> None:
    host = await env.join("host", amplitude=0.4)
    await env.wait(lambda: host.video is not None and host.video.sent > 15, "host publishing")
    started = time.monotonic()
    info = await env.service.start(ROOM_ID, env.harness.room, env.room, "api", env.context())
    assert info.state == "recording" and env.service.is_recording(ROOM_ID)
    assert host.video is not None and host.audio is not None
    clients = {"host": host}
    # What the publishers have sent, at the start and at the stop: the recording is
    # compared with that, not with the wall clock (a busy machine's publishers lag it).
    sent_at_start = {("host", "video"): host.video.sent, ("host", "audio"): host.audio.sent}

    await env.wait(lambda: env.recorder_frames("host", "video") >= 30, "host recorded 1 s")
    joining_at = recording_clock(env)
    clients["m1"] = await env.join("m1", amplitude=0.2)
    await env.wait(lambda: env.recorder_frames("m1", "audio") >= 1, "m1's audio recorded")
    m1_heard_at = recording_clock(env)
    await env.wait(lambda: env.recorder_frames("m1", "video") >= 30, "m1 recorded 1 s")
    await env.append_timeline(
        "floor_granted",
        {"identity": "m1", "name": "陈静怡", "venue": "shifeng", "role": "member", "by": "host"},
    )
    granted_at = time.monotonic() - started
    await env.wait(lambda: env.recorder_frames("m1", "video") >= 60, "m1 speaking 1 s")
    await env.append_timeline("agenda_advanced", {"index": 1, "title": "协商发言"})
    await env.append_timeline("floor_revoked", {"identity": "m1", "by": "host"})
    revoked_at = time.monotonic() - started
    await env.wait(lambda: env.recorder_frames("host", "video") >= 150, "5 s recorded")
    # Before stopping, let the recorder catch up with what had been sent by now (a busy
    # machine lags): what is in flight at the stop is cut off, by design.
    caught_up = {
        (identity, kind): getattr(client, kind).sent
        for identity, client in clients.items()
        for kind in ("audio", "video")
    }
    await env.wait(
        lambda: all(
            env.recorder_frames(identity, kind)
            >= 0.95 * (count - sent_at_start.get((identity, kind), 0))
            for (identity, kind), count in caught_up.items()
        ),
        "the recorder caught up",
    )
    info = await env.service.stop(ROOM_ID)
    sent_at_stop = {
        (identity, kind): getattr(client, kind).sent
        for identity, client in clients.items()
        for kind in ("audio", "video")
    }
    after_stop = time.time()

    assert info.state == "stopped" and info.complete and info.error is None
    assert [c.state for c in env.changes] == ["recording", "stopped"] and not env.errors
    manifest = read_manifest(env.root / info.id)
    assert manifest is not None and manifest.complete
    assert {(f.participant, f.kind) for f in manifest.files} == {
        ("host", "audio"),
        ("host", "video"),
        ("m1", "audio"),
        ("m1", "video"),
    }
    for entry in manifest.files:
        path = env.root / info.id / entry.name
        assert path.is_file() and not Path(str(path) + ".part").exists()
        assert entry.sha256 == sha256_file(path) and entry.size == path.stat().st_size
        decoded = decode_file(path)
        key = (entry.participant, entry.kind)
        if entry.kind == "video":
            # Every frame from the first recorded (a keyframe) to the stop, in order: the
            # counters drawn into the frames are contiguous and reach what had been sent
            # when the recorder caught up (a busy publisher's encoder lags its camera: the
            # frames still in its pipeline at the stop are cut off, by design).
            assert decoded.codec == "vp8" and entry.codec == "vp8"
            assert counter_jumps(decoded.counters) == [], entry.name
            first, last = decoded.counters[0], decoded.counters[-1]
            assert decoded.frames == last - first + 1, entry.name
            assert last >= caught_up[key] - 0.07 * decoded.frames, (entry.name, last)
            assert last < sent_at_stop[key], (entry.name, last)
            if entry.participant == "host":  # publishing before the start: recorded at once
                assert first <= sent_at_start[key] + 15, (entry.name, first)
            recorded = decoded.frames / 30
        else:
            # Audio is recorded from the first packet: the 20 ms frames sent meanwhile, all
            # of those the recorder had caught up with before the stop and no more than were
            # sent until it.
            sent_during = (sent_at_stop[key] - sent_at_start.get(key, 0)) * 0.020
            caught = (caught_up[key] - sent_at_start.get(key, 0)) * 0.020
            assert caught * 0.95 <= decoded.duration <= sent_during * 1.05, (
                entry.name,
                decoded.duration,
                caught,
                sent_during,
            )
            recorded = decoded.frames * 0.020
        assert within(decoded.duration, recorded), (entry.name, decoded.duration, recorded)
        assert within(entry.duration, recorded), (entry.name, entry.duration, recorded)
        if entry.kind == "audio":
            assert decoded.codec == "opus"
            assert within(decoded.samples, recorded * 48000), (entry.name, decoded.samples)
            assert decoded.peak > 0.05, f"{entry.name} is silent"
    host_video = next(f for f in manifest.files if f.participant == "host" and f.kind == "video")
    m1_audio = next(f for f in manifest.files if f.participant == "m1" and f.kind == "audio")
    assert host_video.start_offset < 0.5
    # m1's audio starts where it began on the recording's clock: after the join was asked
    # for, before its first frame was seen written. (Not "within 0.7 s of asking": how long
    # ICE and DTLS take is up to the machine, and a busy one takes over a second.)
    assert joining_at <= m1_audio.start_offset <= m1_heard_at, (
        joining_at,
        m1_audio.start_offset,
        m1_heard_at,
    )
    assert host_video.width == 160 and host_video.height == 120

    # Who took part, from where; the timeline between start and stop only.
    people = {p.identity: p for p in manifest.participants}
    assert people["host"].level == "provincial" and people["host"].venue_name == "湖南省政协主会场"
    assert people["m1"].level == "county" and people["m1"].name == "陈静怡"
    assert manifest.host == "host"
    types = [e.type for e in manifest.timeline]
    assert types == ["joined", "floor_granted", "agenda_advanced", "floor_revoked"]
    assert all(manifest.started_at * 1000 <= e.ts <= after_stop * 1000 for e in manifest.timeline)
    agenda = [c for c in manifest.chapters if c.kind == "agenda"]
    speakers = [c for c in manifest.chapters if c.kind == "speaker"]
    assert [c.title for c in agenda] == ["开场", "协商发言"]
    assert abs(agenda[1].start - revoked_at) < 0.3
    assert [(c.title, c.identity) for c in speakers] == [("陈静怡", "m1")]
    assert abs(speakers[0].start - granted_at) < 0.3 and abs(speakers[0].end - revoked_at) < 0.3
    assert [s.identity for s in manifest.speakers] == [None, "m1", None]

    # The archive index finds it without reading the disk.
    index = env.service.index
    for query in (
        {"query": "协商"},
        {"venue": "shifeng"},
        {"speaker": "陈静怡"},
        {"speaker": "m1"},
    ):
        found = await index.search(**query)  # type: ignore[arg-type]
        assert [s.id for s in found] == [info.id], query
    assert await index.search(query="不存在的会") == []
    assert await index.search(venue="nowhere") == []
    assert await index.search(until=manifest.started_at - 60) == []
    assert [s.id for s in await index.search(since=manifest.started_at - 60)] == [info.id]
    summary = await index.get(info.id)
    assert summary is not None and summary.state == "stopped" and summary.files == 4
    assert set(summary.speakers) == {"host", "m1"}
    assert await index.active(ROOM_ID) is None and await index.lease_holder(info.id) is None


class PausableCounterTrack(CounterVideoTrack):
    """Counter video whose RTP time follows the wall clock (like a browser's), and that can
    stop sending for a while (a camera turned off)."""

    def __init__(self, sender: int) -> None:
        super().__init__(sender)
        self.running = asyncio.Event()
        self.running.set()
        #: Set once ``recv`` waits on ``running``: no frame is in flight any more.
        self.stopped = asyncio.Event()
        self._origin: float | None = None
        #: Capture time (seconds, as sent in RTP) of each frame, by counter.
        self.times: dict[int, float] = {}

    async def recv(self) -> av.VideoFrame:
        if not self.running.is_set():
            self.stopped.set()
        await self.running.wait()
        self.stopped.clear()
        await asyncio.sleep(1 / 30)  # the camera's frame rate
        if self._origin is None:
            self._origin = time.time()
        frame = make_counter_frame(self.sender, self.sent, self.width, self.height)
        frame.pts = int((time.time() - self._origin) * 90000)
        self.times[self.sent] = frame.pts / 90000
        self.sent += 1
        frame.time_base = fractions.Fraction(1, 90000)
        return frame


async def test_camera_pause_leaves_a_gap_and_rejoining_starts_a_new_file(
    env: RecordingEnv,
) -> None:
    pausable = PausableCounterTrack(7)
    await env.join("host", camera=pausable, audio=False)
    await env.join("m1")
    # Two starts at once (a double click): one recording, one refusal.
    results = await asyncio.gather(
        env.service.start(ROOM_ID, env.harness.room, env.room, "api", env.context()),
        env.service.start(ROOM_ID, env.harness.room, env.room, "api", env.context()),
        return_exceptions=True,
    )
    (info,) = [r for r in results if isinstance(r, RecordingInfo)]
    (refused,) = [r for r in results if isinstance(r, RecordingConflict)]
    assert refused.code == "already_recording"
    await env.wait(lambda: env.recorder_frames("host", "video") >= 20, "host recorded")
    pausable.running.clear()
    # A frame may be in flight when the camera is turned off; the second off starts after it.
    await asyncio.wait_for(pausable.stopped.wait(), 10)
    await asyncio.sleep(1.0)  # the camera stays off this long: the gap being measured
    pausable.running.set()
    before = env.recorder_frames("host", "video")
    await env.wait(lambda: env.recorder_frames("host", "video") >= before + 20, "host resumed")

    # m1 leaves and comes back: a second track, a second file.
    old = env.harness.clients["m1"]
    await env.harness.room.remove_participant("m1")
    await old.close()
    await env.wait(
        lambda: all(r.finished for r in _recorders(env, "m1")), "m1's first files closed"
    )
    rejoining_at = recording_clock(env)
    await env.join("m1")
    await env.wait(lambda: len(_recorders(env, "m1")) == 4, "m1's new tracks recorded")
    await env.wait(lambda: env.recorder_frames("m1", "video") >= 1, "m1's new video begun")
    m1_seen_at = recording_clock(env)
    await env.wait(lambda: env.recorder_frames("m1", "video") >= 20, "m1's new video recorded")
    info = await env.service.stop(ROOM_ID)

    manifest = read_manifest(env.root / info.id)
    assert manifest is not None and manifest.complete
    m1_video = sorted(
        (f for f in manifest.files if f.participant == "m1" and f.kind == "video"),
        key=lambda f: f.start_offset,
    )
    assert len(m1_video) == 2 and m1_video[0].name != m1_video[1].name
    # Placed between asking to rejoin and seeing the new file's first frame (see above).
    assert rejoining_at <= m1_video[1].start_offset <= m1_seen_at
    for entry in m1_video:
        assert counter_jumps(decode_file(env.root / info.id / entry.name).counters) == []

    # The pause is a gap in time, not lost frames: every frame sits where the camera put it.
    host_video = next(f for f in manifest.files if f.participant == "host")
    times: list[float] = []
    counters: list[int] = []
    with av.open(str(env.root / info.id / host_video.name)) as container:
        for frame in container.decode(video=0):
            times.append(float(frame.time))
            counters.append(read_counter_frame(frame)[1])
    assert counter_jumps(counters) == []
    sent = [pausable.times[c] - pausable.times[counters[0]] for c in counters]
    recorded = [t - times[0] for t in times]
    assert max(abs(a - b) for a, b in zip(sent, recorded, strict=True)) < 0.003
    # The camera was off for at least a second after its last frame: the file has that gap
    # (where the camera's own capture times have it, checked above), not frames squeezed
    # together. How much longer than a second the pause lasted is up to the machine's load.
    steps = [b - a for a, b in itertools.pairwise(recorded)]
    assert max(steps) >= 1.0, max(steps)


def recording_clock(env: RecordingEnv) -> float:
    """Now, on the clock of the room's recording (file start offsets are on it)."""
    recording = env.service.recording(ROOM_ID)
    assert recording is not None
    return recording.elapsed


def _recorders(env: RecordingEnv, identity: str) -> list[TrackRecorder]:
    recording = env.service.recording(ROOM_ID)
    assert recording is not None
    return [r for r in recording.recorders.values() if r.track.participant_id == identity]


@pytest.mark.parametrize("fault", ["folder_replaced", "disk_full"])
async def test_disk_errors_fail_the_recording_but_not_the_session(
    env: RecordingEnv, fault: str
) -> None:
    viewer = env.harness.client("m2")
    await viewer.join(publish=False)
    info = await env.service.start(ROOM_ID, env.harness.room, env.room, "api", env.context())
    folder = env.root / info.id
    if fault == "folder_replaced":
        shutil.rmtree(folder)
        folder.write_text("not a folder")
    else:
        # Track ids are numbered in the room: the host's audio is 1, its video 2.
        for name in ("host-audio-1.webm", "host-video-2.webm"):
            os.symlink("/dev/full", folder / f"{name}.part")
    await env.join("host")
    await env.wait(lambda: bool(env.errors), "the recording to fail", within=10)
    failed = env.errors[0]
    assert failed.state == "failed" and not failed.complete
    expected = "NotADirectory" if fault == "folder_replaced" else "No space left"
    assert failed.error is not None and expected in failed.error, failed.error
    assert not env.service.is_recording(ROOM_ID)
    summary = await env.service.index.get(info.id)
    assert summary is not None and summary.state == "failed" and expected in (summary.error or "")

    # Forwarding goes on: the viewer keeps receiving the host, nothing records any more.
    seen = viewer.frames_from("host", "video")
    await env.wait(lambda: viewer.frames_from("host", "video") >= seen + 30, "video after failure")
    for forwarder_track in env.harness.room.tracks():
        sinks = env.harness.room.track_forwarder(forwarder_track.track_id).sinks
        assert not any(isinstance(s, TrackRecorder) for s in sinks)


async def test_unwritable_archive_folder_refuses_to_start(
    redis_client: Any, tmp_path: Path
) -> None:
    not_a_folder = tmp_path / "archive"
    not_a_folder.write_text("a file where the archive should be")
    async with recording_env(redis_client, not_a_folder / "recordings") as env:
        env.harness.room.set_pinned([])  # the media room exists, nobody has joined
        with pytest.raises(ArchiveUnavailable) as refused:
            await env.service.start(ROOM_ID, env.harness.room, env.room, "api", env.context())
        assert refused.value.code == "archive_unwritable"
        assert not env.service.is_recording(ROOM_ID)
        assert len(env.errors) == 1 and env.errors[0].state == "failed"
        summary = await env.service.index.get(env.errors[0].id)
        assert summary is not None and summary.state == "failed"


async def test_slow_archive_work_never_delays_the_writer_passes(
    redis_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One writer thread: before the archive pool, a delete stuck in rmtree took the only
    # thread every room's writer passes run on.
    async with recording_env(redis_client, tmp_path / "recordings", writer_threads=1) as env:
        old_id = "room-0-20250101-090000-abcd"
        old = build_session(env.root / old_id, 0.5, old_id)
        await env.service.index.put(summarize(old))

        entered, release = threading.Event(), threading.Event()
        real_rmtree = shutil.rmtree

        def slow_rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
            entered.set()
            release.wait(30)  # a huge folder on a slow disk
            real_rmtree(path, *args, **kwargs)

        monkeypatch.setattr(shutil, "rmtree", slow_rmtree)  # as the service calls it
        env.harness.room.set_pinned([])  # the media room exists; an empty recording still passes
        await env.service.start(ROOM_ID, env.harness.room, env.room, "api", env.context())
        recording = env.service.recording(ROOM_ID)
        assert recording is not None
        deleting = asyncio.create_task(env.service.delete(old_id))
        try:
            assert await asyncio.to_thread(entered.wait, 10), "the delete never reached rmtree"
            before = recording.passes
            async with recording.pass_done:
                await asyncio.wait_for(
                    recording.pass_done.wait_for(lambda: recording.passes >= before + 3), 10
                )
            assert not deleting.done()  # the writer passes ran while rmtree was stuck
        finally:
            release.set()
            await deleting
        assert not (env.root / old_id).exists()
        info = await env.service.stop(ROOM_ID)
        assert info.state == "stopped"


def test_on_packet_never_raises_into_the_forwarder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    track = TrackInfo(
        track_id="host-video-2",
        participant_id="host",
        kind="video",
        codec="video/VP8",
    )
    recorder = TrackRecorder(track, clock_rate=90000, directory=tmp_path, clock_start=0.0)
    packet = RtpPacket(payload_type=96, sequence_number=1, timestamp=0, ssrc=1, payload=b"\x10")
    recorder.on_packet(packet, False)
    assert len(recorder.take()) == 1

    class BrokenClock:
        @staticmethod
        def monotonic() -> float:
            raise RuntimeError("clock gone")

    monkeypatch.setattr(track_recorder_module, "time", BrokenClock)
    recorder.on_packet(packet, True)  # must not raise
    assert recorder.detached and recorder.sink_error == "RuntimeError: clock gone"
    recorder.on_packet(packet, True)  # detached: ignored
    assert recorder.take() == []


async def test_a_failing_recorder_fails_the_recording_not_the_session(
    env: RecordingEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    viewer = env.harness.client("m2")
    await viewer.join(publish=False)
    await env.join("host")
    info = await env.service.start(ROOM_ID, env.harness.room, env.room, "api", env.context())
    await env.wait(lambda: env.recorder_frames("host", "video") >= 15, "host recorded")

    class BrokenClock:
        @staticmethod
        def monotonic() -> float:
            raise RuntimeError("clock gone")

    monkeypatch.setattr(track_recorder_module, "time", BrokenClock)
    await env.wait(lambda: bool(env.errors), "the recording to fail", within=10)
    failed = env.errors[0]
    assert failed.id == info.id and failed.state == "failed" and not failed.complete
    assert failed.error is not None and "RuntimeError: clock gone" in failed.error
    assert not env.service.is_recording(ROOM_ID)

    # Forwarding goes on, and no recorder is left on any forwarder.
    seen = viewer.frames_from("host", "video")
    await env.wait(lambda: viewer.frames_from("host", "video") >= seen + 30, "video after failure")
    for forwarder_track in env.harness.room.tracks():
        sinks = env.harness.room.track_forwarder(forwarder_track.track_id).sinks
        assert not any(isinstance(s, TrackRecorder) for s in sinks)
