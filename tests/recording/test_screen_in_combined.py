"""A shared screen appears in the combined video: full frame, the speaker's camera in a corner.

A recording folder made without a server (recording_kit.build_session: the host
and m1 with counter cameras, m1 at the floor in the middle third) gets a third
video track, m1's screen (its own counter), and the timeline entries the room
writes when m1 starts and stops sharing it. The rendered MP4 is decoded and
read back: who fills the frame, and who is in the corner, at moments before,
during and after the share.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from server.recording.compositor import RenderOptions, pip_rect, render_recording
from server.recording.manifest_files import write_manifest
from server.recording.models import FileEntry
from server.rooms.models import TimelineEntry
from tests.media.media_testkit import make_counter_frame, read_counter_frame
from tests.recording.recording_kit import build_session, shown_counter

SECONDS = 6.0
SCREEN_SENDER = 7
CAMERA_SIZE = (160, 120)


def _write_screen(path: Path, seconds: float) -> None:
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libvpx", rate=30)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for n in range(int(seconds * 30)):
            frame = make_counter_frame(SCREEN_SENDER, n, 320, 240)
            frame.pts = n
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _entry(at: float, kind: str, data: dict[str, object]) -> TimelineEntry:
    ms = int(at * 1000)
    return TimelineEntry(id=f"{ms}-1", ts=ms, type=kind, data=data)


def _frames_at(path: Path, times: list[float]) -> dict[float, av.VideoFrame]:
    wanted = sorted(times)
    found: dict[float, av.VideoFrame] = {}
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            t = float(frame.pts * frame.time_base)
            while wanted and t >= wanted[0]:
                found[wanted.pop(0)] = frame
            if not wanted:
                break
    return found


def _corner(frame: av.VideoFrame, width: int, height: int) -> tuple[int, int]:
    w, h, x, y = pip_rect(*CAMERA_SIZE, width, height)
    rgb = frame.to_ndarray(format="rgb24")
    crop = np.ascontiguousarray(rgb[y : y + h, x : x + w])
    return read_counter_frame(av.VideoFrame.from_ndarray(crop, format="rgb24"))


def test_the_shared_screen_fills_the_frame_with_the_speaker_in_the_corner(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "rec"
    manifest = build_session(folder, SECONDS, "rec-screen")
    # m1 holds the floor from 2 s to 4 s; it shares its screen from 2.5 s to 3.5 s.
    _write_screen(folder / "m1-video-9.webm", 1.0)
    screen = FileEntry(
        name="m1-video-9.webm",
        participant="m1",
        kind="video",
        codec="vp8",
        track_id="m1-screen",
        start_offset=2.5,
        duration=1.0,
        size=(folder / "m1-video-9.webm").stat().st_size,
    )
    start = manifest.started_at
    timeline = sorted(
        [
            *manifest.timeline,
            _entry(start + 2.5, "screen_share_started", {"identity": "m1", "track": "m1-screen"}),
            _entry(start + 3.5, "screen_share_stopped", {"identity": "m1"}),
        ],
        key=lambda e: e.ts,
    )
    write_manifest(
        folder,
        manifest.model_copy(update={"files": [*manifest.files, screen], "timeline": timeline}),
    )
    options = RenderOptions(width=640, height=360, fps=25)
    rendered = render_recording(folder, options)
    assert rendered.combined is not None
    frames = _frames_at(folder / rendered.combined.name, [1.0, 2.2, 3.0, 3.8])

    assert shown_counter(frames[1.0])[0] == 1, "the host before anyone speaks"
    assert shown_counter(frames[2.2])[0] == 2, "m1's camera while m1 speaks"
    assert shown_counter(frames[3.0])[0] == SCREEN_SENDER, "m1's screen fills the frame"
    assert _corner(frames[3.0], options.width, options.height)[0] == 2, "m1's camera in the corner"
    assert shown_counter(frames[3.8])[0] == 2, "m1's camera again once the share stopped"
