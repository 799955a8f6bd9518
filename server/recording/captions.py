"""Text drawn on the combined video: the speaker's caption and the full-frame slate.

Drawn once per person with Pillow, converted to YUV 4:2:0 planes plus alpha
(BT.601, limited range, like the encoder's input), and blended into each
frame with numpy. Chinese needs a CJK font: the first one found in the usual
system places is used (``fonts-noto-cjk`` gives Noto Sans CJK SC). Without
one, captions fall back to Pillow's default font with Latin text (the
identity instead of the name, English level names) rather than drawing
empty boxes; :attr:`FontChoice.cjk` says which happened.
"""

from __future__ import annotations

import glob
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

logger = logging.getLogger(__name__)

Plane = npt.NDArray[np.uint8]

LEVEL_ZH = {"national": "全国", "provincial": "省级", "city": "市级", "county": "区县"}
LEVEL_EN = {"national": "National", "provincial": "Provincial", "city": "City", "county": "County"}
ROLE_ZH = {"host": "主持人", "member": "委员", "guest": "特邀嘉宾", "observer": "旁听"}
ROLE_EN = {"host": "Host", "member": "Member", "guest": "Guest", "observer": "Observer"}

#: Where CJK fonts usually are (Debian: fonts-noto-cjk, fonts-wqy-zenhei, fonts-arphic-*).
CJK_FONT_PATTERNS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-*.ttc",
    "/usr/share/fonts/**/NotoSansCJK*.tt[cf]",
    "/usr/share/fonts/**/NotoSansSC*.[ot]tf",
    "/usr/share/fonts/**/SourceHanSans*.tt[cf]",
    "/usr/share/fonts/**/wqy-*.ttc",
    "/usr/share/fonts/**/uming.ttc",
    "/usr/local/share/fonts/**/*CJK*.tt[cf]",
)
_SC_FACE = "SC"

FontType = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass(frozen=True)
class FontChoice:
    """The font file used for captions (None: Pillow's built-in font) and whether it has CJK."""

    path: str | None
    index: int
    cjk: bool

    @property
    def description(self) -> str:
        """For the manifest: which font drew the captions."""
        if self.path is None:
            return "fallback: Pillow default font (no CJK font found; Latin captions)"
        return f"{Path(self.path).name}#{self.index}"

    def load(self, size: int) -> FontType:
        """The font at ``size`` pixels."""
        if self.path is None:
            return ImageFont.load_default(size=size)
        return ImageFont.truetype(self.path, size, index=self.index)


def find_cjk_font(bold: bool = False) -> FontChoice:
    """The first CJK font found (the Simplified Chinese face of a collection), else the fallback."""
    candidates: list[str] = []
    for pattern in CJK_FONT_PATTERNS:
        candidates.extend(sorted(glob.glob(pattern, recursive=True)))
    if bold:
        candidates.sort(key=lambda p: "Bold" not in p)
    else:
        candidates.sort(key=lambda p: "Regular" not in p)
    for path in candidates:
        for index in range(8):
            try:
                font = ImageFont.truetype(path, 20, index=index)
            except OSError:
                break
            name = font.getname()[0] or ""
            if not path.endswith(".ttc") or _SC_FACE in name.split():
                return FontChoice(path, index, True)
        try:
            ImageFont.truetype(path, 20)
            return FontChoice(path, 0, True)
        except OSError:
            continue
    logger.warning("no CJK font found: captions will use Latin text (install fonts-noto-cjk)")
    return FontChoice(None, 0, False)


@dataclass(frozen=True)
class Person:
    """Who a caption or slate shows."""

    identity: str
    name: str
    role: str
    venue_name: str
    level: str | None


@dataclass(frozen=True)
class Overlay:
    """A YUV 4:2:0 image with alpha, placed at (x, y) of the frame (both even)."""

    x: int
    y: int
    y_plane: Plane
    u_plane: Plane
    v_plane: Plane
    alpha: Plane
    alpha_chroma: Plane


def caption_lines(person: Person, cjk: bool) -> tuple[str, str]:
    """The caption's two lines: the name, then role, venue and level."""
    if cjk:
        level = LEVEL_ZH.get(person.level or "", "")
        role = ROLE_ZH.get(person.role, "")
        first = person.name
    else:
        level = LEVEL_EN.get(person.level or "", "")
        role = ROLE_EN.get(person.role, "")
        first = person.name if person.name.isascii() else person.identity
    venue = person.venue_name if cjk or person.venue_name.isascii() else ""
    second = " · ".join(
        part for part in (role if person.role == "host" else "", venue, level) if part
    )
    return first, second


