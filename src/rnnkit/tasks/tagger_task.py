"""What the tagging tasks (pos, ner) share: the recipe, the scores and the Task for the trainer.

A tagging task gives a ``TaggingRecipe``: how to read its sentences (``{"train", "val", "test"}``
-> lists of ``(tokens, tags)``) from its config, and optionally its scorer and CRF constraints.
Its config has the sections ``model`` (``TaggerConfig``), ``data`` (with ``batch_size``) and
``train`` (``TrainConfig``). Everything else (vocabularies, batches, the model, the loss, the
scores, loading a run, ``predict`` and ``eval``: ``tagger_commands``) is shared.

Scores (``TokenAccuracy``): token accuracy over all tokens and over the tokens whose spelling
never occurs in the training split ("unseen"), beside the most-frequent-tag baseline computed
on the same split: each word gets its most frequent training tag (by exact spelling, ties to
the tag first in sorted order), an unseen word the most frequent training tag overall.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from rnnkit.errors import UserError
from rnnkit.metrics import perplexity
from rnnkit.tasks.tagger import (
    Sentence,
    Tagger,
    TaggerVocab,
    check_tagger_config,
    length_batches,
    make_tag_batch,
)
from rnnkit.train.trainer import check_range, check_train_config


# ---- scores ----------------------------------------------------------------------------------
class MostFrequentTag:
    """The baseline tagger: each training word's most frequent tag; unseen words the most
    frequent tag overall."""

    def __init__(self, train: Sequence[Sentence]) -> None:
        by_word: dict[str, Counter[str]] = defaultdict(Counter)
        overall: Counter[str] = Counter()
        for tokens, tags in train:
            for w, t in zip(tokens, tags, strict=True):
                by_word[w][t] += 1
                overall[t] += 1
        if not overall:
            raise UserError("the training split holds no tagged tokens")

        def best(c: Counter[str]) -> str:
            return min(c, key=lambda t: (-c[t], t))

        self.table = {w: best(c) for w, c in by_word.items()}
        self.default = best(overall)

    def __contains__(self, word: str) -> bool:
        return word in self.table

    def tag(self, tokens: Sequence[str]) -> list[str]:
        return [self.table.get(w, self.default) for w in tokens]


class TokenAccuracy:
    """Token accuracy, overall and on unseen words, with the baseline's beside it."""

    names = ("accuracy", "unseen_accuracy", "baseline_accuracy", "baseline_unseen_accuracy")
    selection = ("accuracy", "max")  # the best checkpoint's metric

    def __init__(self, vocab: TaggerVocab, train: Sequence[Sentence]) -> None:
        self.vocab = vocab
        self.baseline = MostFrequentTag(train)

    def sums(
        self, tokens: Sequence[Sequence[str]], gold: Sequence[Sequence[str]], pred: Sequence
    ) -> dict[str, float]:
        s = dict.fromkeys(("tokens", "right", "unseen", "unseen_right", "base", "base_unseen"), 0)
        for words, g, p in zip(tokens, gold, pred, strict=True):
            for w, gt, pt, bt in zip(words, g, p, self.baseline.tag(words), strict=True):
                unseen = w not in self.baseline
                s["tokens"] += 1
                s["right"] += gt == pt
                s["base"] += gt == bt
                s["unseen"] += unseen
                s["unseen_right"] += unseen and gt == pt
                s["base_unseen"] += unseen and gt == bt
        return {k: float(v) for k, v in s.items()}

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        n, u = max(sums["tokens"], 1.0), max(sums["unseen"], 1.0)
        return {
            "accuracy": sums["right"] / n,
            "unseen_accuracy": sums["unseen_right"] / u,
            "baseline_accuracy": sums["base"] / n,
            "baseline_unseen_accuracy": sums["base_unseen"] / u,
            "unseen_share": sums["unseen"] / n,
        }


# ---- the recipe ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaggingRecipe:
    """A tagging task's own parts.

    sentences: (cfg) -> {"train": [...], "val": [...], "test": [...]}, each a list of
        ``(tokens, tags)`` pairs of equal length.
    scorer: (vocab, train sentences) -> an object with ``names``, ``selection``,
        ``sums(tokens, gold tags, predicted tags)`` (tag strings) and ``metrics(sums)``.
    constraints: (tag names) -> CRF constraints (e.g. ``rnnkit.crf.bio_constraints``), or None.
    retag: (cfg, tag set name) -> (the sentences with their gold tags in that tag set, a
        function mapping a predicted tag into it), for ``rnnkit eval --tagset``: a model's
        output scored in a coarser tag set; None: the task has one tag set.
    """

    name: str
    sentences: Callable
    scorer: Callable = TokenAccuracy
    constraints: Callable | None = None
    retag: Callable | None = None

    def build(self, cfg, cache_dir=None, rank: int = 0, world_size: int = 1, vocab=None):
        if isinstance(vocab, dict):
            vocab = TaggerVocab.from_dict(vocab)
        return TaggingTask(cfg, self, vocab=vocab, rank=rank, world_size=world_size)

    def model(self, vocab: TaggerVocab, cfg) -> Tagger:
        """The tagger for ``vocab`` and the run config ``cfg`` (its ``model`` section)."""
        constraints = None
        if cfg.model.crf and self.constraints is not None:
            constraints = self.constraints(vocab.tags)
        return Tagger(len(vocab.words), len(vocab.chars), len(vocab.tags), cfg.model, constraints)


