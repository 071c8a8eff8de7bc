"""Data of a text classifier: readers, the fixed split, the vocabulary and padded batches.

Two file formats (``data.format``):

- ``tsv``: any ``text<TAB>label`` file, one example a line. The label is what follows the
  line's *last* tab, stripped; the text is everything before it. Labels may be any strings
  or numbers: the classes are the distinct labels, sorted numerically when every label
  parses as a number ("-1" < "2" < "10"), else as strings. Blank lines are skipped; a first
  line ``text<TAB>label`` (any case) is a header and skipped.
- ``snippets``: the movie-review snippets of Hutto & Gilbert 2014 (``id<TAB>rating<TAB>
  sentence`` under that header line): sentences of Pang & Lee's polarity data, each with the
  mean of human ratings in [-4, 4]. The label is the rating's sign: ``positive`` (> 0) or
  ``negative`` (< 0); sentences rated exactly 0 are dropped.
- ``auto`` (the default): ``snippets`` if the first line is ``id<TAB>rating<TAB>sentence``,
  else ``tsv``.

A malformed line (no tab, an empty text or label, a rating that is not a number) or a file
with no examples is a one-line ``UserError`` naming the file and line.

Split: fixed by a hash of the sentence (its words joined by single spaces):
``held_out_bucket`` (md5) in [0, 100): 0-9 test, 10-19 validation, 20-99 training. A
sentence that occurs twice lands in one split, and the split does not depend on the file's
order or on any seed.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rnnkit.data.pairs import held_out_bucket
from rnnkit.data.vocab import tokenize_words
from rnnkit.errors import UserError

SNIPPETS_HEADER = ("id", "rating", "sentence")
SPLITS = ("train", "val", "test")
PAD, UNK = "<pad>", "<unk>"
MAX_WORD_CHARS = 20  # the character encoder reads at most this many characters of a word


@dataclass(frozen=True)
class Example:
    """One sentence and its label; ``line``: its line number in the file (for messages);
    ``rating``: the snippets format's mean rating (None in other formats)."""

    text: str
    label: str
    line: int
    rating: float | None = None


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start})") from None


def detect_format(path: Path) -> str:
    """``snippets`` if the file's first line is the snippets header, else ``tsv``."""
    lines = _read_lines(path)
    first = lines[0].strip().lower().split("\t") if lines else []
    return "snippets" if tuple(first) == SNIPPETS_HEADER else "tsv"


def read_tsv(path: Path) -> list[Example]:
    """``text<TAB>label`` lines (the rule in the module's docstring)."""
    examples = []
    for n, raw in enumerate(_read_lines(path), 1):
        if not raw.strip():
            continue
        if n == 1 and raw.strip().lower().split("\t") == ["text", "label"]:
            continue
        text, tab, label = raw.rpartition("\t")
        if not tab:
            raise UserError(f"{path}:{n}: expected 'text<TAB>label', found no tab")
        text, label = text.strip(), label.strip()
        if not label:
            raise UserError(f"{path}:{n}: the label (after the last tab) is missing")
        if not text:
            raise UserError(f"{path}:{n}: the text (before the last tab) is empty")
        examples.append(Example(text, label, n))
    if not examples:
        raise UserError(f"{path}: no examples (an empty file; expected 'text<TAB>label' lines)")
    return examples


def rating_label(rating: float) -> str | None:
    """The snippets' rule: ``positive`` above 0, ``negative`` below, None (dropped) at 0."""
    return "positive" if rating > 0 else "negative" if rating < 0 else None


def read_snippets(path: Path) -> list[Example]:
    """``id<TAB>rating<TAB>sentence`` lines under their header; labels by ``rating_label``."""
    lines = _read_lines(path)
    if not lines or tuple(lines[0].strip().lower().split("\t")) != SNIPPETS_HEADER:
        raise UserError(f"{path}:1: expected the header 'id<TAB>rating<TAB>sentence'")
    examples = []
    for n, raw in enumerate(lines[1:], 2):
        if not raw.strip():
            continue
        fields = raw.split("\t")
        if len(fields) != 3:
            raise UserError(
                f"{path}:{n}: expected 3 tab-separated fields (id, rating, sentence), "
                f"got {len(fields)}"
            )
        try:
            rating = float(fields[1])
        except ValueError:
            rating = math.nan
        if not math.isfinite(rating):
            raise UserError(f"{path}:{n}: the rating {fields[1]!r} is not a finite number")
        text = fields[2].strip()
        if not text:
            raise UserError(f"{path}:{n}: the sentence is empty")
        label = rating_label(rating)
        if label is not None:
            examples.append(Example(text, label, n, rating))
    if not examples:
        raise UserError(f"{path}: no examples with a non-zero rating")
    return examples


