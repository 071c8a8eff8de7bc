"""Scenes and their captions for ``rnnkit train caption``: Fashion-MNIST items on a 3x3 grid.

A scene is an 84x84 grey canvas cut into a 3x3 grid of 28x28 cells; 2-4 Fashion-MNIST images
(``fashion_data``: the IDX reader) are put into distinct cells, each scaled (20-28 pixels), moved
off the cell's centre (jitter of up to ``JITTER`` pixels, kept inside the canvas) and dimmed
(contrast 0.6-1), and pasted by maximum (white garments on black). A scene is a pure function of
its seed, its split and its index (``make_scene``).

Its caption names every item with its cell, in reading order (row by row, left to right), in
one of several phrasings (``phrasings``):

- ``list``:     "a sneaker in the top left , a bag on the left and a dress on the right"
- ``there``:    "there is a sneaker in the top left , a bag on the left and ..."
- ``fronted``:  "in the top left a sneaker , on the left a bag and on the right a dress"

each either with absolute positions only, or with an item that is in the cell next to the
previous one placed relative to it ("a bag below it", "a coat to its right"). ``parse``
reads the (item, cell) pairs back out of any of them (and out of a model's output): the clauses
between "," and "and", each with one item name and one position (relative ones resolved against
the previous clause's cell).

Splits (fixed): training scenes use the training images minus ``data.val_size`` held out for
validation (``fashion_data.split``); ``test`` and ``compositional`` scenes use only the 10,000
test images. ``HELD_OUT`` is one (item, cell) pair per kind of item never put into a training,
validation or test scene; every ``compositional`` scene holds at least one of them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.errors import UserError
from rnnkit.tasks.fashion_data import SIDE as CELL
from rnnkit.tasks.fashion_data import load_split, split

GRID = 3
CANVAS = GRID * CELL  # 84
JITTER = 3  # pixels an item may be moved off its cell's centre, each way
SCALES = (20, 28)  # an item's side in pixels: from, to (inclusive)
CONTRAST = (0.6, 1.0)
ITEMS = ("t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
         "bag", "boot")  # fmt: skip
ARTICLE = {"trousers": "some"}  # else "a"
CELLS = ("top left", "top", "top right", "left", "centre", "right", "bottom left", "bottom",
         "bottom right")  # fmt: skip
WHERE = {
    "top": "at the top",
    "bottom": "at the bottom",
    "left": "on the left",
    "right": "on the right",
    "centre": "in the centre",
}  # else "in the " + name
# this item's cell from the previous one's, in (row, column) steps, as a phrase (in reading
# order the next item is never above or to the left of the previous one)
RELATIVE = {(1, 0): "below it", (0, 1): "to its right"}
STYLES = ("list", "there", "fronted")
# one (item, cell) pair per kind of item, never in a training scene: item k in cell (7k+2) % 9
HELD_OUT = frozenset((k, (7 * k + 2) % 9) for k in range(len(ITEMS)))
SPLITS = ("train", "val", "test", "compositional")
_SPLIT_CODE = {name: i for i, name in enumerate(SPLITS)}
MIN_ITEMS, MAX_ITEMS = 2, 4


@dataclass(frozen=True)
class Scene:
    """A picture, what is in it (``items``: (item, cell), ... in reading order) and the caption
    it was given (one of its ``phrasings``, chosen at random)."""

    image: Tensor  # uint8 (84, 84)
    items: tuple[tuple[int, int], ...]
    caption: str


# ---- captions ----------------------------------------------------------------------------------
def position(cell: int) -> str:
    name = CELLS[cell]
    return WHERE.get(name, f"in the {name}")


def noun(item: int) -> str:
    name = ITEMS[item]
    return f"{ARTICLE.get(name, 'a')} {name}"


def caption(items: tuple[tuple[int, int], ...], style: str, relative: bool) -> str:
    """The caption of ``items`` (in reading order) in one phrasing; tokens are space-separated."""
    clauses = []
    for k, (item, cell) in enumerate(items):
        where = position(cell)
        if relative and k:
            step = (cell // GRID - items[k - 1][1] // GRID, cell % GRID - items[k - 1][1] % GRID)
            where = RELATIVE.get(step, where)
        if style == "fronted":
            clauses.append(f"{where} {noun(item)}")
        else:
            clauses.append(f"{noun(item)} {where}")
    text = " , ".join(clauses[:-1]) + " and " + clauses[-1]
    return f"there is {text}" if style == "there" else text


def phrasings(items: tuple[tuple[int, int], ...]) -> list[str]:
    """Every phrasing of a scene: each style, absolute and relative (6, some maybe equal)."""
    return [caption(items, style, relative) for style in STYLES for relative in (False, True)]


def words() -> list[str]:
    """Every word a caption can hold (the fixed vocabulary)."""
    text = " ".join([*map(position, range(len(CELLS))), *map(noun, range(len(ITEMS)))])
    return sorted({*text.split(), *" ".join(RELATIVE.values()).split(), ",", "and", "there", "is"})


_NAMES = {name: k for k, name in enumerate(ITEMS)}
_ABSOLUTE = {tuple(position(c).split()[2:]): c for c in range(len(CELLS))}  # ("top", "left")
_RELATIVE = {phrase: step for step, phrase in RELATIVE.items()}


def parse(text: str) -> list[tuple[int, int]]:
    """The (item, cell) pairs a caption states, in its order; clauses that name no known item
    or no position (a model's garbled output) are skipped, so this never raises."""
    tokens = text.replace(",", " , ").split()
    clauses, current = [], []
    for t in tokens:
        if t in (",", "and"):
            clauses.append(current)
            current = []
        else:
            current.append(t)
    clauses.append(current)
    out: list[tuple[int, int]] = []
    previous = None
    for clause in clauses:
        items = [_NAMES[t] for t in clause if t in _NAMES]
        cell = _cell_of(clause, previous)
        if len(items) == 1 and cell is not None:
            out.append((items[0], cell))
            previous = cell
    return out


def _cell_of(clause: list[str], previous: int | None) -> int | None:
    joined = " ".join(clause)
    for phrase, (dr, dc) in _RELATIVE.items():
        if phrase in joined:
            if previous is None:
                return None
            row, col = previous // GRID + dr, previous % GRID + dc
            return row * GRID + col if 0 <= row < GRID and 0 <= col < GRID else None
    for i, t in enumerate(clause[:-2]):
        if t in ("in", "at", "on") and clause[i + 1] == "the":
            for n in (2, 1):
                cell = _ABSOLUTE.get(tuple(clause[i + 2 : i + 2 + n]))
                if cell is not None:
                    return cell
    return None


# ---- scenes ------------------------------------------------------------------------------------
@functools.cache
def pools(path: str | None, val_size: int, split_seed: int) -> dict[str, tuple[Tensor, Tensor]]:
    """The images (uint8 (N, 28, 28), labels) each split draws its items from."""
    from types import SimpleNamespace

    images, labels = load_split(path, "train")
    options = SimpleNamespace(split_seed=split_seed, val_size=val_size, train_size=0)
    train, val = split(options, len(images))
    test = load_split(path, "test")
    return {
        "train": (images[train], labels[train]),
        "val": (images[val], labels[val]),
        "test": test,
        "compositional": test,
    }


def choose_items(rng: np.random.Generator, labels: Tensor, split_name: str) -> list[tuple]:
    """(image index, item, cell) of a scene's items in reading order; held-out pairs only in
    (and at least one in every) compositional scene."""
    n = int(rng.integers(MIN_ITEMS, MAX_ITEMS + 1))
    while True:
        cells = sorted(rng.choice(GRID * GRID, n, replace=False).tolist())
        picks = rng.integers(0, len(labels), n).tolist()
        pairs = [(int(labels[i]), c) for i, c in zip(picks, cells, strict=True)]
        held = sum(p in HELD_OUT for p in pairs)
        if (held > 0) == (split_name == "compositional"):
            return [(i, item, c) for i, (item, c) in zip(picks, pairs, strict=True)]


def render(rng: np.random.Generator, images: Tensor, chosen: list[tuple]) -> Tensor:
    """The canvas uint8 (84, 84) with each chosen image scaled, jittered, dimmed, pasted."""
    canvas = torch.zeros(CANVAS, CANVAS)
    for index, _, cell in chosen:
        side = int(rng.integers(SCALES[0], SCALES[1] + 1))
        item = images[index].float()[None, None]
        if side != CELL:
            item = F.interpolate(item, size=(side, side), mode="bilinear", antialias=True)
        item = item[0, 0] * float(rng.uniform(*CONTRAST))
        top = (cell // GRID) * CELL + (CELL - side) // 2 + int(rng.integers(-JITTER, JITTER + 1))
        left = (cell % GRID) * CELL + (CELL - side) // 2 + int(rng.integers(-JITTER, JITTER + 1))
        top, left = min(max(top, 0), CANVAS - side), min(max(left, 0), CANVAS - side)
        region = canvas[top : top + side, left : left + side]
        torch.maximum(region, item, out=region)
    return canvas.round().clamp(0, 255).to(torch.uint8)


def make_scene(split_name: str, index: int, seed: int, pool: tuple[Tensor, Tensor]) -> Scene:
    """Scene ``index`` of ``split_name``: a pure function of (split, index, seed, pool)."""
    rng = np.random.default_rng([seed, _SPLIT_CODE[split_name], index])
    images, labels = pool
    chosen = choose_items(rng, labels, split_name)
    items = tuple((item, c) for _, item, c in chosen)
    image = render(rng, images, chosen)
    options = phrasings(items)
    return Scene(image, items, options[int(rng.integers(len(options)))])


def scene_batch(scenes: list[Scene]) -> Tensor:
    """Scenes as a float batch (B, 1, 84, 84) in [0, 1]."""
    return torch.stack([s.image for s in scenes]).unsqueeze(1).float().div_(255.0)


# ---- pictures ----------------------------------------------------------------------------------
def read_scene(path: str | Path) -> Tensor:
    """A picture file as a scene image uint8 (84, 84): made grey; any other size, a file that
    is not a picture or no file is one UserError line naming it."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file" + (" (a directory)" if path.is_dir() else ""))
    try:
        with Image.open(path) as picture:
            picture.load()
            size = picture.size
            grey = picture.convert("L")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UserError(f"{path}: not a picture Pillow can read (PNG, JPEG, ...): {e}") from None
    if size != (CANVAS, CANVAS):
        raise UserError(
            f"{path}: the picture is {size[0]}x{size[1]} pixels; a scene is {CANVAS}x{CANVAS} "
            "(make one with rnnkit caption-scene)"
        )
    return torch.frombuffer(bytearray(grey.tobytes()), dtype=torch.uint8).reshape(CANVAS, CANVAS)


def write_scene(image: Tensor, path: str | Path) -> None:
    from PIL import Image

    picture = Image.frombytes("L", (CANVAS, CANVAS), bytes(image.contiguous().numpy()))
    try:
        picture.save(path)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot write the picture ({e})") from None
