"""Source/target pairs for sequence-to-sequence tasks: vocabularies, splits, padded batches.

- ``TokenVocab``: tokens <-> ids with four special tokens at fixed ids (<pad> 0, <unk> 1,
  <bos> 2, <eos> 3), over characters, space-separated symbols (phonemes) or words.
- ``held_out_bucket``: a fixed split by a hash of a key (a word, a date, a sentence), so that the
  same item always lands in the same split, whatever the order or size of the data.
- ``PairBatch`` / ``make_batch``: time-major padded batches with lengths; the decoder's input is
  <bos> y_1 .. y_n and its target y_1 .. y_n <eos>.
- ``BucketBatcher``: length-bucketed batches (similar lengths together, so little padding),
  reshuffled every epoch from a seed, so that a resumed run sees the same batches.
- ``read_tsv``: a tab-separated file of pairs.
"""

from __future__ import annotations

import hashlib
import random
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from rnnkit.data.reading import read_text
from rnnkit.data.vocab import tokenize_words
from rnnkit.errors import UserError

SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")
_CLOSING = re.compile(r" ([.,;:!?%)\]}»”’])")  # no space before these
_OPENING = re.compile(r"([(\[{«“¿¡]) ")  # nor after these
PAD, UNK, BOS, EOS = range(4)
Split = Literal["char", "space", "word"]


@dataclass
class TokenVocab:
    """Tokens <-> ids; ids 0-3 are <pad> <unk> <bos> <eos>.

    ``split``: "char" (every character a token; decode joins with ""), "space" (white-space
    separated symbols, e.g. phonemes; decode joins with " ") or "word" (``tokenize_words``:
    words and punctuation marks; decode joins with " ").
    """

    tokens: list[str]
    split: Split = "char"
    stoi: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.split not in ("char", "space", "word"):
            raise UserError(f"vocabulary split must be char, space or word, got {self.split!r}")
        if tuple(self.tokens[:4]) != SPECIALS:
            raise UserError(f"a pair vocabulary must start with {', '.join(SPECIALS)}")
        self.stoi = {t: i for i, t in enumerate(self.tokens)}
        if len(self.stoi) != len(self.tokens):
            raise UserError("vocabulary has repeated tokens")

    @classmethod
    def from_texts(
        cls, texts: Iterable[str], split: Split, max_size: int = 0, min_count: int = 1
    ) -> TokenVocab:
        """The tokens of ``texts`` by count (ties by token), at most ``max_size`` (0: all)."""
        counts = Counter(t for text in texts for t in tokenize(text, split))
        ranked = sorted(
            (t for t, c in counts.items() if c >= min_count and t not in SPECIALS),
            key=lambda t: (-counts[t], t),
        )
        if max_size:
            ranked = ranked[: max(0, max_size - len(SPECIALS))]
        if split == "char":
            ranked.sort()
        return cls([*SPECIALS, *ranked], split)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        """Token ids of a text, unknown tokens as <unk>, without <bos>/<eos>. The literal
        "<unk>" (as ``decode`` writes it) is the <unk> id, so that encode(decode(ids)) == ids."""
        ids: list[int] = []
        for i, part in enumerate(text.split(SPECIALS[UNK])):
            if i:
                ids.append(UNK)
            ids += [self.stoi.get(t, UNK) for t in tokenize(part, self.split)]
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """The text of token ids; <pad>, <bos> and <eos> are left out. Words are joined by
        spaces, except before closing and after opening punctuation ("tierra ." -> "tierra.")."""
        tokens = [self.tokens[i] for i in ids if i not in (PAD, BOS, EOS)]
        if self.split == "char":
            return "".join(tokens)
        text = " ".join(tokens)
        if self.split == "word":
            text = _OPENING.sub(r"\1", _CLOSING.sub(r"\1", text))
        return text

    def pieces(self, ids: Iterable[int]) -> list[str]:
        """The tokens of ids, one string each (for the axes of an attention map)."""
        return [self.tokens[i] for i in ids]

    def unknown(self, text: str) -> list[str]:
        return [t for t in tokenize(text, self.split) if t not in self.stoi]

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": list(self.tokens), "split": self.split}

    @classmethod
    def from_dict(cls, d: dict) -> TokenVocab:
        if not isinstance(d, dict) or set(d) != {"tokens", "split"}:
            raise UserError("a pair vocabulary needs exactly the keys 'tokens' and 'split'")
        return cls(list(d["tokens"]), d["split"])


@dataclass
class PairVocab:
    """The source and target vocabularies of a sequence-to-sequence task."""

    source: TokenVocab
    target: TokenVocab

    def __len__(self) -> int:
        return len(self.source) + len(self.target)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source.to_dict(), "target": self.target.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> PairVocab:
        if not isinstance(d, dict) or set(d) != {"source", "target"}:
            raise UserError("a pair vocabulary needs the keys 'source' and 'target'")
        return cls(TokenVocab.from_dict(d["source"]), TokenVocab.from_dict(d["target"]))


