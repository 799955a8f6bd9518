"""The combined video: speaker view following the floor, every venue's audio mixed, chapters.

Input is a finished recording folder (manifest plus per-track files); output is
``combined.mp4`` (H.264 + AAC, ``faststart``) with MP4 chapters, and the
manifest's ``combined`` entry. It runs in the render worker, never in the
process that forwards media.

Who is on screen at time t comes from the manifest's speaker segments (the
floor holder; the host while nobody holds the floor). Their latest decoded
frame is scaled into the frame, with a caption (name, venue, level); without
a recent frame (camera off, no video track) a slate with their name is shown.
Every video source is decoded in step with the output (see VideoSource).
While a screen is shared (the timeline's `screen_share_started` names the
track), the screen fills the frame and the person on screen's camera goes to
the top-right corner (`pip_rect`), captioned as usual.
Audio: every audio file is decoded, placed at its start offset and summed.

A recording resumed on another node has several parts on one clock, with
gaps between them (``Manifest.gaps``): every file is placed at its own start
offset, so what follows a gap stays in place, and in the gap itself there is
no frame and no sample: the slate is shown, over silence. The video lasts the
whole recording (``Manifest.duration``), gaps included.
"""

from __future__ import annotations

import fractions
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from av.audio.resampler import AudioResampler

from .captions import CaptionPainter, Overlay, Person, blend, find_cjk_font
from .chapters import ScreenSegment, flat_chapters, screen_segments
from .manifest_files import read_manifest, write_manifest
from .models import COMBINED_NAME, CombinedFile, Manifest
from .recovery import sha256_file

logger = logging.getLogger(__name__)

Plane = npt.NDArray[np.uint8]
ProgressCallback = Callable[[float], None]

#: A frame older than this (seconds) counts as "no video" (camera off): the slate is shown.
STALE_VIDEO = 1.5
AUDIO_RATE = 48000
AAC_FRAME = 1024


class RenderCancelled(Exception):
    """The job was asked to stop."""


@dataclass(frozen=True)
class RenderOptions:
    """Output format of the combined video."""

    width: int = 1280
    height: int = 720
    fps: int = 25
    crf: int = 23
    preset: str = "veryfast"
    audio_bitrate: int = 128_000

    def __post_init__(self) -> None:
        if self.width % 2 or self.height % 2 or self.width < 64 or self.height < 64:
            raise ValueError("output size must be even and at least 64x64")
        if not 1 <= self.fps <= 60:
            raise ValueError("fps must be 1-60")


class VideoSource:
    """One per-track video file, decoded in step with the output, on the recording's clock.

    Every source is decoded all along, shown or not: WebRTC senders make keyframes
    only when asked, so a source that comes on screen could otherwise need decoding
    from a keyframe minutes back. Four 640x480 VP8 decoders cost far less than the
    H.264 encoder.
    """

    def __init__(self, path: Path, start_offset: float, duration: float) -> None:
        self.path = path
        self.start = start_offset
        self.end = start_offset + duration
        self._container: Any = None
        self._frames: Any = None
        self._current: av.VideoFrame | None = None
        self._current_time = -math.inf
        self._next: av.VideoFrame | None = None
        self._next_time = -math.inf
        self._exhausted = False
        self.decoded = 0

    def close(self) -> None:
        """Release the decoder and the file."""
        if self._container is not None:
            self._container.close()
            self._container = None
        self._exhausted = True

    def advance(self, t: float) -> None:
        """Decode up to time ``t`` (the latest frame at or before ``t`` becomes current)."""
        if self._exhausted or t < self.start:
            return
        if self._container is None:
            self._container = av.open(str(self.path))
            stream = self._container.streams.video[0]
            stream.thread_type = "AUTO"
            self._frames = self._container.decode(stream)
        while not self._exhausted:
            if self._next is None:
                self._read()
                continue
            if self._next_time > t:
                break
            self._current, self._current_time = self._next, self._next_time
            self._next = None
        if self._exhausted and self._container is not None:
            self._container.close()
            self._container = None

    @property
    def current_time(self) -> float:
        """When the current frame was shown first, on the recording's clock."""
        return self._current_time

    def frame_at(self, t: float) -> av.VideoFrame | None:
        """The frame on screen at ``t`` (after :meth:`advance`); None if none or too old."""
        if self._current is None or t - self._current_time > STALE_VIDEO:
            return None
        return self._current

    def _read(self) -> None:
        try:
            frame = next(self._frames)
        except (StopIteration, av.FFmpegError, EOFError):
            self._exhausted = True
            return
        if frame.pts is None or frame.time_base is None:
            return
        self.decoded += 1
        self._next = frame
        self._next_time = self.start + float(frame.pts * frame.time_base)


