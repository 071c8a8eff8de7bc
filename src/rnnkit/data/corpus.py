"""A corpus file -> vocabulary -> token ids, memory-mapped, for corpora of any size.

A file is counted in one streaming pass (``rnnkit.data.reading.iter_text``) and encoded in a
second pass straight into a ``.npy`` file in a cache directory, returned memory-mapped,
read-only, and reused by later calls with the same file and options.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np

from rnnkit.data.reading import (
    CHUNK_SIZE,
    PathLike,
    _check_file,
    default_corpus_text,
    iter_line_chunks,
    iter_text,
)
from rnnkit.data.vocab import (
    _WORD_OR_NEWLINE_RE,
    EOS,
    Level,
    Vocab,
    _codepoints,
    _preview,
    _tokens_with_eos,
)
from rnnkit.errors import UserError
from rnnkit.files import atomic_write

WORD_CHUNK_SIZE = 1 << 22
"""Word level: at most this many bytes at a time (4 MiB), for each token becomes a Python str."""

_CACHE_FORMAT = 1  # bump when the cached .npy layout or the tokenisation changes


def id_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds ids below ``vocab_size`` (uint8/uint16, else int32).

    Args:
        vocab_size: the number of tokens.

    Returns:
        The dtype.
    """
    if vocab_size <= 1 << 8:
        return np.dtype(np.uint8)
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


