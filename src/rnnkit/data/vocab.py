"""The vocabulary of a language-model corpus (characters or words) and the word tokenizer.

Sequence-to-sequence tasks use ``rnnkit.data.pairs.TokenVocab`` instead: fixed <pad> <unk> <bos>
<eos> ids for padded batches, where this one has no specials for characters and maps <eos> to a
line break.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from rnnkit.errors import UserError

Level = Literal["char", "word"]

UNK = "<unk>"
EOS = "<eos>"

_WORD = r"\w+(?:['’]\w+)*|[^\w\s]"
_WORD_RE = re.compile(_WORD)
_WORD_OR_NEWLINE_RE = re.compile(_WORD + r"|\n")


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