class AudioSource:
    """One per-track audio file, decoded to 48 kHz stereo float, on the recording's clock."""

    def __init__(self, path: Path, start_offset: float) -> None:
        self.path = path
        self.start_sample = round(start_offset * AUDIO_RATE)
        self._container: Any = None
        self._frames: Any = None
        self._resampler = AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE)
        self._chunks: list[tuple[int, npt.NDArray[np.float32]]] = []
        self._decoded_until = self.start_sample
        self._exhausted = False

    def close(self) -> None:
        """Release the decoder and the file."""
        if self._container is not None:
            self._container.close()
            self._container = None

    def mix_into(self, buffer: npt.NDArray[np.float32], position: int) -> None:
        """Add this source's samples for [position, position + len) into ``buffer`` (2 x n)."""
        end = position + buffer.shape[1]
        if end <= self.start_sample:
            return
        while not self._exhausted and self._decoded_until < end:
            self._decode_more()
        keep = []
        for start, samples in self._chunks:
            stop = start + samples.shape[1]
            if stop <= position:
                continue
            keep.append((start, samples))
            lo, hi = max(start, position), min(stop, end)
            if lo < hi:
                buffer[:, lo - position : hi - position] += samples[:, lo - start : hi - start]
        self._chunks = keep

    def _decode_more(self) -> None:
        if self._container is None:
            self._container = av.open(str(self.path))
            self._frames = self._container.decode(audio=0)
        try:
            frame = next(self._frames)
        except (StopIteration, av.FFmpegError, EOFError):
            self._exhausted = True
            self.close()
            return
        if frame.pts is None or frame.time_base is None:
            return
        at = self.start_sample + round(float(frame.pts * frame.time_base) * AUDIO_RATE)
        for converted in self._resampler.resample(frame):
            samples = converted.to_ndarray().astype(np.float32, copy=False)
            self._chunks.append((at, samples))
            at += samples.shape[1]
        self._decoded_until = max(self._decoded_until, at)


def _people(manifest: Manifest) -> dict[str, Person]:
    return {
        p.identity: Person(
            identity=p.identity,
            name=p.name,
            role=p.role,
            venue_name=p.venue_name,
            level=p.level.value if p.level else None,
        )
        for p in manifest.participants
    }


