"""The fixed training/validation split of a corpus's token ids, by contiguous blocks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from rnnkit.data.reading import PathLike
from rnnkit.errors import UserError
from rnnkit.files import atomic_write

Ranges = list[tuple[int, int]]


def split_blocks(
    n: int, block_size: int = 50_000, every: int = 20, min_val: int = 256
) -> tuple[Ranges, Ranges]:
    """The fixed training/validation split of ``n`` tokens, by contiguous blocks.

    The corpus is cut into blocks of ``block_size`` tokens (the last may be shorter); block
    ``k`` is validation if ``k % every == every - 1``, training otherwise: 1 block in 20 (5 %)
    by default, spread through the corpus, and the same for every run on the same corpus.
    Consecutive training blocks are merged into one range.

    A corpus shorter than ``every`` whole blocks (``n < every * block_size``: a million tokens
    by default) has no whole validation block under that rule. It is split instead into
    training = the first part and validation = the last
    ``max(ceil(n / every), min(min_val, n // 4))`` tokens: 5 %, but at least ``min_val`` tokens
    as long as that leaves training three quarters of the corpus.

    Args:
        n: the number of tokens.
        block_size: tokens per block.
        every: one block in ``every`` is validation.
        min_val: the fewest validation tokens wanted when the corpus is shorter than ``every``
            blocks.

    Returns:
        (train_ranges, val_ranges): lists of half-open ``(start, stop)`` index ranges, in
        order, disjoint, together covering ``range(n)``.
    """
    if block_size < 1 or every < 2:
        raise ValueError(f"need block_size >= 1 and every >= 2, got {block_size}, {every}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    n_blocks = math.ceil(n / block_size)
    if n < every * block_size:
        n_val = max(math.ceil(n / every), min(min_val, n // 4))
        train = [(0, n - n_val)] if n - n_val > 0 else []
        val = [(n - n_val, n)] if n_val > 0 else []
        return train, val
    train: Ranges = []
    val: Ranges = []
    for k in range(n_blocks):
        start, stop = k * block_size, min((k + 1) * block_size, n)
        target = val if k % every == every - 1 else train
        if target and target[-1][1] == start:
            target[-1] = (target[-1][0], stop)
        else:
            target.append((start, stop))
    return train, val


def _is_whole_npy_memmap(ids: np.ndarray) -> bool:
    """Whether ``ids`` is all of a ``.npy`` file, memory-mapped (not a slice of one)."""
    if not isinstance(ids, np.memmap) or ids.filename is None:
        return False
    try:
        whole = np.load(ids.filename, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return whole.shape == ids.shape and whole.dtype == ids.dtype


def _gather(ids: np.ndarray, ranges: Ranges, out_path: Path | None, what: str) -> np.ndarray:
    if len(ranges) == 1:
        a, b = ranges[0]
        return ids[a:b]
    total = sum(b - a for a, b in ranges)
    if out_path is None:
        return np.concatenate([np.asarray(ids[a:b]) for a, b in ranges])
    if out_path.is_file():
        try:
            cached = np.load(out_path, mmap_mode="r")
            if cached.shape == (total,) and cached.dtype == ids.dtype:
                return cached
        except (OSError, ValueError):
            pass

    def write_part(tmp: Path) -> None:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=ids.dtype, shape=(total,))
        pos = 0
        for a, b in ranges:
            out[pos : pos + b - a] = ids[a:b]
            pos += b - a
        out.flush()

    atomic_write(out_path, write_part, what=what)  # a UserError naming ``what``
    return np.load(out_path, mmap_mode="r")


def apply_split(
    ids: np.ndarray,
    block_size: int = 50_000,
    every: int = 20,
    *,
    min_val: int = 256,
    min_tokens: int = 2,
    name: str = "corpus",
    cache_dir: PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split token ids into training and validation by ``split_blocks``.

    A part that is one contiguous range is returned as a view (no copy; the case for both parts
    of a corpus shorter than ``every`` blocks). Otherwise the ranges are concatenated: in memory
    for an ordinary array (or a slice of a memmap); for the whole ``np.memmap`` of a ``.npy``
    file (a corpus from ``encode_corpus``), into ``<stem>.train-<block_size>-<every>.npy`` (and
    ``.val-``) in ``cache_dir`` (default: beside the memmap's file), returned read-only
    memory-mapped and reused by later calls, so RAM holds neither part.

    Args:
        ids: 1-D token ids.
        block_size: tokens per block (``split_blocks``).
        every: one block in ``every`` is validation.
        min_val: see ``split_blocks``.
        min_tokens: the fewest tokens each part must have (e.g. ``bptt_len + 1``, or a batch's
            worth; at least 2: one input and its next-token target).
        name: what the ids came from (a file name), for error messages.
        cache_dir: where concatenated parts of a memmap go.

    Returns:
        (train_ids, val_ids).

    Raises:
        UserError: if either part would have fewer than ``min_tokens`` tokens.
    """
    n = len(ids)
    min_tokens = max(2, min_tokens)
    train, val = split_blocks(n, block_size, every, min_val)
    n_train = sum(b - a for a, b in train)
    n_val = n - n_train
    if n_train < min_tokens or n_val < min_tokens:
        raise UserError(
            f"{name}: {n} tokens are too few to split into training and validation "
            f"({n_train} and {n_val}); each part needs at least {min_tokens}"
        )
    out_dir: Path | None = None
    stem = ""
    if _is_whole_npy_memmap(ids):
        out_dir = Path(cache_dir) if cache_dir is not None else Path(ids.filename).parent
        stem = Path(ids.filename).stem

    def target(part: str) -> Path | None:
        return out_dir / f"{stem}.{part}-{block_size}-{every}.npy" if out_dir else None

    try:
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
        what = f"the split of {name} in {out_dir}"
        return _gather(ids, train, target("train"), what), _gather(ids, val, target("val"), what)
    except OSError as e:
        reason = e.strerror or e
        raise UserError(f"cannot write the split of {name} in {out_dir}: {reason}") from None
