"""Text files -> vocabulary -> token ids, for corpora of any size.

The first stage of the main job (DESIGN.md, "The main job, as data flows"): a UTF-8 text file
becomes a vocabulary (characters or words) and a 1-D array of token ids. Large files are never
held whole in memory: they are decoded in chunks (an incremental UTF-8 decoder carries a character
split across chunks), counted in one pass and encoded in a second pass straight into a ``.npy``
file that is returned memory-mapped, read-only. The training/validation split is a fixed rule on
contiguous blocks of that array (``split_blocks``).

Reading rules, the same for every path (``read_text``, ``iter_text``, ``encode_corpus``):
UTF-8 only; a leading byte-order mark is dropped; Windows line ends ``\\r\\n`` become ``\\n``
(a lone ``\\r`` is kept). Problems are ``UserError``s of one line that name the file.
"""

from __future__ import annotations

import codecs
import functools
import gzip
import hashlib
import itertools
import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rnnkit.errors import UserError

Level = Literal["char", "word"]
PathLike = str | os.PathLike[str]

CHUNK_SIZE = 1 << 24
"""Bytes read (and decoded, counted, encoded) at a time from a corpus file: 16 MiB."""

WORD_CHUNK_SIZE = 1 << 22
"""Word level: at most this many bytes at a time (4 MiB), for each token becomes a Python str."""

BINARY_SNIFF = 8192
"""A NUL byte in the first this many bytes gets the UTF-16 hint; one anywhere marks a file as
binary (every chunk is searched: ``bytes.find`` costs little beside decoding)."""

UNK = "<unk>"
EOS = "<eos>"

DEFAULT_CORPUS = "corpora/shakespeare.txt.gz"
"""The bundled corpus, relative to the ``rnnkit.data`` package (see corpora/PROVENANCE.md)."""

_WORD = r"\w+(?:['’]\w+)*|[^\w\s]"
_WORD_RE = re.compile(_WORD)
_WORD_OR_NEWLINE_RE = re.compile(_WORD + r"|\n")

_CACHE_FORMAT = 1  # bump when the cached .npy layout or the tokenisation changes


# ---------------------------------------------------------------------------------------------
# Reading


def _check_file(path: Path) -> None:
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a UTF-8 text file")
    if not path.is_file():  # a FIFO would block the reader, then be empty for the second pass
        raise UserError(
            f"{path}: is not a regular file (a pipe, socket or device), expected a UTF-8 text file"
        )
    try:
        size = path.stat().st_size
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror or e}") from None
    if size == 0:
        raise UserError(f"{path}: is empty, expected UTF-8 text")


def _iter_decoded(path: Path, chunk_size: int) -> Iterator[str]:
    """Decoded pieces of a file, validated; BOM and \\r\\n not yet handled."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    consumed = 0  # bytes handed to the decoder so far
    newlines = 0  # b"\n" among them
    try:
        f = open(path, "rb")
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror or e}") from None
    with f:
        while True:
            try:
                chunk = f.read(chunk_size)
            except OSError as e:
                raise UserError(f"{path}: cannot read: {e.strerror or e}") from None
            final = not chunk
            nul = chunk.find(b"\0")
            if nul >= 0:  # anywhere in the file: a NUL is no character of a text
                head = chunk[:2] if consumed == 0 else b""
                hint = (
                    "; it looks like UTF-16 text, save it as UTF-8"
                    if head in (b"\xff\xfe", b"\xfe\xff") and nul < BINARY_SNIFF
                    else ", expected UTF-8 text"
                )
                raise UserError(
                    f"{path}: looks like a binary file (NUL byte at offset {consumed + nul})" + hint
                )
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(chunk, final=final)
            except UnicodeDecodeError as e:
                data = e.object
                offset = consumed - pending + e.start
                line = newlines + data.count(b"\n", pending, max(pending, e.start)) + 1
                raise UserError(
                    f"{path}: not valid UTF-8: byte 0x{data[e.start]:02x} at offset {offset} "
                    f"(line {line}); save the file as UTF-8"
                ) from None
            consumed += len(chunk)
            newlines += chunk.count(b"\n")
            if text:
                yield text
            if final:
                return


def iter_text(path: PathLike, chunk_size: int = CHUNK_SIZE) -> Iterator[str]:
    """Stream a UTF-8 text file as decoded pieces of about ``chunk_size`` bytes each.

    A character whose bytes straddle two chunks is decoded whole (an incremental decoder), so
    ``"".join(iter_text(p, n))`` is the same for every ``n``. Errors (missing file, directory,
    empty, binary, not UTF-8) are ``UserError``s naming the file; a decoding error gives the
    byte offset and line number of the first bad byte, and is raised when that chunk is reached.

    Args:
        path: the file.
        chunk_size: bytes read at a time.

    Returns:
        An iterator of non-empty strings.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    path = Path(path)
    _check_file(path)
    first = True
    carry = ""  # a trailing "\r" held back in case the next piece starts with "\n"
    for piece in _iter_decoded(path, chunk_size):
        if first:
            first = False
            if piece.startswith("\ufeff"):
                piece = piece[1:]
        piece = carry + piece
        carry = ""
        if piece.endswith("\r"):
            piece, carry = piece[:-1], "\r"
        piece = piece.replace("\r\n", "\n")
        if piece:
            yield piece
    if carry:
        yield carry