def tokenize(text: str, split: Split) -> list[str]:
    if split == "char":
        return list(text)
    if split == "space":
        return text.split()
    return tokenize_words(text)


def held_out_bucket(key: str, salt: str = "rnnkit") -> int:
    """A fixed bucket in [0, 100) for ``key``: the first 4 bytes of md5(salt + key), mod 100."""
    digest = hashlib.md5((salt + "\0" + key).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "little") % 100


@dataclass
class PairBatch:
    """A padded, time-major batch. src (S, B), src_lengths (B,), tgt_in (T, B) = <bos> y,
    tgt_out (T, B) = y <eos>, both padded with <pad>; index (B,): the examples' positions."""

    src: Tensor
    src_lengths: Tensor
    tgt_in: Tensor
    tgt_out: Tensor
    index: Tensor

    def to(self, device: torch.device) -> PairBatch:
        return PairBatch(
            *(
                t.to(device)
                for t in (self.src, self.src_lengths, self.tgt_in, self.tgt_out, self.index)
            )
        )


def pad(seqs: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """(T, B) ids padded with <pad>, and the lengths (B,)."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((int(lengths.max()) if len(seqs) else 0, len(seqs)), PAD, dtype=torch.long)
    for b, s in enumerate(seqs):
        out[: len(s), b] = torch.tensor(s, dtype=torch.long)
    return out, lengths


def make_batch(
    sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], index: Sequence[int]
) -> PairBatch:
    """A batch of the examples at ``index``; sources get <eos> appended (a visible end)."""
    src, src_lengths = pad([list(sources[i]) + [EOS] for i in index])
    tgt_in, _ = pad([[BOS] + list(targets[i]) for i in index])
    tgt_out, _ = pad([list(targets[i]) + [EOS] for i in index])
    return PairBatch(src, src_lengths, tgt_in, tgt_out, torch.tensor(list(index)))


class BucketBatcher:
    """Batches of example indices with similar source lengths.

    Every epoch: shuffle (seeded by seed and epoch), sort by length (stable: the shuffle breaks
    ties), cut into batches of ``batch_size``, shuffle the batches. Without ``shuffle`` (for
    evaluation): sorted by length, in order.
    """

    def __init__(
        self, lengths: Sequence[int], batch_size: int, seed: int = 0, shuffle: bool = True
    ) -> None:
        if batch_size < 1:
            raise UserError(f"option 'data.batch_size' must be >= 1, got {batch_size}")
        self.lengths, self.batch_size, self.seed, self.shuffle = (
            list(lengths),
            batch_size,
            seed,
            shuffle,
        )
        self.batches = self.epoch(0)

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def epoch(self, epoch: int) -> list[list[int]]:
        order = list(range(len(self.lengths)))
        rng = random.Random(self.seed * 1_000_003 + epoch)
        if self.shuffle:
            rng.shuffle(order)
        order.sort(key=lambda i: self.lengths[i])
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.shuffle:
            rng.shuffle(batches)
        self.batches = batches
        return batches


def read_tsv(
    path: str | Path, source_column: int = 0, target_column: int = 1, header: bool = False
) -> list[tuple[str, str]]:
    """Pairs from a tab-separated UTF-8 file: one pair a line, columns counted from 0 (negative:
    from the end); ``header`` skips the first line; blank lines are skipped.

    Every line must have as many columns as the first: a line with a tab more or less would
    otherwise pair the wrong columns silently (with negative columns) or not at all. A pair
    whose source or target is empty is left out, and how many were is printed once (stderr).

    Raises:
        UserError: a file that is missing, not a regular file, empty, binary or not UTF-8
            (``read_text``), a line without the columns or with another number of columns
            than the first (file:line), or no pairs at all.
    """
    path = Path(path)
    try:
        text = read_text(path)
    except UserError as e:
        raise UserError(f"pairs file (tab-separated): {e}") from None
    pairs = []
    width, empty, first_empty = 0, 0, 0
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if not width:
            width = len(cols)
        elif len(cols) != width:
            raise UserError(
                f"{path}:{n}: {len(cols)} tab-separated column(s), but the first line has "
                f"{width}: every line needs the same columns"
            )
        if header and n == 1:
            continue
        try:
            src, tgt = cols[source_column].strip(), cols[target_column].strip()
        except IndexError:
            raise UserError(
                f"{path}:{n}: expected columns {source_column} and {target_column} separated "
                f"by tabs, got {len(cols)} column(s)"
            ) from None
        if src and tgt:
            pairs.append((src, tgt))
        else:
            empty, first_empty = empty + 1, first_empty or n
    if not pairs:
        raise UserError(f"{path}: no source/target pairs found")
    if empty and str(path.resolve()) not in _REPORTED_EMPTY:
        _REPORTED_EMPTY.add(str(path.resolve()))
        print(
            f"{path}: left out {empty} pair(s) with an empty source or target "
            f"(the first on line {first_empty})",
            file=sys.stderr,
        )
    return pairs


_REPORTED_EMPTY: set[str] = set()  # files whose empty pairs were reported: once a process
