"""Text-line images for ``rnnkit train ocr``: printed lines rendered with Pillow, and lines of
handwritten digits.

Printed lines. A line of text is drawn in one of the TrueType fonts that matplotlib ships
(``matplotlib.get_data_path()/fonts/ttf``: DejaVu Sans, Sans Mono and Serif in four styles
each, STIX in four, Computer Modern roman, bold, sans, italic and typewriter; no download, no
system font), then degraded. Everything random comes from one ``numpy.random.Generator``, so a
line image is a pure function of (text, font, seed). The steps, in order:

1. font size s ~ U{22..33} px; each character placed at its advance width plus a tracking of
   U(-0.04, 0.12)·s (letter spacing), each space widened by U(0.8, 1.6);
2. an affine map: shear x' = x - k·(y - baseline) with k ~ U(-0.15, 0.35) (upright to italic)
   and a rotation of U(-0.6°, 0.6°) about the line's centre;
3. the crop: vertically the font's line box (from the tops of "Hdlb" to the bottoms of "gpy")
   widened by the rotation's rise and U(0, 0.25)·s at each edge, horizontally the ink plus
   U{1..12} px;
4. scaled to height 32 (``HEIGHT``), the width by the same factor times U(0.85, 1.15);
5. Gaussian blur of radius U(0, 1.1) px (half of the lines);
6. composed as x = b + c·ink with a background b = b0 + a·(smooth random texture) + a linear
   gradient, contrast c ~ U(0.35, 1), then Gaussian noise of σ ~ U(0, 0.12);
7. ``normalise``: the 1st-99th percentile stretched to [0, 1] (ink high), as done to any image
   ``rnnkit predict`` reads.

Handwritten digits: lines of 3-12 of scikit-learn's 8x8 ``load_digits`` images, each scaled up
bilinearly to a random height U{16..30} and aspect U(0.7, 1.1), placed with random gaps
U{-1..10} px and vertical offsets, then steps 5-7.

Characters. A line is drawn in a font chosen among those whose character map holds all of its
characters (Computer Modern's text fonts, in TeX's OT1 encoding, are not trusted for
``"<>\\_{|}~``, which hold other glyphs there). A text whose character no training font can
draw, or one of the held-out fonts cannot, is refused, and so is a control or format character
(NUL, escape, U+200B, private use...): OCR reads characters printed on a line, and a character
with no glyph has no picture to learn from.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from pathlib import Path

import numpy as np
from numpy.random import Generator

from rnnkit.errors import UserError

HEIGHT = 32  # every line image is this many pixels high

FONT_FILES = {
    "DejaVu Sans": "DejaVuSans.ttf",
    "DejaVu Sans Bold": "DejaVuSans-Bold.ttf",
    "DejaVu Sans Oblique": "DejaVuSans-Oblique.ttf",
    "DejaVu Sans Bold Oblique": "DejaVuSans-BoldOblique.ttf",
    "DejaVu Sans Mono": "DejaVuSansMono.ttf",
    "DejaVu Sans Mono Bold": "DejaVuSansMono-Bold.ttf",
    "DejaVu Sans Mono Oblique": "DejaVuSansMono-Oblique.ttf",
    "DejaVu Sans Mono Bold Oblique": "DejaVuSansMono-BoldOblique.ttf",
    "DejaVu Serif": "DejaVuSerif.ttf",
    "DejaVu Serif Bold": "DejaVuSerif-Bold.ttf",
    "DejaVu Serif Italic": "DejaVuSerif-Italic.ttf",
    "DejaVu Serif Bold Italic": "DejaVuSerif-BoldItalic.ttf",
    "STIX": "STIXGeneral.ttf",
    "STIX Bold": "STIXGeneralBol.ttf",
    "STIX Italic": "STIXGeneralItalic.ttf",
    "STIX Bold Italic": "STIXGeneralBolIta.ttf",
    "CM Roman": "cmr10.ttf",
    "CM Bold": "cmb10.ttf",
    "CM Sans": "cmss10.ttf",
    "CM Italic": "cmti10.ttf",
    "CM Typewriter": "cmtt10.ttf",
}
OT1_OTHER = frozenset('"<>\\_{|}~')  # OT1 positions of Computer Modern's text fonts: not ASCII
DEFAULT_HOLDOUT = ["DejaVu Serif Italic", "STIX Italic"]


def font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.cache
def coverage(name: str) -> frozenset[str]:
    """The characters font ``name`` has a glyph for (its character map)."""
    from fontTools.ttLib import TTFont

    with TTFont(font_dir() / FONT_FILES[name], lazy=True) as font:
        cmap = font.getBestCmap() or {}
    chars = frozenset(chr(c) for c in cmap)
    if name.startswith("CM ") and name != "CM Typewriter":
        chars -= OT1_OTHER
    return chars | {" "}


@functools.lru_cache(maxsize=512)
def load_font(name: str, size: int):
    from PIL import ImageFont

    return ImageFont.truetype(str(font_dir() / FONT_FILES[name]), size)


def check_fonts(names: list[str], option: str) -> list[str]:
    """``names`` if each is a known font, else a UserError naming ``option``."""
    for n in names:
        if n not in FONT_FILES:
            raise UserError(
                f"option '{option}': unknown font {n!r}; fonts: {', '.join(FONT_FILES)}"
            )
    if not names:
        raise UserError(f"option '{option}' names no font")
    return list(names)


def training_fonts(holdout: list[str]) -> list[str]:
    return [f for f in FONT_FILES if f not in holdout]


def fonts_for(text: str, fonts: list[str]) -> list[str]:
    """The fonts of ``fonts`` that can draw every character of ``text``."""
    chars = set(text)
    if chars <= common_coverage(tuple(fonts)):
        return list(fonts)
    return [f for f in fonts if chars <= coverage(f)]


@functools.lru_cache(maxsize=16)
def common_coverage(fonts: tuple[str, ...]) -> frozenset[str]:
    """The characters every font of ``fonts`` can draw."""
    return frozenset.intersection(*(coverage(f) for f in fonts))


# ---- rendering ---------------------------------------------------------------------------------
def normalise(x: np.ndarray) -> np.ndarray:
    """Grey levels (ink high) stretched so the 1st and 99th percentiles become 0 and 1."""
    lo, hi = np.percentile(x, (1.0, 99.0))
    if hi - lo < 1e-3:
        hi = lo + 1e-3
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def degrade(ink: np.ndarray, rng: Generator) -> np.ndarray:
    """Steps 5-7 of the module docstring on ``ink`` (float, HEIGHT x W, 0..1, ink high)."""
    from PIL import Image, ImageFilter

    h, w = ink.shape
    if rng.random() < 0.5:
        img = Image.fromarray((ink * 255).astype(np.uint8))
        ink = np.asarray(img.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.1)))) / 255.0
    coarse = rng.random((3, max(2, w // 24)))
    texture = np.asarray(
        Image.fromarray((coarse * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)
    )
    gradient = np.linspace(0.0, rng.uniform(-0.2, 0.2), w)[None, :]
    background = rng.uniform(0, 0.3) + rng.uniform(0, 0.25) * texture / 255.0 + gradient
    x = background + rng.uniform(0.35, 1.0) * ink
    x = x + rng.normal(0.0, rng.uniform(0, 0.12), x.shape)
    return normalise(x)


@functools.lru_cache(maxsize=65536)
def glyph(font: str, size: int, c: str) -> tuple[np.ndarray, int, int, float]:
    """Character ``c`` of ``font`` at ``size``: (ink uint8, left, top relative to the origin on
    the baseline, advance width)."""
    from PIL import Image, ImageDraw

    f = load_font(font, size)
    left, top, right, bottom = f.getbbox(c, anchor="ls")
    img = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
    ImageDraw.Draw(img).text((-left, -top), c, font=f, fill=255, anchor="ls")
    return np.asarray(img), left, top, f.getlength(c)


@functools.lru_cache(maxsize=1024)
def line_box(font: str, size: int) -> tuple[int, int]:
    """(ascent, descent) in pixels about the baseline: the tops of "Hdlb", the bottoms of "gpy"."""
    ascent = -min(glyph(font, size, c)[2] for c in "Hdlb")
    descent = max(glyph(font, size, c)[2] + glyph(font, size, c)[0].shape[0] for c in "gpy")
    return ascent, descent


def render_text(text: str, font: str, rng: Generator) -> np.ndarray:
    """``text`` drawn in ``font`` and degraded (steps 1-7): float32 (HEIGHT, W) in [0, 1]."""
    from PIL import Image

    size = int(rng.integers(22, 34))
    ascent, descent = line_box(font, size)
    track = rng.uniform(-0.04, 0.12) * size
    space = rng.uniform(0.8, 1.6)
    glyphs = [glyph(font, size, c) for c in text]
    advances = [
        g[3] * (space if c == " " else 1.0) + track for c, g in zip(text, glyphs, strict=True)
    ]
    margin = size
    width = int(sum(advances) + 2 * margin)
    height = ascent + descent + size
    baseline = ascent + size // 2
    canvas = np.zeros((height, width), np.uint8)
    x = float(margin)
    for c, g, adv in zip(text, glyphs, advances, strict=True):
        if c != " ":
            ink, left, top, _ = g
            y0, x0 = baseline + top, round(x) + left
            region = canvas[y0 : y0 + ink.shape[0], x0 : x0 + ink.shape[1]]
            np.maximum(region, ink[: region.shape[0], : region.shape[1]], out=region)
        x += adv
    img = Image.fromarray(canvas)
    # shear about the baseline, then a small rotation about the centre (output -> input map)
    k = rng.uniform(-0.15, 0.35)
    theta = np.deg2rad(rng.uniform(-0.6, 0.6))
    cx, cy = width / 2, baseline
    cos, sin = np.cos(theta), np.sin(theta)
    # input = S^-1 R^-1 (out - centre) + centre, with S: x -= k (y - cy) (k > 0: italic)
    a, b = cos, sin
    d, e = -sin, cos
    a2, b2 = a + k * d, b + k * e
    c0 = cx - a2 * cx - b2 * cy
    f0 = cy - d * cx - e * cy
    img = img.transform(img.size, Image.AFFINE, (a2, b2, c0, d, e, f0), Image.BILINEAR)
    box = img.getbbox()
    if box is None:  # nothing drawn (a line of spaces)
        box = (margin, 0, margin + 8, height)
    drift = int(abs(sin) * (box[2] - box[0]) / 2)  # the rotation's rise at the line's ends
    top = baseline - ascent - drift - int(rng.uniform(0.0, 0.25) * size)
    bottom = baseline + descent + drift + int(rng.uniform(0.0, 0.25) * size)
    left = box[0] - int(rng.integers(1, 13))
    right = box[2] + int(rng.integers(1, 13))
    img = img.crop((left, top, right, bottom))
    scale = HEIGHT / (bottom - top)
    out_w = max(8, round((right - left) * scale * rng.uniform(0.85, 1.15)))
    img = img.resize((out_w, HEIGHT), Image.BILINEAR)
    return degrade(np.asarray(img, dtype=np.float32) / 255.0, rng)


@functools.cache
def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 handwritten digits: images float32 (N, 8, 8) in [0, 1], labels (N,)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


def digit_split(seed: int = 0) -> dict[str, np.ndarray]:
    """Indices of the digit images by split, fixed: 20% test, 10% validation, the rest train."""
    n = len(digit_images()[1])
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_val = n // 5, n // 10
    return {
        "test": order[:n_test],
        "val": order[n_test : n_test + n_val],
        "train": order[n_test + n_val :],
    }


def render_digits(pool: np.ndarray, rng: Generator) -> tuple[np.ndarray, str, list[int]]:
    """A line of 3-12 digit images drawn from the indices ``pool``: (image, text, images used)."""
    from PIL import Image

    images, labels = digit_images()
    picks = rng.choice(pool, size=int(rng.integers(3, 13)))
    pieces, x = [], int(rng.integers(2, 10))
    height = int(rng.integers(16, 31))
    for i in picks:
        h = int(np.clip(height + rng.integers(-3, 4), 12, HEIGHT))
        w = max(6, round(h * rng.uniform(0.7, 1.1)))
        im = Image.fromarray((images[i] * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)
        y = int(rng.integers(0, HEIGHT - h + 1))
        pieces.append((x, y, np.asarray(im, dtype=np.float32) / 255.0))
        x += w + int(rng.integers(-1, 11))
    width = max(px + p.shape[1] for px, _, p in pieces) + int(rng.integers(2, 10))
    canvas = np.zeros((HEIGHT, width), np.float32)
    for px, py, p in pieces:
        region = canvas[py : py + p.shape[0], px : px + p.shape[1]]
        np.maximum(region, p, out=region)
    text = "".join(str(int(labels[i])) for i in picks)
    return degrade(canvas, rng), text, [int(i) for i in picks]


# ---- the lines of text -------------------------------------------------------------------------
VAL_WORKS = ("MACBETH",)
TEST_WORKS = ("THE TEMPEST", "TWELFTH NIGHT; OR, WHAT YOU WILL")
WORK_TITLE = re.compile(r"^(.+)\n\nby William Shakespeare\n", re.M)


def split_lines(text: str, max_chars: int) -> list[str]:
    """The text's lines, white space collapsed, empty ones dropped, cut at word boundaries into
    pieces of at most ``max_chars`` characters (a longer word is cut where it must be)."""
    out = []
    for raw in text.split("\n"):
        words = raw.split()
        line = ""
        for word in words:
            while len(word) > max_chars:
                if line:
                    out.append(line)
                    line = ""
                out.append(word[:max_chars])
                word = word[max_chars:]
            if not word:
                continue
            if line and len(line) + 1 + len(word) > max_chars:
                out.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        if line:
            out.append(line)
    return out


def split_works(text: str) -> dict[str, str]:
    """The bundled Shakespeare by split: the works of VAL_WORKS, TEST_WORKS and the rest."""
    starts = [(m.start(), m.group(1).strip()) for m in WORK_TITLE.finditer(text)]
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for i, (start, title) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
        split = "val" if title in VAL_WORKS else "test" if title in TEST_WORKS else "train"
        parts[split].append(text[start:end])
    return {k: "".join(v) for k, v in parts.items()}


def split_file(text: str) -> dict[str, str]:
    """A user's text by split, by position: the last 10% of its lines are the test split, the
    5% before them validation (contiguous, so no nearby line leaks into training)."""
    lines = text.split("\n")
    n = len(lines)
    a, b = n - n // 10 - n // 20, n - n // 10
    return {
        "train": "\n".join(lines[:a]),
        "val": "\n".join(lines[a:b]),
        "test": "\n".join(lines[b:]),
    }


def check_characters(text: str, where: str, train: list[str], holdout: list[str]) -> None:
    """Refuse a character that cannot be drawn (see the module docstring), with its line."""
    seen: set[str] = set()
    drawable = set().union(*(coverage(f) for f in train))
    for number, line in enumerate(text.split("\n"), 1):
        for c in set(line) - seen:
            seen.add(c)
            name = f"{c!r} (U+{ord(c):04X})"
            if c != "\t" and unicodedata.category(c)[0] == "C":
                raise UserError(
                    f"{where} line {number}: control or format character U+{ord(c):04X}: "
                    "OCR reads printed characters and this one has no glyph to draw"
                )
            if c not in drawable and not c.isspace():
                raise UserError(
                    f"{where} line {number}: character {name} is in none of the training fonts "
                    "(the TrueType fonts matplotlib ships): it cannot be drawn"
                )
            for f in holdout:
                if c not in coverage(f) and not c.isspace():
                    raise UserError(
                        f"{where} line {number}: character {name} is not in the held-out font "
                        f"{f!r}: choose others with --data.holdout_fonts"
                    )


def corpus_lines(
    path: str | None, max_chars: int, train: list[str], holdout: list[str]
) -> dict[str, list[str]]:
    """The lines of each split (train, val, test) of the bundled Shakespeare (split by work) or
    of the UTF-8 file ``path`` (split by position), checked as ``check_characters`` says."""
    from rnnkit.data.reading import default_corpus_text, read_text

    if path is None:
        text, where = default_corpus_text(), "the bundled corpus"
        parts = split_works(text)
    else:
        text, where = read_text(path), str(path)
        parts = split_file(text)
    check_characters(text, where, train, holdout)
    lines = {k: split_lines(v, max_chars) for k, v in parts.items()}
    for k, v in lines.items():
        if len(v) < 2:
            raise UserError(f"{where}: too few non-empty lines for a {k} split (need >= 40 lines)")
    for v in lines.values():
        for line in v:
            if not fonts_for(line, train):
                raise UserError(
                    f"{where}: no single training font draws every character of {line!r}"
                )
    return lines


def save_line(text: str, path, font: str = "DejaVu Serif", seed: int = 0) -> Path:
    """``text`` rendered as a training line is (seeded), saved as an image (PNG, JPEG: by the
    suffix) with dark ink on a light background, as a scanned line would be: a test input for
    ``rnnkit predict``."""
    from PIL import Image

    check_fonts([font], "font")
    missing = sorted(set(text) - coverage(font))
    if missing:
        raise UserError(f"font {font!r} cannot draw {''.join(missing)!r}")
    img = render_text(text, font, np.random.default_rng(seed))
    Image.fromarray(np.round(255 * (1.0 - img)).astype(np.uint8)).save(path)
    return Path(path)