def read_examples(path: Path, fmt: str = "auto") -> list[Example]:
    """The examples of a data file in ``fmt`` (auto, tsv or snippets)."""
    path = Path(path)
    fmt = detect_format(path) if fmt == "auto" else fmt
    return read_snippets(path) if fmt == "snippets" else read_tsv(path)


def sort_labels(labels: Sequence[str]) -> list[str]:
    """The classes: distinct labels, numerically sorted if all are numbers, else as strings."""
    distinct = set(labels)
    try:
        return sorted(distinct, key=lambda s: (float(s), s))
    except ValueError:
        return sorted(distinct)


def split_of(text: str) -> str:
    """The fixed split of a sentence: the md5 bucket of its whitespace-normalised text."""
    bucket = held_out_bucket(" ".join(text.split()), salt="text_classify")
    return "test" if bucket < 10 else "val" if bucket < 20 else "train"


def split_examples(examples: Sequence[Example]) -> dict[str, list[Example]]:
    """{"train": ..., "val": ..., "test": ...} by ``split_of``, each in file order."""
    out: dict[str, list[Example]] = {s: [] for s in SPLITS}
    for ex in examples:
        out[split_of(ex.text)].append(ex)
    return out


NGRAM_MIN_SENTENCES = 2  # an n-gram feature must occur in this many training sentences


def ngrams_of(tokens: Sequence[str], order: int) -> list[str]:
    """Every word n-gram of ``tokens`` for n = 1..order, its words joined by a space."""
    return [
        " ".join(tokens[i : i + n]) for n in range(1, order + 1) for i in range(len(tokens) - n + 1)
    ]


def tokens_of(text: str, lowercase: bool) -> list[str]:
    """Words and punctuation marks by ``rnnkit.data.vocab.tokenize_words`` (the word language
    model's rule, so that its vocabulary maps onto this one), lower-cased if asked."""
    return tokenize_words(text.lower() if lowercase else text)


@dataclass(eq=True)
class TextVocab:
    """Words (id 0 <pad>, 1 <unk>, then by count), characters (the same two first) and classes.

    Attributes:
        words: id -> word; ``max_words`` most frequent training words seen ``min_count`` times.
        chars: id -> character, every character of the training words.
        classes: id -> label.
        lowercase: whether texts are lower-cased before tokenising.
        ngrams: id -> word n-gram (its words joined by a space), n = 1..``ngram_order``: those
            in at least ``NGRAM_MIN_SENTENCES`` training sentences (empty: ``ngram_order`` 0).
    """

    words: list[str]
    chars: list[str]
    classes: list[str]
    lowercase: bool = True
    ngrams: list[str] = field(default_factory=list)
    ngram_order: int = 0

    def __post_init__(self) -> None:
        self.word_ids = {w: i for i, w in enumerate(self.words)}
        self.char_ids = {c: i for i, c in enumerate(self.chars)}
        self.class_ids = {c: i for i, c in enumerate(self.classes)}
        self.ngram_ids = {g: i for i, g in enumerate(self.ngrams)}

    @classmethod
    def build(
        cls,
        examples: Sequence[Example],
        max_words: int,
        min_count: int,
        lowercase: bool,
        ngram_order: int = 0,
    ) -> TextVocab:
        counts = Counter(t for ex in examples for t in tokens_of(ex.text, lowercase))
        kept = [w for w, c in sorted(counts.items(), key=lambda x: (-x[1], x[0])) if c >= min_count]
        chars = sorted({c for w in counts for c in w})
        classes = sort_labels([ex.label for ex in examples])
        sentences = Counter(  # in how many sentences each n-gram occurs
            g for ex in examples for g in set(ngrams_of(tokens_of(ex.text, lowercase), ngram_order))
        )
        ngrams = sorted(g for g, c in sentences.items() if c >= NGRAM_MIN_SENTENCES)
        return cls(
            [PAD, UNK, *kept[: max(0, max_words - 2)]],
            [PAD, UNK, *chars],
            classes,
            lowercase,
            ngrams,
            ngram_order,
        )

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> tuple[list[str], list[int]]:
        """(tokens, word ids); unknown words are <unk> (1)."""
        tokens = tokens_of(text, self.lowercase)
        return tokens, [self.word_ids.get(t, 1) for t in tokens]

    def char_ids_of(self, token: str) -> list[int]:
        return [self.char_ids.get(c, 1) for c in token[:MAX_WORD_CHARS]]

    def ngram_ids_of(self, tokens: Sequence[str]) -> list[int]:
        """The ids of the known n-grams in ``tokens``, each once (binary features), sorted."""
        return sorted({self.ngram_ids.get(g) for g in ngrams_of(tokens, self.ngram_order)} - {None})

    def to_dict(self) -> dict[str, Any]:
        return {
            "words": self.words,
            "chars": self.chars,
            "classes": self.classes,
            "lowercase": self.lowercase,
            "ngrams": self.ngrams,
            "ngram_order": self.ngram_order,
        }

    @classmethod
    def from_dict(cls, d: dict) -> TextVocab:
        try:
            return cls(
                list(d["words"]),
                list(d["chars"]),
                list(d["classes"]),
                bool(d["lowercase"]),
                list(d.get("ngrams", [])),
                int(d.get("ngram_order", 0)),
            )
        except (KeyError, TypeError) as e:
            raise UserError(f"not a text-classifier vocabulary: {e}") from None