def read_text(path: PathLike) -> str:
    """Read a whole UTF-8 text file.

    The file is read and validated once, in chunks (see ``iter_text``).

    Args:
        path: the file.

    Returns:
        Its text (BOM dropped, ``\\r\\n`` -> ``\\n``).

    Raises:
        UserError: one line naming the file, if it is missing, a directory or another kind of
            non-regular file (a FIFO), empty, binary (a NUL byte anywhere, with its offset) or
            not UTF-8 (with the offset and line of the first bad byte).
    """
    return "".join(iter_text(path))


@functools.lru_cache(maxsize=1)
def default_corpus_text() -> str:
    """The bundled corpus: 19 of Shakespeare's works, 2.5 M characters (corpora/PROVENANCE.md).

    Returns:
        Its text.
    """
    data = resources.files("rnnkit.data").joinpath(DEFAULT_CORPUS).read_bytes()
    return gzip.decompress(data).decode("utf-8")


# ---------------------------------------------------------------------------------------------
# Tokens and vocabularies


def tokenize_words(line: str) -> list[str]:
    """Split a line into words and punctuation marks.

    The rule: case is kept; a word is a run of letters, digits and underscores, with inner
    apostrophes (``'`` or ``’``) kept inside it ("Perform'd", "o'er", "don't"); every other
    character that is not white space is a token of its own ("--" is two tokens, "'tis" is "'"
    then "tis"). White space only separates. The regex is ``\\w+(?:['’]\\w+)*|[^\\w\\s]``.

    Args:
        line: a line of text (a newline in it is white space here).

    Returns:
        Its tokens, in order.
    """
    return _WORD_RE.findall(line)


def _tokens_with_eos(text: str) -> list[str]:
    """Word tokens of a text, each line break becoming ``<eos>``."""
    return [EOS if t == "\n" else t for t in _WORD_OR_NEWLINE_RE.findall(text)]


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype="<u4")


def _preview(items: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(s) for s in items[:limit])
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return shown + more


