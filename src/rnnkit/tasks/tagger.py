"""A sequence tagger shared by the tagging tasks (pos, ner): vocabularies, batches and the model.

Sentences come as ``(tokens, tags)`` pairs of equal-length lists of strings; everything here is
generic over the tag set.

Model (``Tagger``; Ling et al. 2015, "Finding function in form"; Lample et al. 2016, "Neural
architectures for named entity recognition"; Plank, Søgaard & Goldberg 2016, "Multilingual
part-of-speech tagging with bidirectional LSTM models")::

    word w_t = c_1 .. c_n   ->  e_t = [ E_word[w_t] ; →h_n(c) ; ←h_1(c) ]   (char BiLSTM)
    x_1 .. x_T = dropout(e_1 .. e_T)
    h_t = [ →h_t ; ←h_t ]   (a stack of bidirectional recurrent layers, any rnnkit cell)
    s_t = W dropout(h_t) + b     (T, B, K): the tag scores ("emissions")

Without a CRF the loss is the cross-entropy of softmax(s_t) per token and decoding takes
argmax_k s_t[k]; with ``crf=True`` the loss is -log p(y | x) of the linear-chain CRF
(``rnnkit.crf.CRF``) over the emissions and decoding is Viterbi. Losses are in nats per token.

Efficiency: the character BiLSTM runs once per *distinct spelling* in a batch (a batch of 32
sentences of ~25 tokens has ~400 distinct words, not 800 tokens), as one padded call with
lengths (rnnkit's variable-length support: padding changes no result); each token then picks
its word's vector by index (``TagBatch.word_index``).

Word ids: the word vocabulary holds the training words seen at least ``min_count`` times
(lower-cased when ``lowercase``), id 0 <pad>, 1 <unk>. During training each word is replaced by
<unk> with probability ``word_dropout`` (Plank et al.), so that the <unk> vector and the
character model learn to carry words the vocabulary lacks.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.cells.registry import cell_names
from rnnkit.config import option
from rnnkit.errors import UserError
from rnnkit.layers.torch_compat import BY_NAME

CELLS = cell_names(output_projection=False)  # the cells whose output is the hidden state
PAD, UNK = 0, 1
SPECIALS = ("<pad>", "<unk>")
Sentence = tuple[Sequence[str], Sequence[str]]  # (tokens, tags), equal lengths


@dataclass
class TaggerConfig:
    cell: Literal[CELLS] = option("lstm", "the recurrent cell (word and character layers)")  # type: ignore[valid-type]
    word_embedding_size: int = option(100, "the word embedding width (0: characters only)")
    char_embedding_size: int = option(30, "the character embedding width (0: no char model)")
    char_hidden_size: int = option(50, "the character BiLSTM's width per direction")
    hidden_size: int = option(150, "the word-level BiLSTM's width per direction")
    num_layers: int = option(1, "stacked bidirectional word-level layers")
    dropout: float = option(0.3, "dropout on the word vectors, between layers, before the output")
    word_dropout: float = option(0.05, "training: a word becomes <unk> with this probability")
    min_count: int = option(1, "training words seen fewer times become <unk>")
    lowercase: bool = option(True, "word ids from lower-cased words (characters keep case)")
    crf: bool = option(False, "a linear-chain CRF on top (Viterbi decoding)")


def check_tagger_config(cfg: TaggerConfig) -> None:
    """One line naming the option for an impossible model option."""
    inf = float("inf")
    rules = {
        "word_embedding_size": (0, inf),
        "char_embedding_size": (0, inf),
        "char_hidden_size": (1, inf),
        "hidden_size": (1, inf),
        "num_layers": (1, inf),
        "dropout": (0.0, 0.99),
        "word_dropout": (0.0, 0.99),
        "min_count": (1, inf),
    }
    for key, (low, high) in rules.items():
        value = getattr(cfg, key)
        if isinstance(value, bool) or not low <= value <= high:
            raise UserError(f"option 'model.{key}' must lie in [{low}, {high}], got {value!r}")
    if not cfg.word_embedding_size and not cfg.char_embedding_size:
        raise UserError(
            "options 'model.word_embedding_size' and 'model.char_embedding_size' are both 0: "
            "the tagger needs words or characters"
        )
    if cfg.cell not in CELLS:
        raise UserError(f"option 'model.cell' must be one of {', '.join(CELLS)}, got {cfg.cell!r}")


# ---- vocabularies ----------------------------------------------------------------------------
@dataclass
class TaggerVocab:
    """Words, characters and tags <-> ids. ``words`` and ``chars`` start with <pad>, <unk>;
    ``tags`` are the training tags in sorted order (no specials)."""

    words: list[str]
    chars: list[str]
    tags: list[str]
    lowercase: bool = True
    word_ids: dict[str, int] = field(init=False, repr=False, compare=False)
    char_ids: dict[str, int] = field(init=False, repr=False, compare=False)
    tag_ids: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("words", "chars"):
            if tuple(getattr(self, name)[:2]) != SPECIALS:
                raise UserError(f"tagger vocabulary: {name} must start with <pad>, <unk>")
        self.word_ids = {w: i for i, w in enumerate(self.words)}
        self.char_ids = {c: i for i, c in enumerate(self.chars)}
        self.tag_ids = {t: i for i, t in enumerate(self.tags)}

    @classmethod
    def build(
        cls,
        sentences: Sequence[Sentence],
        min_count: int = 1,
        lowercase: bool = True,
        tagset: Sequence[str] = (),
    ) -> TaggerVocab:
        """From the training sentences: words seen >= min_count times (by count, then
        alphabetically), every character; the tags of the training sentences and ``tagset``
        (the annotation scheme's tags: a tag that occurs only in held-out data still gets an
        id, so that its tokens count as errors rather than fail)."""
        words: Counter[str] = Counter()
        chars: set[str] = set()
        tags: set[str] = set(tagset)
        for tokens, tag_seq in sentences:
            for token in tokens:
                words[token.lower() if lowercase else token] += 1
                chars.update(token)
            tags.update(tag_seq)
        kept = sorted((w for w, c in words.items() if c >= min_count), key=lambda w: (-words[w], w))
        return cls([*SPECIALS, *kept], [*SPECIALS, *sorted(chars)], sorted(tags), lowercase)

    def __len__(self) -> int:
        return len(self.words)

    def word_id(self, token: str) -> int:
        return self.word_ids.get(token.lower() if self.lowercase else token, UNK)

    def encode_chars(self, token: str) -> list[int]:
        return [self.char_ids.get(c, UNK) for c in token] or [UNK]

    def encode_tags(self, tags: Sequence[str], where: str = "") -> list[int]:
        """Tag ids; a tag never seen in training is an error naming it (``where``: the file)."""
        try:
            return [self.tag_ids[t] for t in tags]
        except KeyError as e:
            raise UserError(
                f"{where or 'data'}: tag {e.args[0]!r} does not occur in the training split "
                f"({len(self.tags)} tags)"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "words": list(self.words),
            "chars": list(self.chars),
            "tags": list(self.tags),
            "lowercase": self.lowercase,
        }

    @classmethod
    def from_dict(cls, d: dict) -> TaggerVocab:
        keys = {"words", "chars", "tags", "lowercase"}
        if not isinstance(d, dict) or set(d) != keys:
            raise UserError(f"a tagger vocabulary needs exactly the keys {sorted(keys)}")
        return cls(list(d["words"]), list(d["chars"]), list(d["tags"]), bool(d["lowercase"]))


# ---- batches ---------------------------------------------------------------------------------
@dataclass
class TagBatch:
    """A padded, time-major batch of sentences.

    words (T, B) word ids (<pad> after each end); lengths (B,); chars (L, U) the character ids
    of the batch's U distinct spellings, padded, and char_lengths (U,); word_index (T, B) the
    spelling of each token (0 in the padding); tags (T, B) tag ids (0 in the padding; ``None``
    when the sentences come untagged); index (B,) the sentences' positions in their list.
    """

    words: Tensor
    lengths: Tensor
    chars: Tensor
    char_lengths: Tensor
    word_index: Tensor
    tags: Tensor | None
    index: Tensor

    def to(self, device: torch.device) -> TagBatch:
        move = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in vars(self).items()}
        return TagBatch(**move)

    def mask(self) -> Tensor:
        """(T, B) True on real tokens."""
        T = self.words.shape[0]
        return torch.arange(T, device=self.lengths.device)[:, None] < self.lengths[None, :]


def make_tag_batch(
    vocab: TaggerVocab,
    tokens: Sequence[Sequence[str]],
    index: Sequence[int],
    tags: Sequence[Sequence[int]] | None = None,
    word_dropout: float = 0.0,
    rng: random.Random | None = None,
) -> TagBatch:
    """The batch of the sentences ``tokens[i]`` (and tag ids ``tags[i]``) for i in ``index``.

    ``word_dropout`` > 0 (training) replaces each word id by <unk> with that probability, drawn
    from ``rng`` (seeded by the caller, so that a resumed run draws the same)."""
    sents = [tokens[i] for i in index]
    B, T = len(sents), max((len(s) for s in sents), default=0)
    words = torch.full((T, B), PAD, dtype=torch.long)
    word_index = torch.zeros((T, B), dtype=torch.long)
    spellings: dict[str, int] = {}
    for b, sent in enumerate(sents):
        ids = [vocab.word_id(w) for w in sent]
        if word_dropout and rng is not None:
            ids = [UNK if rng.random() < word_dropout else i for i in ids]
        words[: len(sent), b] = torch.tensor(ids, dtype=torch.long)
        word_index[: len(sent), b] = torch.tensor(
            [spellings.setdefault(w, len(spellings)) for w in sent], dtype=torch.long
        )
    char_seqs = [vocab.encode_chars(w) for w in spellings] or [[UNK]]
    char_lengths = torch.tensor([len(c) for c in char_seqs], dtype=torch.long)
    chars = torch.full((int(char_lengths.max()), len(char_seqs)), PAD, dtype=torch.long)
    for u, c in enumerate(char_seqs):
        chars[: len(c), u] = torch.tensor(c, dtype=torch.long)
    gold = None
    if tags is not None:
        gold = torch.zeros((T, B), dtype=torch.long)
        for b, i in enumerate(index):
            gold[: len(tags[i]), b] = torch.tensor(list(tags[i]), dtype=torch.long)
    lengths = torch.tensor([len(s) for s in sents], dtype=torch.long)
    return TagBatch(words, lengths, chars, char_lengths, word_index, gold, torch.tensor(index))


def length_batches(
    lengths: Sequence[int], batch_size: int, seed: int | None = None, epoch: int = 0
) -> list[list[int]]:
    """Batches of positions with similar lengths (little padding). With ``seed``: shuffled,
    sorted by length (stable, so the shuffle breaks ties), cut, the batches shuffled, all from
    (seed, epoch); without: sorted by length, in order (evaluation)."""
    order = list(range(len(lengths)))
    rng = random.Random(None if seed is None else seed * 1_000_003 + epoch)
    if seed is not None:
        rng.shuffle(order)
    order.sort(key=lambda i: lengths[i])
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if seed is not None:
        rng.shuffle(batches)
    return batches


# ---- the model -------------------------------------------------------------------------------
def final_hidden(state) -> Tensor:
    """h_n of a layer's final state (the LSTM's is (h_n, c_n))."""
    return state[0] if isinstance(state, tuple) else state


class Tagger(nn.Module):
    """Word embeddings + character BiLSTM -> stacked BiLSTM -> tag scores (+ optional CRF).

    ``forward(batch) -> emissions (T, B, K)``; ``loss(batch) -> (summed loss, tokens)``;
    ``decode(batch) -> list of tag-id lists``, one per sentence, of its length.
    """

    def __init__(
        self,
        num_words: int,
        num_chars: int,
        num_tags: int,
        cfg: TaggerConfig,
        crf_constraints=None,
    ) -> None:
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"num_tags must be a positive integer, got {num_tags}")
        self.cfg = cfg
        layer = BY_NAME[cfg.cell]
        width = 0
        self.word_embedding = None
        if cfg.word_embedding_size:
            self.word_embedding = nn.Embedding(num_words, cfg.word_embedding_size, padding_idx=PAD)
            width += cfg.word_embedding_size
        self.char_embedding = self.char_rnn = None
        if cfg.char_embedding_size:
            self.char_embedding = nn.Embedding(num_chars, cfg.char_embedding_size, padding_idx=PAD)
            self.char_rnn = layer(cfg.char_embedding_size, cfg.char_hidden_size, bidirectional=True)
            width += 2 * cfg.char_hidden_size
        self.rnn = layer(
            width, cfg.hidden_size, cfg.num_layers, dropout=cfg.dropout, bidirectional=True
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(2 * cfg.hidden_size, num_tags)
        self.crf = None
        if cfg.crf:
            from rnnkit.crf import CRF

            self.crf = CRF(num_tags, crf_constraints)

    def word_vectors(self, batch: TagBatch) -> Tensor:
        """(T, B, width): each token's word embedding and its spelling's character summary."""
        parts = []
        if self.word_embedding is not None:
            parts.append(self.word_embedding(batch.words))
        if self.char_rnn is not None:
            _, state = self.char_rnn(
                self.char_embedding(batch.chars), lengths=batch.char_lengths
            )  # h_n (2, U, Hc): the forward direction after the last char, the backward after
            h = final_hidden(state)  # the first
            per_word = torch.cat([h[-2], h[-1]], dim=-1)  # (U, 2 Hc)
            parts.append(per_word[batch.word_index])  # (T, B, 2 Hc)
        return torch.cat(parts, dim=-1)

    def forward(self, batch: TagBatch) -> Tensor:
        xs = self.drop(self.word_vectors(batch))
        lengths = None if bool((batch.lengths == xs.shape[0]).all()) else batch.lengths
        ys, _ = self.rnn(xs, lengths=lengths)
        return self.head(self.drop(ys))  # (T, B, K)

    def loss(self, batch: TagBatch, emissions: Tensor | None = None) -> tuple[Tensor, int]:
        """The summed loss over the batch's real tokens (cross-entropy, or the CRF's negative
        log-likelihood of each sentence), and the number of tokens. ``emissions``: this
        model's output for ``batch`` if already computed (e.g. through a DDP wrapper)."""
        if batch.tags is None:
            raise ValueError("batch has no tags: the loss needs the gold tags")
        if emissions is None:
            emissions = self(batch)
        n = int(batch.lengths.sum())
        if self.crf is not None:
            return -self.crf(emissions, batch.tags, batch.lengths).sum(), n
        mask = batch.mask()
        return F.cross_entropy(emissions[mask], batch.tags[mask], reduction="sum"), n

    def decode_emissions(self, emissions: Tensor, lengths: Tensor) -> list[list[int]]:
        if self.crf is not None:
            return self.crf.decode(emissions, lengths)
        best = emissions.argmax(-1).T.tolist()  # (B, T)
        return [row[:n] for row, n in zip(best, lengths.tolist(), strict=True)]

    def decode(self, batch: TagBatch) -> list[list[int]]:
        """The best tag ids of each sentence (argmax per token, or Viterbi with the CRF)."""
        return self.decode_emissions(self(batch), batch.lengths)


def tag_sentences(
    model: Tagger, vocab: TaggerVocab, sentences: Sequence[Sequence[str]], batch_size: int = 64
) -> list[list[str]]:
    """The predicted tags of tokenised sentences (any order; batched by length)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: list[list[str]] = [[] for _ in sentences]
    with torch.no_grad():
        for index in length_batches([len(s) for s in sentences], batch_size):
            index = [i for i in index if len(sentences[i])]
            if not index:
                continue
            batch = make_tag_batch(vocab, sentences, index).to(device)
            for i, ids in zip(index, model.decode(batch), strict=True):
                out[i] = [vocab.tags[k] for k in ids]
    model.train(was_training)
    return out
