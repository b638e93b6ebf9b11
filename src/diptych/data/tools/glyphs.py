"""Font-to-font pairs (zi2zi-style style transfer): the same characters rendered in two fonts."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fontTools.ttLib import TTFont, TTLibError
from PIL import Image, ImageDraw, ImageFont

from ...errors import ConfigError, DataError
from ..io import list_images
from .outputs import OutputSet


@dataclass
class GlyphResult:
    """How many characters were written, and which were skipped because a font lacks them or draws nothing."""

    written: int = 0
    missing: list[str] = field(default_factory=list)
    blank: list[str] = field(default_factory=list)
    clipped: list[str] = field(default_factory=list)  # written, but one font's glyph is larger than the canvas
    removed: int = 0  # glyph files of an earlier run deleted by --overwrite


def font_codepoints(path: Path) -> set[int]:
    """The code points a font maps to glyphs (its best cmap subtable)."""
    try:
        with TTFont(path, lazy=True, fontNumber=0) as font:
            return set(font.getBestCmap() or {})
    except (OSError, TTLibError, AssertionError) as exc:
        raise DataError(f"{path}: not a font file fontTools can read ({exc}); pass a .ttf/.otf/.ttc file") from None


def parse_unicode_range(text: str) -> list[str]:
    """'4E00-4E5F' or 'U+0041-U+005A' (hex, inclusive) -> the characters."""
    try:
        first, last = (int(part.strip().upper().removeprefix("U+"), 16) for part in text.split("-"))
    except ValueError:
        raise ConfigError(f"--range {text}: expected two hex code points like 4E00-4E5F") from None
    if not 0 <= first <= last <= 0x10FFFF:
        raise ConfigError(f"--range {text}: expected FIRST <= LAST within 0..10FFFF")
    return [chr(c) for c in range(first, last + 1)]


def collect_chars(chars: str = "", chars_file: Path | None = None, unicode_range: str = "") -> list[str]:
    """Unique characters from a string, a UTF-8 text file and/or a range, in order; line breaks and controls dropped."""
    text = chars
    if chars_file is not None:
        try:
            text += chars_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--chars-file {chars_file}: cannot read it as UTF-8 text ({exc})") from None
    found = list(text) + (parse_unicode_range(unicode_range) if unicode_range else [])
    unique = [c for c in dict.fromkeys(found) if unicodedata.category(c)[0] != "C"]
    if not unique:
        raise ConfigError("no characters to render; pass --chars, --chars-file or --range")
    return unique


def render_glyph(font: ImageFont.FreeTypeFont, char: str, canvas: int) -> np.ndarray:
    """One character in black on a white canvas x canvas square, its ink box centred; HxWx1 uint8."""
    image = Image.new("L", (canvas, canvas), 255)
    left, top, right, bottom = font.getbbox(char)
    origin = ((canvas - (right - left)) / 2 - left, (canvas - (bottom - top)) / 2 - top)
    ImageDraw.Draw(image).text(origin, char, font=font, fill=0)
    return np.asarray(image)[:, :, None]


def glyph_fits(font: ImageFont.FreeTypeFont, char: str, canvas: int) -> bool:
    """Whether the character's ink box fits on a canvas x canvas square (render_glyph clips what does not)."""
    left, top, right, bottom = font.getbbox(char)
    return right - left <= canvas and bottom - top <= canvas


def make_glyph_pairs(
    font_a: Path,
    font_b: Path,
    out: Path,
    chars: list[str],
    canvas: int = 256,
    font_size: int = 0,
    aligned: bool = False,
    suffix: str = ".png",
    overwrite: bool = False,
) -> GlyphResult:
    """Write OUT/A/U+XXXX.png and OUT/B/U+XXXX.png (or aligned A|B images) for every character both fonts draw."""
    if canvas < 8:
        raise ConfigError(f"--size {canvas} must be >= 8 pixels")
    size = font_size or round(canvas * 0.75)
    cmaps = [font_codepoints(font_a), font_codepoints(font_b)]
    try:
        fonts = [ImageFont.truetype(str(font_a), size), ImageFont.truetype(str(font_b), size)]
    except OSError as exc:
        raise DataError(f"{font_a} / {font_b}: Pillow cannot load the font ({exc})") from None
    result = GlyphResult()
    with OutputSet(out, suffix, overwrite) as outputs:
        for char in chars:
            name = f"U+{ord(char):04X}"
            if any(ord(char) not in cmap for cmap in cmaps):
                result.missing.append(name)
                continue
            a, b = (render_glyph(font, char, canvas) for font in fonts)
            if a.min() == 255 or b.min() == 255:
                result.blank.append(name)
                continue
            if not all(glyph_fits(font, char, canvas) for font in fonts):
                result.clipped.append(name)
            if aligned:
                outputs.write(name, np.concatenate([a, b], axis=1))
            else:
                outputs.write(Path("A") / name, a)
                outputs.write(Path("B") / name, b)
            result.written += 1
        if not result.written:
            raise DataError(f"{font_a} and {font_b}: none of the {len(chars)} character(s) is drawn by both fonts")
        if overwrite:  # an earlier run's glyphs (other fonts or characters) must not mix with these pairs
            old = [p for side in ("A", "B") if (out / side).is_dir() for p in list_images(out / side)]
            old += [p for p in list_images(out, recursive=False) if p.name.startswith("U+")] if out.is_dir() else []
            result.removed = len(outputs.remove_others(old))
    return result