@dataclass(eq=True)
class Vocab:
    """A vocabulary: token <-> id.

    Character vocabularies (``level="char"``) are the sorted set of characters seen in training,
    with no special tokens: an unseen character is an error, for the model has no way to read it.
    Word vocabularies (``level="word"``) start with ``<unk>`` (id 0: any word not in the
    vocabulary) and ``<eos>`` (id 1: the end of a line), then the words by count.

    Text <-> ids: at the character level every character is a token. At the word level the text
    is cut by ``tokenize_words`` and each line break ``"\\n"`` is ``<eos>``, both ways: a file
    whose lines all end with a newline has every line end with ``<eos>``, and ``decode`` joins
    tokens with single spaces and turns ``<eos>`` back into a line break.

    Attributes:
        tokens: id -> token.
        level: "char" or "word".
        unk_token: the token for unknown words ("<unk>"), or None (characters).
        eos_token: the end-of-line token ("<eos>"), or None (characters).
        stoi: token -> id.
    """

    tokens: list[str]
    level: Level = "char"
    unk_token: str | None = None
    eos_token: str | None = None
    stoi: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.level not in ("char", "word"):
            raise UserError(f"vocabulary level must be 'char' or 'word', got {self.level!r}")
        self.tokens = list(self.tokens)
        if not self.tokens:
            raise UserError("empty vocabulary: no tokens to build it from")
        if not all(isinstance(t, str) and t for t in self.tokens):
            raise UserError("vocabulary tokens must be non-empty strings")
        self.stoi = {t: i for i, t in enumerate(self.tokens)}
        if len(self.stoi) != len(self.tokens):
            dups = sorted(t for t, c in Counter(self.tokens).items() if c > 1)
            raise UserError(f"vocabulary has repeated tokens: {_preview(dups)}")
        for name in ("unk_token", "eos_token"):
            special = getattr(self, name)
            if special is not None and special not in self.stoi:
                raise UserError(f"vocabulary {name} {special!r} is not among its tokens")
        if self.level == "char":
            if self.unk_token is not None or self.eos_token is not None:
                raise UserError("a character vocabulary has no <unk> or <eos> token")
            if any(len(t) != 1 for t in self.tokens):
                raise UserError("a character vocabulary's tokens must be single characters")
            cps = np.array([ord(t) for t in self.tokens], dtype=np.int64)
            table = np.full(int(cps.max()) + 2, -1, dtype=np.int32)
            table[cps] = np.arange(len(cps))
            self._table = table
        elif self.unk_token is None:
            raise UserError("a word vocabulary needs an <unk> token")
        else:
            self._lookup = dict(self.stoi)  # stoi, and the line break as <eos>
            if self.eos_token is not None:
                self._lookup["\n"] = self.stoi[self.eos_token]

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_chars(cls, counter_or_text: Mapping[str, int] | Iterable[str]) -> Vocab:
        """A character vocabulary: every character seen, sorted by code point.

        Args:
            counter_or_text: a text, or a mapping (e.g. a ``Counter``) whose keys are characters
                (characters with a count of 0 or less are left out), or any iterable of them.

        Returns:
            The vocabulary; the same characters always give the same ids.
        """
        if isinstance(counter_or_text, str):
            chars = set(counter_or_text)
        elif isinstance(counter_or_text, Mapping):
            chars = {c for c, n in counter_or_text.items() if n > 0}
        else:
            chars = set(counter_or_text)
        if not chars:
            raise UserError("no characters to build a vocabulary from: the text is empty")
        return cls(sorted(chars), level="char")

    @classmethod
    def from_words(cls, counts: Mapping[str, int], max_size: int, min_count: int = 1) -> Vocab:
        """A word vocabulary: ``<unk>``, ``<eos>``, then the commonest words.

        Words are ordered by count (highest first), ties alphabetically (by code point), so the
        result is deterministic. Words seen fewer than ``min_count`` times are left out, and
        the list is cut so that the vocabulary, specials included, has at most ``max_size``
        tokens. Counts for the specials themselves are ignored.

        Args:
            counts: word -> count (e.g. a ``Counter`` of ``tokenize_words`` tokens).
            max_size: the most tokens the vocabulary may have, specials included (>= 2).
            min_count: the fewest times a word must occur to be kept.

        Returns:
            The vocabulary.
        """
        if max_size < 2:
            raise UserError(
                f"max vocabulary size must be at least 2 (<unk>, <eos>), got {max_size}"
            )
        kept = [(w, n) for w, n in counts.items() if n >= min_count and w not in (UNK, EOS)]
        kept.sort(key=lambda wn: (-wn[1], wn[0]))
        words = [w for w, _ in kept[: max_size - 2]]
        return cls([UNK, EOS, *words], level="word", unk_token=UNK, eos_token=EOS)

    # -- text <-> ids ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.tokens)

    def _char_ids(self, text: str) -> np.ndarray:
        table = self._table
        cps = _codepoints(text)
        ids = table[np.minimum(cps, np.uint32(len(table) - 1))]  # int32, not a copy in int64
        if (ids < 0).any():
            bad = [chr(c) for c in np.unique(cps[ids < 0])]
            raise UserError(
                f"{len(bad)} character(s) never seen in training, not in the vocabulary of "
                f"{len(self)}: {_preview(bad)}"
            )
        return ids

    def encode(self, text_or_tokens: str | Sequence[str]) -> np.ndarray:
        """Token ids of a text or of a list of tokens.

        Args:
            text_or_tokens: a text (characters, or words cut by ``tokenize_words`` with each
                ``"\\n"`` as ``<eos>``), or a sequence of tokens already cut.

        Returns:
            A 1-D int64 array.

        Raises:
            UserError: character level, if a character was never seen in training; the message
                names them (up to 10). At the word level unknown words become ``<unk>``.
        """
        if self.level == "char":
            text = text_or_tokens if isinstance(text_or_tokens, str) else "".join(text_or_tokens)
            return self._char_ids(text).astype(np.int64)
        if isinstance(text_or_tokens, str):
            tokens = _WORD_OR_NEWLINE_RE.findall(text_or_tokens)  # "\n" is looked up as <eos>
        else:
            tokens = text_or_tokens
        unk = self.stoi[self.unk_token]  # type: ignore[index]
        ids = map(self._lookup.get, tokens, itertools.repeat(unk))
        return np.fromiter(ids, dtype=np.int64, count=len(tokens))

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        """The text of a sequence of ids.

        Args:
            ids: token ids (a list, a 1-D array or tensor).

        Returns:
            Characters joined; or words joined by single spaces, with ``<eos>`` as a line break.
        """
        arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        if arr.size and (arr.min() < 0 or arr.max() >= len(self)):
            bad = int(arr[(arr < 0) | (arr >= len(self))][0])
            raise ValueError(f"token id {bad} out of range for a vocabulary of {len(self)}")
        tokens = self.tokens
        if self.level == "char":
            return "".join([tokens[i] for i in arr.tolist()])
        eos = self.stoi.get(self.eos_token) if self.eos_token is not None else None
        lines: list[str] = []
        words: list[str] = []
        for i in arr.tolist():
            if i == eos:
                lines.append(" ".join(words))
                words = []
            else:
                words.append(tokens[i])
        lines.append(" ".join(words))
        return "\n".join(lines)

    def unknown(self, text: str) -> list[str]:
        """The distinct tokens of a text that the vocabulary lacks.

        Args:
            text: a text.

        Returns:
            Characters (or words) not in the vocabulary, sorted.
        """
        pieces = set(text) if self.level == "char" else set(_tokens_with_eos(text))
        return sorted(p for p in pieces if p not in self.stoi)

    # -- JSON --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description; ``Vocab.from_dict`` rebuilds the same vocabulary."""
        return {
            "level": self.level,
            "tokens": list(self.tokens),
            "unk_token": self.unk_token,
            "eos_token": self.eos_token,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Vocab:
        """Rebuild a vocabulary from ``to_dict``'s output.

        Args:
            d: the dictionary (e.g. read from a checkpoint's JSON).

        Returns:
            The vocabulary.

        Raises:
            UserError: if keys are missing or unknown, or the tokens are not a list of strings.
        """
        if not isinstance(d, Mapping):
            raise UserError(f"vocabulary must be a JSON object, got {type(d).__name__}")
        keys = {"level", "tokens", "unk_token", "eos_token"}
        unknown = sorted(set(d) - keys)
        if unknown:
            raise UserError(f"vocabulary has unknown keys: {', '.join(unknown)}")
        if "tokens" not in d or "level" not in d:
            raise UserError("vocabulary needs 'level' and 'tokens'")
        tokens = d["tokens"]
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise UserError("vocabulary 'tokens' must be a list of strings")
        return cls(tokens, d["level"], d.get("unk_token"), d.get("eos_token"))


# ---------------------------------------------------------------------------------------------
# Whole corpora


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


def _iter_line_chunks(path: Path, chunk_size: int) -> Iterator[str]:
    """Pieces of the text that end at line breaks (the last piece may not)."""
    rest = ""
    for piece in iter_text(path, chunk_size):
        piece = rest + piece
        cut = piece.rfind("\n") + 1
        rest = piece[cut:]
        if cut:
            yield piece[:cut]
    if rest:
        yield rest


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
    for piece in _iter_line_chunks(path, min(chunk_size, WORD_CHUNK_SIZE)):
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
    npy.parent.mkdir(parents=True, exist_ok=True)
    tmp = npy.with_name(f"{npy.name}.tmp-{os.getpid()}")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=id_dtype(len(vocab)), shape=(total,))
        pos = 0
        pieces = (
            iter_text(path, chunk_size)
            if level == "char"
            else _iter_line_chunks(path, min(chunk_size, WORD_CHUNK_SIZE))
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
        del out
        os.replace(tmp, npy)
    finally:
        if tmp.exists():
            tmp.unlink()
    tmp_meta = meta.with_name(f"{meta.name}.tmp-{os.getpid()}")
    tmp_meta.write_text(json.dumps(vocab.to_dict(), ensure_ascii=False), encoding="utf-8")
    os.replace(tmp_meta, meta)
    return np.load(npy, mmap_mode="r"), vocab


# ---------------------------------------------------------------------------------------------
# Training / validation split

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


def _gather(ids: np.ndarray, ranges: Ranges, out_path: Path | None) -> np.ndarray:
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
    tmp = out_path.with_name(f"{out_path.name}.tmp-{os.getpid()}")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=ids.dtype, shape=(total,))
        pos = 0
        for a, b in ranges:
            out[pos : pos + b - a] = ids[a:b]
            pos += b - a
        out.flush()
        del out
        os.replace(tmp, out_path)
    finally:
        if tmp.exists():
            tmp.unlink()
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
        return _gather(ids, train, target("train")), _gather(ids, val, target("val"))
    except OSError as e:
        reason = e.strerror or e
        raise UserError(f"cannot write the split of {name} in {out_dir}: {reason}") from None