def default_cache_dir() -> Path:
    """Where encoded corpora go when no ``cache_dir`` is given.

    ``$RNNKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/rnnkit``, else ``~/.cache/rnnkit``.

    Returns:
        The directory (not created).
    """
    if os.environ.get("RNNKIT_CACHE_DIR"):
        return Path(os.environ["RNNKIT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rnnkit"


def _count_chars(path: Path, chunk_size: int) -> tuple[np.ndarray, int]:
    counts = np.zeros(128, dtype=np.int64)
    total = 0
    for piece in iter_text(path, chunk_size):
        cps = _codepoints(piece)
        top = int(cps.max()) + 1
        if top > len(counts):
            counts = np.concatenate([counts, np.zeros(top - len(counts), dtype=np.int64)])
        for start in range(0, len(cps), 1 << 22):  # bincount copies to int64: 32 MB at a time
            part = cps[start : start + (1 << 22)]
            counts[: int(part.max()) + 1] += np.bincount(part)
        total += len(cps)
    return counts, total


def _count_words(path: Path, chunk_size: int) -> tuple[Counter[str], int]:
    counts: Counter[str] = Counter()
    total = 0
    for piece in iter_line_chunks(path, min(chunk_size, WORD_CHUNK_SIZE)):
        tokens = _WORD_OR_NEWLINE_RE.findall(piece)
        counts.update(tokens)
        total += len(tokens)
    counts[EOS] = counts.pop("\n", 0)
    return counts, total


def _cache_key(path: Path, level: str, vocab: Vocab | None, max_vocab: int, min_count: int) -> str:
    st = path.stat()
    spec = {
        "format": _CACHE_FORMAT,
        "path": str(path.resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "level": level,
        "vocab": vocab.to_dict() if vocab is not None else None,
        "max_vocab": max_vocab if level == "word" and vocab is None else None,
        "min_count": min_count if level == "word" and vocab is None else None,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _load_cached(npy: Path, meta: Path) -> tuple[np.memmap, Vocab] | None:
    if not (npy.is_file() and meta.is_file()):
        return None
    try:
        vocab = Vocab.from_dict(json.loads(meta.read_text(encoding="utf-8")))
        ids = np.load(npy, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if ids.ndim != 1 or ids.dtype != id_dtype(len(vocab)):
        return None
    return ids, vocab


def encode_corpus(
    path: PathLike | None,
    level: Level = "char",
    vocab: Vocab | None = None,
    *,
    max_vocab: int = 50_000,
    min_count: int = 1,
    cache_dir: PathLike | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> tuple[np.ndarray, Vocab]:
    """A corpus as token ids, memory-mapped from disk for files of any size.

    For a file: a first streaming pass counts characters (or words: ``tokenize_words`` with each
    line break as ``<eos>``) and builds the vocabulary, unless one is given; a second pass encodes
    chunk by chunk into ``cache_dir/<name>-<level>-<key>.npy`` (ids as uint8 for up to 256
    tokens, uint16 up to 65,536, else int32), written under a temporary name and renamed, with
    the vocabulary beside it as ``.vocab.json``. The key hashes the file's path, size and
    modification time, the level and the vocabulary options, so a second call with the same
    file and options reuses the cached array without reading the text again. The text is never
    held whole in memory, nor as a Python list.

    For ``path=None``, the bundled corpus (``default_corpus_text``) is encoded in memory.

    Args:
        path: a UTF-8 text file, or None for the bundled corpus.
        level: "char" or "word".
        vocab: a vocabulary to encode with (e.g. the training vocabulary, for other text);
            built from this corpus if None.
        max_vocab: word level: the most tokens in the built vocabulary (specials included).
            Ignored at the character level, which keeps every character.
        min_count: word level: the fewest occurrences for a word to enter the vocabulary.
        cache_dir: where the ``.npy`` goes; default ``default_cache_dir()``.
        chunk_size: bytes read at a time.

    Returns:
        (ids, vocab): a 1-D array of ids (a read-only ``np.memmap`` for a file, an int64 array
        for the bundled corpus) and the vocabulary.

    Raises:
        UserError: for an unreadable file (see ``read_text``), a ``vocab`` of another level,
            characters of the file missing from a given character ``vocab`` (named, with the
            file), or a corpus with no tokens.
    """
    if level not in ("char", "word"):
        raise UserError(f"level must be 'char' or 'word', got {level!r}")
    if vocab is not None and vocab.level != level:
        raise UserError(f"cannot encode at the {level} level with a {vocab.level}-level vocabulary")

    if path is None:
        text = default_corpus_text()
        if vocab is None:
            if level == "char":
                vocab = Vocab.from_chars(text)
            else:
                vocab = Vocab.from_words(Counter(_tokens_with_eos(text)), max_vocab, min_count)
        try:
            return vocab.encode(text), vocab
        except UserError as e:
            raise UserError(f"bundled corpus: {e}") from None

    path = Path(path)
    _check_file(path)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = _cache_key(path, level, vocab, max_vocab, min_count)
    stem = re.sub(r"[^\w.-]", "_", path.name)
    npy = cache / f"{stem}-{level}-{key}.npy"
    meta = cache / f"{stem}-{level}-{key}.vocab.json"
    cached = _load_cached(npy, meta)
    if cached is not None:
        return cached

    # Pass 1: count.
    if level == "char":
        counts, total = _count_chars(path, chunk_size)
        seen = "".join(chr(c) for c in np.flatnonzero(counts))
        if vocab is None:
            vocab = Vocab.from_chars(seen)
        else:
            bad = [c for c in seen if c not in vocab.stoi]
            if bad:
                raise UserError(
                    f"{path}: {len(bad)} character(s) never seen in training, not in the "
                    f"vocabulary of {len(vocab)}: {_preview(bad)}"
                )
    else:
        word_counts, total = _count_words(path, chunk_size)
        if vocab is None:
            vocab = Vocab.from_words(word_counts, max_vocab, min_count)
        del word_counts
    if total == 0:
        raise UserError(f"{path}: no {level} tokens in the file (only white space?)")

    # Pass 2: encode into the memmap.
    try:
        return _encode_into(path, level, vocab, total, npy, meta, chunk_size)
    except OSError as e:  # the cache directory is a file, unwritable, full, ...
        raise UserError(f"cannot write the encoded corpus {npy}: {e.strerror or e}") from None


def _encode_into(
    path: Path, level: str, vocab: Vocab, total: int, npy: Path, meta: Path, chunk_size: int
) -> tuple[np.ndarray, Vocab]:
    def write_ids(tmp: Path) -> None:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=id_dtype(len(vocab)), shape=(total,))
        pos = 0
        pieces = (
            iter_text(path, chunk_size)
            if level == "char"
            else iter_line_chunks(path, min(chunk_size, WORD_CHUNK_SIZE))
        )
        for piece in pieces:
            ids = vocab._char_ids(piece) if level == "char" else vocab.encode(piece)
            if pos + len(ids) > total:
                raise UserError(f"{path}: the file changed while it was being read")
            out[pos : pos + len(ids)] = ids
            pos += len(ids)
        if pos != total:
            raise UserError(f"{path}: the file changed while it was being read")
        out.flush()

    atomic_write(npy, write_ids, what=f"the encoded corpus {npy}")
    meta_text = json.dumps(vocab.to_dict(), ensure_ascii=False)
    atomic_write(meta, meta_text, what=f"the encoded corpus {meta}")
    return np.load(npy, mmap_mode="r"), vocab
