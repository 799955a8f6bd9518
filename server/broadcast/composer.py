"""Draws one programme frame: the shown participant large, the host in a corner, the banner.

Runs in the broadcast worker. Text is drawn with Pillow into RGBA overlays
(the recording's caption code: fonts, YUV conversion, blending); an overlay is
drawn again only when the programme changes, so a frame costs two scaled
pastes and a blend.
"""

from __future__ import annotations

import av
import numpy as np
from PIL import Image, ImageDraw

from server.recording.captions import (
    LEVEL_EN,
    LEVEL_ZH,
    CaptionPainter,
    Overlay,
    Person,
    Plane,
    blend,
    find_cjk_font,
    rgba_to_overlay,
)
from server.recording.compositor import pip_rect

from .programme import Programme, Speaker

PAUSED_TEXT = ("直播暂停", "Broadcast paused")


def plane_views(frame: av.VideoFrame) -> tuple[Plane, Plane, Plane]:
    """Writable numpy views of a yuv420p frame's Y, U and V planes."""
    views = []
    for index, plane in enumerate(frame.planes):
        h = frame.height if index == 0 else frame.height // 2
        w = frame.width if index == 0 else frame.width // 2
        views.append(
            np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)[:h, :w]
        )
    return views[0], views[1], views[2]