def check_tagging_config(cfg) -> None:
    """The model, data.batch_size and train options of a tagging task (one-line errors)."""
    check_tagger_config(cfg.model)
    check_range("data", cfg.data, {"batch_size": (1, math.inf)})
    check_train_config(cfg.train)


def all_tags(splits: dict[str, list[Sentence]]) -> set[str]:
    """Every tag of the train, val and test splits (the corpus's tag set)."""
    return {
        t for name in ("train", "val", "test") for _, tags in splits.get(name, ()) for t in tags
    }


# ---- the task --------------------------------------------------------------------------------
class TaggingTask:
    """Sentences -> length-bucketed padded batches -> ``Tagger`` -> loss per token; validation
    decodes and scores (see ``rnnkit.train.task.Task``)."""

    level = "tagging"
    unit = "sentences"

    def __init__(self, cfg, recipe: TaggingRecipe, *, vocab=None, rank=0, world_size=1) -> None:
        self.cfg, self.recipe, self.rank, self.world_size = cfg, recipe, rank, world_size
        self.splits = recipe.sentences(cfg)
        train, self.val = self.splits["train"], self.splits["val"]
        if not train or not self.val:
            raise UserError(
                f"{recipe.name}: the training and validation splits need sentences, got "
                f"{len(train)} and {len(self.val)}"
            )
        if vocab is None:
            m = cfg.model
            vocab = TaggerVocab.build(train, m.min_count, m.lowercase, all_tags(self.splits))
        self.vocab = vocab
        self.scorer = recipe.scorer(vocab, train)
        self.selection = self.scorer.selection
        self.train_tokens = [list(s[0]) for s in train]
        self.train_tags = [vocab.encode_tags(s[1], recipe.name) for s in train]
        self.val_tokens = [list(s[0]) for s in self.val]
        self.val_tags = [vocab.encode_tags(s[1], recipe.name) for s in self.val]
        self.data_sizes = {"train": len(train), "val": len(self.val)}
        self.train_lengths = [len(t) for t in self.train_tokens]
        self.val_batches = length_batches([len(t) for t in self.val_tokens], cfg.data.batch_size)
        torch.manual_seed(cfg.train.seed)
        self.model = recipe.model(vocab, cfg)
        self.device = torch.device("cpu")
        self.epoch = 0
        self.batches = self._epoch_batches(0)

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        B = self.cfg.data.batch_size
        return length_batches(self.train_lengths, B, seed=self.cfg.train.seed, epoch=epoch)

    # ---- the Task protocol -------------------------------------------------------------
    def to(self, device: torch.device) -> None:
        self.device = device

    def num_train_batches(self) -> int:
        return max(1, len(self.batches) // self.world_size)

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.batches = self._epoch_batches(epoch)

    def train_batch(self, position: int):
        index = self.batches[(position * self.world_size + self.rank) % len(self.batches)]
        seed = (self.cfg.train.seed * 1_000_003 + self.epoch) * 1_000_003 + position
        return make_tag_batch(
            self.vocab,
            self.train_tokens,
            index,
            self.train_tags,
            word_dropout=self.cfg.model.word_dropout,
            rng=random.Random(seed),
        )

    def loss(self, model: nn.Module, batch) -> tuple[torch.Tensor, int]:
        b = batch.to(self.device)
        total, n = self.model.loss(b, emissions=model(b))  # through a DDP wrapper, if any
        return total / max(n, 1), n

    def evaluate(self, model: nn.Module, max_batches: int) -> dict[str, float]:
        batches = self.val_batches[:max_batches] if max_batches else self.val_batches
        sums: dict[str, float] = {"nll": 0.0, "loss_tokens": 0.0}
        tags = self.vocab.tags
        with torch.no_grad():
            for index in batches:
                b = make_tag_batch(self.vocab, self.val_tokens, index, self.val_tags)
                b = b.to(self.device)
                emissions = model(b)
                total, n = self.model.loss(b, emissions=emissions)
                sums["nll"] += float(total)
                sums["loss_tokens"] += n
                pred = self.model.decode_emissions(emissions, b.lengths)
                scores = self.scorer.sums(
                    [self.val_tokens[i] for i in index],
                    [[tags[k] for k in self.val_tags[i]] for i in index],
                    [[tags[k] for k in p] for p in pred],
                )
                for key, value in scores.items():
                    sums[key] = sums.get(key, 0.0) + value
        return sums

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        loss = sums["nll"] / max(sums["loss_tokens"], 1)
        out = {"loss": loss, **self.scorer.metrics(sums)}
        if not self.cfg.model.crf:
            out["ppl"] = perplexity(loss)
        return out

    def carried_state(self) -> dict[str, torch.Tensor]:
        # the epoch fixes the batch order; a resumed run must cut the same batches
        return {"epoch": torch.tensor([self.epoch])}

    def load_carried_state(self, tensors: dict[str, torch.Tensor]) -> None:
        if "epoch" in tensors:
            self.start_epoch(int(tensors["epoch"][0]))

    def report(self, result: dict) -> str:
        """The command line's last words after training."""
        names = [k for k in self.scorer.names if k in result]
        scores = ", ".join(f"{k} {result[k]:.4f}" for k in names)
        return (
            f"done: step {result['step']}, validation loss {result['loss']:.4f} nats/token, "
            f"{scores}, best {result['best_metric']} {result['best']:.4f}, "
            f"{result['seconds'] / 60:.1f} min"
        )