def _fit(src_w: int, src_h: int, width: int, height: int) -> tuple[int, int, int, int]:
    scale = min(width / src_w, height / src_h)
    w = max(int(src_w * scale) // 2 * 2, 2)
    h = max(int(src_h * scale) // 2 * 2, 2)
    return w, h, ((width - w) // 4) * 2, ((height - h) // 4) * 2


def _newest_frame(sources: list[VideoSource], t: float) -> av.VideoFrame | None:
    # One file per track and part: a rejoin or a resumed recording adds files. The newest
    # frame wins, so an earlier file's last frame never hides the next one's.
    shown = [(s.current_time, frame) for s in sources if (frame := s.frame_at(t)) is not None]
    return max(shown, key=lambda item: item[0])[1] if shown else None


def pip_rect(src_w: int, src_h: int, width: int, height: int) -> tuple[int, int, int, int]:
    """(w, h, x, y) of the camera in the corner while a screen is shared: a quarter of the
    width, the camera's aspect ratio, in the top-right corner (the caption is at the bottom)."""
    w = width // 4 // 2 * 2
    h = max(round(w * src_h / src_w) // 2 * 2, 2)
    margin = max(width // 80 // 2 * 2, 2)
    return w, h, width - w - margin, margin


def _paste(
    planes: tuple[Plane, Plane, Plane], frame: av.VideoFrame, rect: tuple[int, int, int, int]
) -> None:
    w, h, x, y = rect
    scaled = frame.reformat(width=w, height=h, format="yuv420p", interpolation="BILINEAR")
    src = _plane_views(scaled)
    planes[0][y : y + h, x : x + w] = src[0]
    planes[1][y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] = src[1]
    planes[2][y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] = src[2]


def _plane_views(frame: av.VideoFrame) -> tuple[Plane, Plane, Plane]:
    views = []
    for index, plane in enumerate(frame.planes):
        h = frame.height if index == 0 else frame.height // 2
        w = frame.width if index == 0 else frame.width // 2
        array = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)[:h, :w]
        views.append(array)
    return views[0], views[1], views[2]


class Compositor:
    """Renders one recording folder into combined.mp4 (see the module docstring)."""

    def __init__(self, directory: Path, manifest: Manifest, options: RenderOptions) -> None:
        self.directory = directory
        self.manifest = manifest
        self.options = options
        self.font = find_cjk_font()
        self._painter = CaptionPainter(
            options.width, options.height, self.font, find_cjk_font(bold=True)
        )
        self._people = _people(manifest)
        self._captions: dict[str, Overlay] = {}
        self._slates: dict[str | None, Overlay] = {}
        usable = [f for f in manifest.files if f.error is None and (directory / f.name).exists()]
        ends = [f.start_offset + f.duration for f in usable]
        self.duration = manifest.duration or max(ends, default=0.0)
        self._screens = screen_segments(
            manifest.timeline, started_at=manifest.started_at, duration=self.duration
        )
        screen_tracks = {segment.track for segment in self._screens}
        #: Cameras by participant, shared screens by track.
        self._video: dict[str, list[VideoSource]] = {}
        self._screen_video: dict[str, list[VideoSource]] = {}
        for f in usable:
            if f.kind == "video":
                by = self._screen_video if f.track_id in screen_tracks else self._video
                key = f.track_id if f.track_id in screen_tracks else f.participant
                by.setdefault(key, []).append(
                    VideoSource(directory / f.name, f.start_offset, f.duration)
                )
        self._audio = [
            AudioSource(directory / f.name, f.start_offset) for f in usable if f.kind == "audio"
        ]

    def render(
        self,
        output: Path,
        progress: ProgressCallback | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> CombinedFile:
        """Write the MP4 to ``output`` (through ``output.part``); returns its manifest entry."""
        options = self.options
        part = output.with_name(output.name + ".part")
        frames_total = max(math.ceil(self.duration * options.fps), 1)
        chapters = self._chapters()
        container = av.open(str(part), "w", format="mp4", options={"movflags": "+faststart"})
        try:
            container.metadata["title"] = self.manifest.room.title
            container.metadata["comment"] = f"Yitang recording {self.manifest.id}"
            video = container.add_stream("libx264", rate=options.fps)
            video.width, video.height = options.width, options.height
            video.pix_fmt = "yuv420p"
            video.options = {"preset": options.preset, "crf": str(options.crf)}
            video.codec_context.time_base = fractions.Fraction(1, options.fps)
            video.codec_context.thread_type = "FRAME"  # x264 frame threads: all cores
            audio = container.add_stream("aac", rate=AUDIO_RATE, layout="stereo")
            audio.bit_rate = options.audio_bitrate
            container.set_chapters(
                [
                    {
                        "id": i + 1,
                        "start": round(start * 1000),
                        "end": round(end * 1000),
                        "time_base": fractions.Fraction(1, 1000),
                        "metadata": {"title": title},
                    }
                    for i, (start, end, title) in enumerate(chapters)
                ]
            )
            audio_position = 0
            last_report = 0.0
            for index in range(frames_total):
                if cancelled is not None and cancelled():
                    raise RenderCancelled
                t = index / options.fps
                until = round((index + 1) / options.fps * AUDIO_RATE)
                while audio_position + AAC_FRAME <= until:
                    container.mux(audio.encode(self._audio_frame(audio_position)))
                    audio_position += AAC_FRAME
                frame = self._video_frame(t)
                frame.pts = index
                container.mux(video.encode(frame))
                now = time.monotonic()
                if progress is not None and now - last_report >= 0.5:
                    last_report = now
                    progress(100.0 * (index + 1) / frames_total)
            end_sample = round(frames_total / options.fps * AUDIO_RATE)
            while audio_position < end_sample:
                container.mux(audio.encode(self._audio_frame(audio_position)))
                audio_position += AAC_FRAME
            container.mux(video.encode(None))
            container.mux(audio.encode(None))
        except BaseException:
            container.close()
            part.unlink(missing_ok=True)
            raise
        finally:
            self._close_sources()
        container.close()
        os.replace(part, output)
        if progress is not None:
            progress(100.0)
        return CombinedFile(
            name=output.name,
            size=output.stat().st_size,
            sha256=sha256_file(output),
            duration=round(frames_total / options.fps, 3),
            width=options.width,
            height=options.height,
            chapters=len(chapters),
            rendered_at=time.time(),
            font=self.font.description,
        )

    def _chapters(self) -> list[tuple[float, float, str]]:
        names = {p.identity: p.name for p in self.manifest.participants}
        agenda = [c for c in self.manifest.chapters if c.kind == "agenda"]
        return flat_chapters(agenda, self.manifest.speakers, names, self.manifest.host)

    def shown_at(self, t: float) -> str | None:
        """The identity on screen at ``t`` (the floor holder, else the host)."""
        for segment in self.manifest.speakers:
            if segment.start <= t < segment.end:
                return segment.identity or self.manifest.host
        return self.manifest.host

    def screen_at(self, t: float) -> ScreenSegment | None:
        """The screen shared at ``t``, if any."""
        return next((s for s in self._screens if s.start <= t < s.end), None)

    def _video_frame(self, t: float) -> av.VideoFrame:
        options = self.options
        out = av.VideoFrame(options.width, options.height, "yuv420p")
        planes = _plane_views(out)
        for sources in (*self._video.values(), *self._screen_video.values()):
            for source in sources:
                source.advance(t)
        identity = self.shown_at(t)
        camera = _newest_frame(self._video.get(identity or "", []), t)
        screen = self.screen_at(t)
        shared = _newest_frame(self._screen_video.get(screen.track, []), t) if screen else None
        if shared is None and camera is None:
            slate = self._slate(identity)
            for target, data in zip(
                planes, (slate.y_plane, slate.u_plane, slate.v_plane), strict=True
            ):
                target[...] = data
            return out
        planes[0][...] = 16
        planes[1][...] = 128
        planes[2][...] = 128
        main = shared if shared is not None else camera
        assert main is not None
        _paste(planes, main, _fit(main.width, main.height, options.width, options.height))
        if shared is not None and camera is not None:
            _paste(
                planes, camera, pip_rect(camera.width, camera.height, options.width, options.height)
            )
        if identity is not None and identity in self._people:
            blend(planes, self._caption(identity))
        return out

    def _caption(self, identity: str) -> Overlay:
        overlay = self._captions.get(identity)
        if overlay is None:
            overlay = self._captions[identity] = self._painter.caption(self._people[identity])
        return overlay

    def _slate(self, identity: str | None) -> Overlay:
        overlay = self._slates.get(identity)
        if overlay is None:
            person = self._people.get(identity) if identity else None
            overlay = self._painter.slate(person, self.manifest.room.title)
            self._slates[identity] = overlay
        return overlay

    def _audio_frame(self, position: int) -> av.AudioFrame:
        buffer = np.zeros((2, AAC_FRAME), dtype=np.float32)
        for source in self._audio:
            source.mix_into(buffer, position)
        np.clip(buffer, -1.0, 1.0, out=buffer)
        frame = av.AudioFrame.from_ndarray(buffer, format="fltp", layout="stereo")
        frame.sample_rate = AUDIO_RATE
        frame.pts = position
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        return frame

    def _close_sources(self) -> None:
        for sources in (*self._video.values(), *self._screen_video.values()):
            for source in sources:
                source.close()
        for audio in self._audio:
            audio.close()


def render_recording(
    directory: Path,
    options: RenderOptions | None = None,
    progress: ProgressCallback | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Manifest:
    """Render ``directory``'s combined.mp4 and record it in its manifest; returns the manifest."""
    manifest = read_manifest(directory)
    if manifest is None:
        raise FileNotFoundError(f"no readable manifest in {directory}")
    if manifest.state == "recording":
        raise ValueError("the recording is still running")
    compositor = Compositor(directory, manifest, options or RenderOptions())
    combined = compositor.render(directory / COMBINED_NAME, progress, cancelled)
    current = read_manifest(directory) or manifest
    updated = current.model_copy(update={"combined": combined})
    write_manifest(directory, updated)
    return updated
