"""A generic text classifier as a trainable task: sentences -> one label each (many-to-one).

The data (``text_classify_data``: readers, the fixed 80/10/10 split by a hash of the
sentence, the vocabulary, padded batches) and the model (``text_classify_model``) are
task-independent; a task (``rnnkit train sentiment``) supplies the default file and the
presets. Training batches are length-bucketed and reshuffled every epoch from (data.seed,
epoch), so a resumed run sees the batches it would have seen. Loss: cross-entropy of the
softmax over the classes; the best checkpoint is the one with the highest validation
accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.config import option
from rnnkit.errors import UserError
from rnnkit.tasks.text_classify_data import (
    TextBatch,
    TextVocab,
    bucketed_order,
    make_batch,
    read_examples,
    split_examples,
)
from rnnkit.tasks.text_classify_model import TextClassifier, TextClassifierConfig, init_from_lm
from rnnkit.train.restore import LoadedModel, model_loader
from rnnkit.train.trainer import TrainConfig, check_range, check_train_config


@dataclass
class TextDataConfig:
    path: str | None = option(None, "the data file (text<TAB>label, or the snippets format)")
    format: Literal["auto", "tsv", "snippets"] = option(
        "auto", "tsv: text<TAB>label; snippets: id<TAB>rating<TAB>sentence (label: sign)"
    )
    lowercase: bool = option(True, "lower-case the text before tokenising")
    max_vocab: int = option(20000, "the word vocabulary cap (with <pad> and <unk>)")
    min_count: int = option(1, "training words seen fewer times become <unk>")
    batch_size: int = option(32, "B, sentences per batch (the global batch across processes)")
    seed: int = option(1, "seed of each epoch's shuffle (with the epoch)")


@dataclass
class TextClassifyConfig:
    model: TextClassifierConfig = field(default_factory=TextClassifierConfig)
    data: TextDataConfig = field(default_factory=TextDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def check_text_classify_config(cfg: TextClassifyConfig) -> None:
    """Impossible options as one line naming the option, before a run directory exists."""
    from rnnkit.tasks.base import check_library_options

    inf = math.inf
    m = cfg.model
    check_range(
        "model",
        m,
        {
            "embedding_size": (1, inf),
            "char_embedding_size": (1, inf),
            "char_hidden_size": (1, inf),
            "attention_size": (1, inf),
            "dropout": (0, 0.95),
            "word_dropout": (0, 0.95),
            "rating_weight": (0, inf),
            "ngrams": (0, 5),
        },
    )
    if m.init_from is not None and m.level == "char":
        raise UserError("option 'model.init_from' copies a word embedding: needs model.level word")
    if m.init_from is not None and not Path(m.init_from).exists():
        raise UserError(f"option 'model.init_from': {m.init_from} does not exist")
    check_library_options("model", m, lambda: TextClassifier(4, 4, 2, m))
    d = cfg.data
    check_range("data", d, {"max_vocab": (3, inf), "min_count": (1, inf), "batch_size": (1, inf)})
    check_train_config(cfg.train)


class TextClassifyTask:
    """Sentence classification (see ``rnnkit.train.task.Task``).

    Args:
        cfg: the run config.
        path: the data file.
        rank, world_size: this process's share of each batch and of the validation set.
        vocab: a saved vocabulary (a resumed run), else built from the training split.
    """

    level = "text"
    unit = "sentences"
    selection = ("accuracy", "max")

    def __init__(
        self,
        cfg: TextClassifyConfig,
        path: Path,
        *,
        rank: int = 0,
        world_size: int = 1,
        vocab: TextVocab | None = None,
    ) -> None:
        self.cfg, self.rank, self.world_size = cfg, rank, world_size
        d = cfg.data
        if d.batch_size % world_size:
            raise UserError(
                f"option 'data.batch_size' ({d.batch_size}) must be a multiple of the process "
                f"count ({world_size})"
            )
        self.splits = split_examples(read_examples(path, d.format))
        if not self.splits["train"] or not self.splits["val"]:
            raise UserError(
                f"{path}: too few examples to split (train {len(self.splits['train'])}, "
                f"validation {len(self.splits['val'])}): the split is 80/10/10 by sentence"
            )
        if cfg.model.rating_weight > 0 and not any(
            e.rating is not None for e in self.splits["train"]
        ):
            raise UserError(
                f"option 'model.rating_weight' needs ratings to regress: {path} has none "
                "(only the snippets format id<TAB>rating<TAB>sentence has them)"
            )
        self.vocab = vocab or TextVocab.build(
            self.splits["train"], d.max_vocab, d.min_count, d.lowercase, cfg.model.ngrams
        )
        self.data_sizes = {s: len(self.splits[s]) for s in ("train", "val", "test")}
        self.encoded = {
            s: [self.vocab.encode(e.text) for e in exs] for s, exs in self.splits.items()
        }
        self.train_lengths = [len(ids) for _, ids in self.encoded["train"]]
        torch.manual_seed(cfg.train.seed)  # the same initial weights in every process
        m = cfg.model
        self.model = TextClassifier(
            len(self.vocab), len(self.vocab.chars), self.num_classes, m, len(self.vocab.ngrams)
        )
        self.init_report = None
        if m.init_from is not None and vocab is None:  # a resumed run has its weights already
            self.init_report = init_from_lm(self.model, self.vocab.words, m.init_from)
            r = self.init_report
            print(
                f"init_from {r['run']}: {r['words_mapped']} of {r['words']} words mapped; "
                f"copied {', '.join(r['copied'])}"
            )
        self.device = torch.device("cpu")
        self.epoch, self.batches = 0, []
        self.start_epoch(0)

    @property
    def num_classes(self) -> int:
        return len(self.vocab.classes)

    def batch_of(self, split: str, positions: list[int]) -> TextBatch:
        exs = [self.splits[split][i] for i in positions]
        encoded = [self.encoded[split][i] for i in positions]
        chars = self.cfg.model.level != "word"
        labels, ratings = [e.label for e in exs], [e.rating for e in exs]
        return make_batch(
            self.vocab, [], labels, positions, chars=chars, encoded=encoded, ratings=ratings
        )

    # ---- the Task protocol -------------------------------------------------------------
    def to(self, device: torch.device) -> None:
        self.device = device

    def num_train_batches(self) -> int:
        return len(self.batches)

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        seed = self.cfg.data.seed * 1_000_003 + epoch
        self.batches = bucketed_order(self.train_lengths, self.cfg.data.batch_size, seed)

    def train_batch(self, position: int) -> TextBatch:
        rows = self.batches[position % len(self.batches)]
        n = len(rows)
        mine = rows[self.rank * n // self.world_size : (self.rank + 1) * n // self.world_size]
        return self.batch_of("train", mine or rows[:1])

    def loss(self, model: nn.Module, batch: TextBatch) -> tuple[Tensor, int]:
        batch = batch.to(self.device)
        if self.cfg.model.rating_weight == 0:
            logits, _ = model(batch)
            return F.cross_entropy(logits, batch.labels), batch.labels.numel()
        logits, _, rating = model(batch, with_rating=True)
        rated = ~torch.isnan(batch.ratings)
        squared = (rating - batch.ratings.nan_to_num() / 4).pow(2) * rated  # r in [-4, 4]
        aux = squared.sum() / rated.sum().clamp(min=1)
        return F.cross_entropy(logits, batch.labels) + self.cfg.model.rating_weight * aux, len(
            batch.labels
        )

    def evaluate(self, model: nn.Module, max_batches: int) -> dict[str, float]:
        return evaluate_split(model, self, "val", max_batches, self.rank, self.world_size)[0]

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        n = max(sums["n"], 1.0)
        return {"loss": sums["nll"] / n, "accuracy": sums["correct"] / n}

    def carried_state(self) -> dict[str, Tensor]:
        return {"epoch": torch.tensor(self.epoch)}

    def load_carried_state(self, tensors: dict[str, Tensor]) -> None:
        if "epoch" in tensors:
            self.start_epoch(int(tensors["epoch"]))

    def report(self, result: dict) -> str:
        return (
            f"done: step {result['step']}, validation accuracy {result.get('accuracy', 0):.4f} "
            f"(majority class {self.majority_share('val'):.4f}), "
            f"{result['seconds'] / 60:.1f} min"
        )

    def majority_share(self, split: str) -> float:
        """The share of ``split`` in the training split's most frequent class (the input-blind
        baseline)."""
        from collections import Counter

        top = Counter(e.label for e in self.splits["train"]).most_common(1)[0][0]
        exs = self.splits[split]
        return sum(e.label == top for e in exs) / max(len(exs), 1)


@torch.no_grad()
def evaluate_split(
    model: nn.Module,
    task: TextClassifyTask,
    split: str,
    max_batches: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[dict[str, float], Tensor]:
    """``evaluate_examples`` on this process's share of a task's split."""
    exs = task.splits[split]
    mine = range(rank * len(exs) // world_size, (rank + 1) * len(exs) // world_size)
    return evaluate_examples(model, task.vocab, exs, task.device, list(mine), max_batches)


@torch.no_grad()
def evaluate_examples(
    model: nn.Module,
    vocab: TextVocab,
    exs: list,
    device: torch.device,
    positions: list[int] | None = None,
    max_batches: int = 0,
    batch_size: int = 128,
) -> tuple[dict[str, float], Tensor]:
    """Sums (nll, n, correct) over examples ``exs`` (those at ``positions``; None: all) and
    the predicted class of each example in order (-1 where not scored)."""
    was_training = model.training
    model.eval()
    mine = range(len(exs)) if positions is None else positions
    order = sorted(mine, key=lambda i: len(exs[i].text))  # similar lengths: little padding
    starts = range(0, len(order), batch_size)
    if max_batches:
        starts = starts[:max_batches]
    sums = {"nll": 0.0, "n": 0.0, "correct": 0.0}
    predicted = torch.full((len(exs),), -1, dtype=torch.long)
    for s in starts:
        rows = order[s : s + batch_size]
        picked = [exs[i] for i in rows]
        texts, labels = [e.text for e in picked], [e.label for e in picked]
        chars = getattr(model, "char_rnn", None) is not None
        batch = make_batch(vocab, texts, labels, rows, chars=chars).to(device)
        logits, _ = model(batch)
        guess = logits.argmax(-1)
        known = batch.labels >= 0  # a label the training split never had counts as wrong
        sums["nll"] += (
            float(F.cross_entropy(logits[known], batch.labels[known], reduction="sum"))
            if bool(known.any())
            else 0.0
        )
        sums["n"] += batch.labels.numel()
        sums["correct"] += float((guess == batch.labels).sum())
        predicted[batch.index] = guess.cpu()
    model.train(was_training)
    return sums, predicted


# ---- a trained run ---------------------------------------------------------------------------
@dataclass
class LoadedClassifier(LoadedModel):
    model: TextClassifier
    vocab: TextVocab
    cfg: TextClassifyConfig


def build_model(cfg: TextClassifyConfig, vocab: TextVocab) -> TextClassifier:
    sizes = len(vocab), len(vocab.chars), len(vocab.classes)
    return TextClassifier(*sizes, cfg.model, len(vocab.ngrams))


def loader(config_class: type) -> object:
    """A ``TaskSpec.load`` for a text-classification task whose config is ``config_class``."""
    return model_loader(LoadedClassifier, config_class, build_model, TextVocab.from_dict)


@dataclass
class Classified:
    """One sentence's prediction: the label, its probability, every class's probability, the
    tokens the model read and their attention weights (pool attention, else None)."""

    label: str
    probability: float
    probabilities: dict[str, float]
    tokens: list[str]
    attention: list[float] | None


@torch.no_grad()
def classify(loaded: LoadedClassifier, texts: list[str]) -> list[Classified]:
    """The model applied to each text (one at a time: no padding, exact attention)."""
    out = []
    for text in texts:
        batch = make_batch(loaded.vocab, [text], [None], [0])
        logits, alpha = loaded.model(batch)
        p = F.softmax(logits[0], -1)
        k = int(p.argmax())
        tokens = loaded.vocab.encode(text)[0] or ["<unk>"]
        out.append(
            Classified(
                loaded.vocab.classes[k],
                float(p[k]),
                {c: float(p[i]) for i, c in enumerate(loaded.vocab.classes)},
                tokens,
                None if alpha is None else alpha[:, 0].tolist(),
            )
        )
    return out