def rgba_to_overlay(image: Image.Image, x: int, y: int) -> Overlay:
    """Convert an RGBA image to limited-range BT.601 YUV 4:2:0 planes with alpha."""
    width, height = image.size
    width -= width % 2
    height -= height % 2
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)[:height, :width]
    r, g, b, a = rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3]
    y_plane = 16.0 + 0.256788 * r + 0.504129 * g + 0.097906 * b
    u_full = 128.0 - 0.148223 * r - 0.290993 * g + 0.439216 * b
    v_full = 128.0 + 0.439216 * r - 0.367788 * g - 0.071427 * b

    def half(plane: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return (plane[0::2, 0::2] + plane[1::2, 0::2] + plane[0::2, 1::2] + plane[1::2, 1::2]) / 4.0

    def u8(plane: npt.NDArray[np.float32]) -> Plane:
        return np.clip(np.rint(plane), 0, 255).astype(np.uint8)

    return Overlay(
        x=x - x % 2,
        y=y - y % 2,
        y_plane=u8(y_plane),
        u_plane=u8(half(u_full)),
        v_plane=u8(half(v_full)),
        alpha=u8(a),
        alpha_chroma=u8(half(a)),
    )


class CaptionPainter:
    """Draws captions and slates for one output size, with one font."""

    def __init__(self, width: int, height: int, font: FontChoice, bold: FontChoice) -> None:
        self.width = width
        self.height = height
        self.font = font
        self.cjk = font.cjk
        unit = height / 720.0
        self._name_font = bold.load(max(int(34 * unit), 12))
        self._line_font = font.load(max(int(24 * unit), 10))
        self._slate_name_font = bold.load(max(int(64 * unit), 16))
        self._slate_line_font = font.load(max(int(32 * unit), 12))
        self._margin = max(int(28 * unit), 8)
        self._padding = max(int(14 * unit), 4)

    def caption(self, person: Person) -> Overlay:
        """A dark box at the bottom left with the name and the venue line."""
        first, second = caption_lines(person, self.cjk)
        probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
        first_box = probe.textbbox((0, 0), first, font=self._name_font)
        second_box = (
            probe.textbbox((0, 0), second, font=self._line_font) if second else (0, 0, 0, 0)
        )
        gap = self._padding // 2
        text_w = max(first_box[2], second_box[2])
        text_h = first_box[3] + (gap + second_box[3] if second else 0)
        box_w = min(text_w + 2 * self._padding, self.width - 2 * self._margin)
        box_h = text_h + 2 * self._padding
        image = Image.new("RGBA", (int(box_w + box_w % 2), int(box_h + box_h % 2)), (0, 0, 0, 0))
        draw = ImageDraw.Draw(image)
        draw.rounded_rectangle(
            (0, 0, box_w - 1, box_h - 1), radius=self._padding, fill=(12, 18, 32, 170)
        )
        draw.text((self._padding, self._padding), first, font=self._name_font, fill="white")
        if second:
            draw.text(
                (self._padding, self._padding + first_box[3] + gap),
                second,
                font=self._line_font,
                fill=(220, 226, 235, 255),
            )
        x = self._margin
        y = self.height - self._margin - image.size[1]
        return rgba_to_overlay(image, x, y)

    def slate(self, person: Person | None, title: str) -> Overlay:
        """A full frame for someone without video: name and venue centred on dark blue."""
        image = Image.new("RGBA", (self.width, self.height), (16, 28, 52, 255))
        draw = ImageDraw.Draw(image)
        if person is not None:
            first, second = caption_lines(person, self.cjk)
        else:
            first, second = (title if self.cjk or title.isascii() else "Yitang"), ""
        lines = [(first, self._slate_name_font), (second, self._slate_line_font)]
        boxes = [draw.textbbox((0, 0), text, font=font) for text, font in lines if text]
        total = sum(b[3] for b in boxes) + self._padding * (len(boxes) - 1)
        y = (self.height - total) // 2
        for (text, font), box in zip([line for line in lines if line[0]], boxes, strict=True):
            draw.text(((self.width - box[2]) // 2, y), text, font=font, fill="white")
            y += box[3] + self._padding
        return rgba_to_overlay(image, 0, 0)


def blend(planes: tuple[Plane, Plane, Plane], overlay: Overlay) -> None:
    """Alpha-blend ``overlay`` into Y, U, V plane views (modified in place)."""
    y_view, u_view, v_view = planes
    height, width = overlay.y_plane.shape
    _blend_into(
        y_view[overlay.y : overlay.y + height, overlay.x : overlay.x + width],
        overlay.y_plane,
        overlay.alpha,
    )
    cy, cx = overlay.y // 2, overlay.x // 2
    ch, cw = overlay.u_plane.shape
    _blend_into(u_view[cy : cy + ch, cx : cx + cw], overlay.u_plane, overlay.alpha_chroma)
    _blend_into(v_view[cy : cy + ch, cx : cx + cw], overlay.v_plane, overlay.alpha_chroma)


def _blend_into(target: Plane, source: Plane, alpha: Plane) -> None:
    h, w = target.shape
    src = source[:h, :w].astype(np.uint16)
    a = alpha[:h, :w].astype(np.uint16)
    mixed = (target.astype(np.uint16) * (255 - a) + src * a + 127) // 255
    target[...] = mixed.astype(np.uint8)