@dataclass
class TextBatch:
    """A padded, time-major batch: words (T, B) (0 = <pad>), lengths (B,) >= 1, chars
    (T, B, C) (0 = <pad>; C >= 1), labels (B,) class ids (-1: none), index (B,): the examples'
    positions in their list; ratings (B,) float, each example's rating (NaN: none); ngrams:
    the known n-gram ids of every example in a row (``vocab.ngram_ids_of``), example b's
    starting at ngram_offsets[b] (the input of ``F.embedding_bag``; empty without n-grams)."""

    words: Tensor
    lengths: Tensor
    chars: Tensor
    labels: Tensor
    index: Tensor
    ratings: Tensor
    ngrams: Tensor
    ngram_offsets: Tensor

    def to(self, device: torch.device) -> TextBatch:
        return TextBatch(
            *(t.to(device) for t in (self.words, self.lengths, self.chars)),
            self.labels.to(device),
            self.index,
            *(t.to(device) for t in (self.ratings, self.ngrams, self.ngram_offsets)),
        )

    @property
    def mask(self) -> Tensor:
        """(T, B) bool: True at the real (not padding) positions."""
        steps = torch.arange(self.words.shape[0], device=self.lengths.device)
        return steps[:, None] < self.lengths[None, :]


def make_batch(
    vocab: TextVocab,
    texts: Sequence[str],
    labels: Sequence[str | None],
    index: Sequence[int],
    chars: bool = True,
    encoded: Sequence[tuple[list[str], list[int]]] | None = None,
    ratings: Sequence[float | None] | None = None,
) -> TextBatch:
    """Pad ``texts`` into a ``TextBatch``; a text with no tokens becomes one <unk>.

    ``chars`` False leaves the character tensor empty (T, B, 1) (a word-level model reads
    none); ``encoded``: the texts' ``vocab.encode`` already made (a task caches them);
    ``ratings``: the examples' ratings (None, or a None in it: NaN).
    """
    encoded = encoded if encoded is not None else [vocab.encode(t) for t in texts]
    encoded = [(toks, ids) if ids else ([UNK], [1]) for toks, ids in encoded]
    T, B = max(len(ids) for _, ids in encoded), len(encoded)
    C = max(min(len(t), MAX_WORD_CHARS) for toks, _ in encoded for t in toks) if chars else 1
    words = torch.zeros(T, B, dtype=torch.long)
    char_ids = torch.zeros(T, B, C, dtype=torch.long)
    for b, (toks, ids) in enumerate(encoded):
        words[: len(ids), b] = torch.tensor(ids)
        for t, tok in enumerate(toks if chars else ()):
            c = vocab.char_ids_of(tok)
            char_ids[t, b, : len(c)] = torch.tensor(c, dtype=torch.long)
    ys = [vocab.class_ids.get(y, -1) if y is not None else -1 for y in labels]
    rs = [math.nan if r is None else r for r in (ratings or [None] * B)]
    grams = [vocab.ngram_ids_of(toks) for toks, _ in encoded] if vocab.ngram_order else [[]] * B
    offsets = [0]
    for g in grams[:-1]:
        offsets.append(offsets[-1] + len(g))
    return TextBatch(
        words,
        torch.tensor([len(ids) for _, ids in encoded]),
        char_ids,
        torch.tensor(ys, dtype=torch.long),
        torch.tensor(list(index), dtype=torch.long),
        torch.tensor(rs, dtype=torch.float32),
        torch.tensor([i for g in grams for i in g], dtype=torch.long),
        torch.tensor(offsets, dtype=torch.long),
    )


def bucketed_order(lengths: Sequence[int], batch_size: int, seed: int) -> list[list[int]]:
    """Batches of example positions for one epoch: shuffled by ``seed``, then sorted by length
    within pools of 50 batches (little padding), cut into batches, the batches shuffled."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = 50 * batch_size
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def write_split_text(
    data: Path, out: Path, split: str = "train", fmt: str = "auto", lowercase: bool = True
) -> int:
    """Write the sentences of one split of a data file, one a line (lower-cased if asked; no
    labels), as a corpus for ``rnnkit train wordlm --data.path OUT``: the classifier's own
    training text, for pre-training a language model without seeing a held-out sentence.

    Returns:
        The number of sentences written.
    """
    from rnnkit.files import atomic_write

    exs = split_examples(read_examples(Path(data), fmt))[split]
    text = "".join((e.text.lower() if lowercase else e.text) + "\n" for e in exs)
    atomic_write(Path(out), text)
    return len(exs)