def fit(src_w: int, src_h: int, width: int, height: int) -> tuple[int, int, int, int]:
    """(w, h, x, y) of a source scaled to fit the frame, centred (all even)."""
    scale = min(width / src_w, height / src_h)
    w = max(int(src_w * scale) // 2 * 2, 2)
    h = max(int(src_h * scale) // 2 * 2, 2)
    return w, h, ((width - w) // 4) * 2, ((height - h) // 4) * 2


def paste(
    planes: tuple[Plane, Plane, Plane], frame: av.VideoFrame, rect: tuple[int, int, int, int]
) -> None:
    """Scale `frame` into `rect` of the output planes."""
    w, h, x, y = rect
    scaled = frame.reformat(width=w, height=h, format="yuv420p", interpolation="BILINEAR")
    src = plane_views(scaled)
    planes[0][y : y + h, x : x + w] = src[0]
    planes[1][y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] = src[1]
    planes[2][y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] = src[2]


def _person(speaker: Speaker) -> Person:
    return Person(speaker.identity, speaker.name, speaker.role, speaker.venue_name, speaker.level)


class ProgrammeComposer:
    """Composes frames of one size; caches its overlays per programme."""

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        font = find_cjk_font()
        bold = find_cjk_font(bold=True)
        self.cjk = font.cjk
        self._painter = CaptionPainter(width, height, font, bold)
        unit = height / 720.0
        self._font = font
        self._bold = bold
        self._banner_name = bold.load(max(int(34 * unit), 12))
        self._banner_line = font.load(max(int(24 * unit), 10))
        self._margin = max(int(20 * unit), 6)
        self._padding = max(int(12 * unit), 4)
        self._key: tuple[object, ...] | None = None
        self._overlays: list[Overlay] = []
        self._slate: Overlay | None = None

    def compose(
        self, programme: Programme, main: av.VideoFrame | None, corner: av.VideoFrame | None
    ) -> av.VideoFrame:
        """One output frame (yuv420p) for the programme and the latest decoded frames."""
        self._refresh(programme)
        out = av.VideoFrame(self.width, self.height, "yuv420p")
        planes = plane_views(out)
        if programme.paused or main is None:
            assert self._slate is not None
            for target, data in zip(
                planes, (self._slate.y_plane, self._slate.u_plane, self._slate.v_plane), strict=True
            ):
                target[...] = data
        else:
            planes[0][...] = 16
            planes[1][...] = 128
            planes[2][...] = 128
            paste(planes, main, fit(main.width, main.height, self.width, self.height))
        if not programme.paused:
            if corner is not None:
                paste(
                    planes, corner, pip_rect(corner.width, corner.height, self.width, self.height)
                )
            for overlay in self._overlays:
                blend(planes, overlay)
        return out

    # --- overlays -------------------------------------------------------------------------

    def _refresh(self, programme: Programme) -> None:
        key = (
            programme.shown,
            programme.has_floor,
            programme.agenda,
            programme.gallery,
            programme.paused,
            programme.title,
        )
        if key == self._key:
            return
        self._key = key
        if programme.paused:
            self._slate = self._text_slate(PAUSED_TEXT[0] if self.cjk else PAUSED_TEXT[1])
            self._overlays = []
            return
        person = _person(programme.shown) if programme.shown else None
        self._slate = self._painter.slate(person, programme.title)
        self._overlays = [self._banner(programme)]
        if programme.gallery:
            self._overlays.append(self._gallery(programme.gallery))

    def _text(self, text: str) -> str:
        # Without a CJK font, Chinese text would draw as boxes: leave it out instead.
        return text if self.cjk or text.isascii() else ""

    def _banner(self, programme: Programme) -> Overlay:
        """The bottom bar: who is shown (name, venue · level), then the agenda item."""
        first = ""
        second = ""
        if programme.shown is not None:
            speaker = programme.shown
            first = speaker.name if self.cjk or speaker.name.isascii() else speaker.identity
            levels = LEVEL_ZH if self.cjk else LEVEL_EN
            second = " · ".join(
                p
                for p in (self._text(speaker.venue_name), levels.get(speaker.level or "", ""))
                if p
            )
        agenda = self._text(programme.agenda)
        lines = [
            (t, f)
            for t, f in (
                (first, self._banner_name),
                (second, self._banner_line),
                (agenda, self._banner_line),
            )
            if t
        ]
        if not lines:
            lines = [(self._text(programme.title) or "Yitang", self._banner_line)]
        probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
        boxes = [probe.textbbox((0, 0), text, font=font) for text, font in lines]
        gap = self._padding // 2
        text_h = int(sum(b[3] for b in boxes)) + gap * (len(boxes) - 1)
        box_w = self.width - 2 * self._margin
        box_h = text_h + 2 * self._padding
        image = Image.new("RGBA", (box_w + box_w % 2, box_h + box_h % 2), (0, 0, 0, 0))
        draw = ImageDraw.Draw(image)
        draw.rounded_rectangle(
            (0, 0, box_w - 1, box_h - 1), radius=self._padding, fill=(12, 18, 32, 180)
        )
        y = self._padding
        for (text, font), box in zip(lines, boxes, strict=True):
            draw.text((self._padding, y), text, font=font, fill="white")
            y += int(box[3]) + gap
        return rgba_to_overlay(image, self._margin, self.height - self._margin - image.size[1])

    def _gallery(self, text: str) -> Overlay:
        """The approved question or opinion on screen, top left."""
        shown = self._text(text) or "…"
        font = self._banner_line
        width = self.width // 2
        probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
        lines: list[str] = []
        current = ""
        for ch in shown:
            if probe.textbbox((0, 0), current + ch, font=font)[2] > width - 2 * self._padding:
                lines.append(current)
                current = ""
                if len(lines) == 3:
                    break
            current += ch
        if current and len(lines) < 3:
            lines.append(current)
        line_h = int(probe.textbbox((0, 0), "Ag议", font=font)[3]) + self._padding // 2
        box_h = line_h * len(lines) + 2 * self._padding
        image = Image.new("RGBA", (width, box_h + box_h % 2), (0, 0, 0, 0))
        draw = ImageDraw.Draw(image)
        draw.rounded_rectangle(
            (0, 0, width - 1, box_h - 1), radius=self._padding, fill=(120, 30, 30, 190)
        )
        for index, line in enumerate(lines):
            draw.text(
                (self._padding, self._padding + index * line_h), line, font=font, fill="white"
            )
        return rgba_to_overlay(image, self._margin, self._margin)

    def _text_slate(self, text: str) -> Overlay:
        image = Image.new("RGBA", (self.width, self.height), (16, 28, 52, 255))
        draw = ImageDraw.Draw(image)
        font = self._bold.load(max(int(56 * self.height / 720), 16))
        box = draw.textbbox((0, 0), text, font=font)
        draw.text(
            ((self.width - box[2]) // 2, (self.height - box[3]) // 2), text, font=font, fill="white"
        )
        return rgba_to_overlay(image, 0, 0)
