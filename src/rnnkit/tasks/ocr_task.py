"""The OCR task's configuration, data pipeline and training task (registered in ``ocr.py``).

A line image, 32 pixels high, is read column by column (``ocr_model.LineReader``: conv front
end, bidirectional recurrent layers, a log-softmax per frame over the alphabet plus a blank)
and trained with the CTC loss (``rnnkit.ctc.ctc_loss``) against the line's characters; the
output is decoded greedily, or by prefix beam search with a character language model
(``rnnkit predict`` / ``rnnkit eval``, in ``ocr_commands``).

Data (``ocr_data``, generated, seeded): ``data.source text`` renders lines of the bundled
Shakespeare (or ``--data FILE``, any UTF-8 text) in the fonts matplotlib ships; ``data.source
digits`` builds lines of scikit-learn's 8x8 handwritten digits. Held out, fixed: the works of
``ocr_data.TEST_WORKS`` (a file: its last 10% of lines), rendered in the training fonts
(split ``test``) and in ``data.holdout_fonts``, never used in training (split ``test_fonts``);
for digits, lines made of the 20% of the digit images never used in training (split
``test``). Validation during training: the work(s) ``ocr_data.VAL_WORKS`` in training fonts,
or held-out validation digit images.

Training batches: every epoch renders a pool of ``epoch_batches x batch_size`` lines from the
seed (data.seed, epoch), sorts it by width and cuts it into batches (so a batch's lines are
about equally wide and little is padding), in a shuffled order; a resumed run renders the same
pool. Rendering costs about 2-3 ms a line in the main process (measured in docs/ocr.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.config import option
from rnnkit.errors import UserError
from rnnkit.tasks import ocr_data as D
from rnnkit.tasks.base import EpochBatches
from rnnkit.tasks.ocr_model import LineReader, OCRModelConfig
from rnnkit.train.trainer import TrainConfig, check_range, check_train_config

MAX_WIDTH = 4096  # widest line (pixels, at height 32) the model reads: 1,024 frames at stride 4
VAL_SEED, TEST_SEED = 1_000_003, 2_000_003  # the fixed validation and test renderings


@dataclass
class OCRDataConfig:
    source: Literal["text", "digits"] = option(
        "text", "text: rendered lines of text; digits: lines of handwritten 8x8 digits"
    )
    path: str | None = option(None, "a UTF-8 text file; none: the bundled Shakespeare")
    max_chars: int = option(40, "longest line in characters (longer lines are cut at words)")
    holdout_fonts: list[str] = option(
        D.DEFAULT_HOLDOUT, "fonts never used in training, for the test_fonts split"
    )
    batch_size: int = option(32, "B, lines per batch (the global batch across processes)")
    epoch_batches: int = option(200, "batches per epoch: one pool of rendered lines")
    val_lines: int = option(256, "validation lines (rendered once)")
    test_lines: int = option(500, "rnnkit eval: test lines per held-out split")
    seed: int = option(1, "seed of the training lines (with the epoch)")


@dataclass
class OCRConfig:
    model: OCRModelConfig = field(default_factory=OCRModelConfig)
    data: OCRDataConfig = field(default_factory=OCRDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass(frozen=True)
class Alphabet:
    """The characters a run reads; label i + 1 is ``chars[i]`` (0 is the CTC blank)."""

    chars: str

    def __len__(self) -> int:
        return len(self.chars) + 1  # with the blank

    def encode(self, text: str) -> list[int]:
        index = {c: i + 1 for i, c in enumerate(self.chars)}
        return [index[c] for c in text if c in index]

    def decode(self, labels: list[int]) -> str:
        return "".join(self.chars[i - 1] for i in labels if 0 < i <= len(self.chars))

    def to_dict(self) -> dict:
        return {"alphabet": self.chars}


def load_alphabet(saved: object) -> Alphabet:
    if not isinstance(saved, dict) or not isinstance(saved.get("alphabet"), str):
        raise UserError("checkpoint: its vocabulary is not an OCR alphabet")
    return Alphabet(saved["alphabet"])


# ---- the lines ---------------------------------------------------------------------------------
class Lines:
    """Where a config's line images come from: texts (by split) and fonts, or digit images."""

    def __init__(self, d: OCRDataConfig) -> None:
        self.source = d.source
        if d.source == "digits":
            self.splits = D.digit_split()
            self.alphabet = Alphabet("0123456789")
            return
        self.holdout = D.check_fonts(list(d.holdout_fonts), "data.holdout_fonts")
        self.fonts = D.training_fonts(self.holdout)
        if not self.fonts:
            raise UserError("option 'data.holdout_fonts' holds out every font: none to train on")
        self.texts = D.corpus_lines(d.path, d.max_chars, self.fonts, self.holdout)
        chars = set().union(*(set(line) for v in self.texts.values() for line in v))
        self.alphabet = Alphabet("".join(sorted(chars)))

    def plan(self, split: str, n: int, seed: int) -> list[tuple[str, str]]:
        """(text, font) of the ``n`` lines ``draw`` renders (text source only)."""
        texts = self.texts["test" if split == "test_fonts" else split]
        fonts = self.holdout if split == "test_fonts" else self.fonts
        chosen = np.random.default_rng([seed, 7]).integers(0, len(texts), n)
        out = []
        for i, j in enumerate(chosen):
            usable = D.fonts_for(texts[j], fonts) or fonts
            pick = np.random.default_rng([seed, i, 5]).integers(len(usable))
            out.append((texts[j], usable[int(pick)]))
        return out

    def draw(self, split: str, n: int, seed: int) -> list[tuple[np.ndarray, str]]:
        """``n`` line images (uint8, HEIGHT x W, ink high) of ``split`` with their texts: a pure
        function of (split, n, seed). Splits: train, val, test and (text) test_fonts, the test
        texts in the held-out fonts."""
        if self.source == "digits":
            pool = self.splits["test" if split == "test_fonts" else split]
            out = []
            for i in range(n):
                img, text, _ = D.render_digits(pool, np.random.default_rng([seed, i]))
                out.append((_quantise(img), text))
            return out
        return [
            (_quantise(D.render_text(text, font, np.random.default_rng([seed, i]))), text)
            for i, (text, font) in enumerate(self.plan(split, n, seed))
        ]


def _quantise(img: np.ndarray) -> np.ndarray:
    return np.round(img * 255).astype(np.uint8)


@dataclass
class Batch:
    x: Tensor  # (B, 1, HEIGHT, W) float in [0, 1], zero padding on the right
    widths: Tensor  # (B,)
    targets: list[list[int]]
    texts: list[str]


def collate(lines: list[tuple[np.ndarray, str]], alphabet: Alphabet) -> Batch:
    widths = [img.shape[1] for img, _ in lines]
    x = np.zeros((len(lines), 1, D.HEIGHT, max(widths)), np.float32)
    for i, (img, _) in enumerate(lines):
        x[i, 0, :, : img.shape[1]] = img / 255.0
    texts = [t for _, t in lines]
    targets = [alphabet.encode(t) for t in texts]
    return Batch(torch.from_numpy(x), torch.tensor(widths), targets, texts)


def by_width(lines: list[tuple[np.ndarray, str]], batch_size: int) -> list[list[int]]:
    """Indices of ``lines`` in batches of about equal width (sorted, then cut)."""
    order = sorted(range(len(lines)), key=lambda i: lines[i][0].shape[1])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


# ---- the task ----------------------------------------------------------------------------------
class OCRTask(EpochBatches):
    """Line images -> CTC over characters (see ``rnnkit.train.task.Task``)."""

    level = "char"
    unit = "lines"
    selection = ("cer", "min")

    def __init__(self, cfg: OCRConfig, *, rank=0, world_size=1, vocab: Alphabet | None = None):
        self.cfg, self.rank, self.world_size = cfg, rank, world_size
        B = cfg.data.batch_size
        if B % world_size:
            raise UserError(
                f"option 'data.batch_size' ({B}) must be a multiple of the process count "
                f"({world_size})"
            )
        self.lines = Lines(cfg.data)
        self.vocab = vocab or self.lines.alphabet
        missing = set(self.lines.alphabet.chars) - set(self.vocab.chars)
        if missing:
            raise UserError(f"the data has characters the run's alphabet lacks: {sorted(missing)}")
        share = slice(
            rank * cfg.data.val_lines // world_size, (rank + 1) * cfg.data.val_lines // world_size
        )
        self.val = self.lines.draw("val", cfg.data.val_lines, VAL_SEED)[share]
        self.data_sizes = {"train": cfg.data.epoch_batches * B, "val": cfg.data.val_lines}
        torch.manual_seed(cfg.train.seed)  # the same initial weights in every process
        self.model = LineReader(len(self.vocab), cfg.model)
        self.device = torch.device("cpu")
        self.epoch, self.pool, self.batches = -1, [], []

    def start_epoch(self, epoch: int) -> None:
        if epoch == self.epoch and self.pool:
            return
        d = self.cfg.data
        self.epoch = epoch
        self.pool = self.lines.draw(
            "train", d.epoch_batches * d.batch_size, d.seed * 1_000_003 + epoch
        )
        batches = by_width(self.pool, d.batch_size)
        order = np.random.default_rng([d.seed, epoch, 11]).permutation(len(batches))
        self.batches = [batches[i] for i in order]

    def train_batch(self, position: int) -> Batch:
        if self.epoch < 0:
            self.start_epoch(0)
        rows = self.batches[position % len(self.batches)]
        n = len(rows)
        rows = rows[self.rank * n // self.world_size : (self.rank + 1) * n // self.world_size]
        return collate([self.pool[i] for i in rows], self.vocab)

    def _loss(self, model: nn.Module, batch: Batch, reduction: str = "mean"):
        from rnnkit.ctc import ctc_loss

        log_probs, lengths = model(batch.x.to(self.device), batch.widths.to(self.device))
        loss = ctc_loss(
            log_probs, batch.targets, lengths, blank=0, reduction=reduction, zero_infinity=True
        )
        return loss, log_probs, lengths

    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, int]:
        loss, _, _ = self._loss(model, batch)
        return loss, sum(len(t) for t in batch.targets)

    def evaluate(self, model: nn.Module, max_batches: int) -> dict[str, float]:
        from rnnkit.ctc import greedy_decode

        batches = by_width(self.val, self.cfg.data.batch_size)
        if max_batches:
            batches = batches[:max_batches]
        sums = {"nll": 0.0, "chars": 0.0}
        refs, hyps = [], []
        with torch.no_grad():
            for rows in batches:
                batch = collate([self.val[i] for i in rows], self.vocab)
                loss, log_probs, lengths = self._loss(model, batch, "sum")
                sums["nll"] += float(loss)
                sums["chars"] += sum(len(t) for t in batch.targets)
                refs += batch.texts
                hyps += [self.vocab.decode(y) for y in greedy_decode(log_probs, lengths)]
        sums.update(error_sums(refs, hyps))
        return sums

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        return {
            "loss": sums["nll"] / max(sums["chars"], 1.0),
            "cer": sums["char_errors"] / max(sums["ref_chars"], 1.0),
            "wer": sums["word_errors"] / max(sums["ref_words"], 1.0),
            "line_accuracy": sums["lines_right"] / max(sums["lines"], 1.0),
        }

    def carried_state(self) -> dict[str, Tensor]:
        return {"epoch": torch.tensor(max(self.epoch, 0))}

    def load_carried_state(self, tensors: dict[str, Tensor]) -> None:
        epoch = int(tensors["epoch"]) if "epoch" in tensors else 0
        if epoch != self.epoch:
            self.pool = []
            self.start_epoch(epoch)

    def report(self, result: dict) -> str:
        return (
            f"done: step {result['step']}, validation CER {100 * result['cer']:.2f}%, WER "
            f"{100 * result['wer']:.2f}%, lines right {100 * result['line_accuracy']:.1f}% "
            f"(greedy), loss {result['loss']:.4f} nats/char, {result['seconds'] / 60:.1f} min"
        )


def error_sums(refs: list[str], hyps: list[str]) -> dict[str, float]:
    """Character and word errors (edit distances) summed over the lines, and the totals."""
    from rnnkit.ctc.metrics import edit_distances

    return {
        "char_errors": float(sum(edit_distances(refs, hyps, "char"))),
        "ref_chars": float(sum(len(r) for r in refs)),
        "word_errors": float(sum(edit_distances(refs, hyps, "word"))),
        "ref_words": float(sum(len(r.split()) for r in refs)),
        "lines_right": float(sum(r == h for r, h in zip(refs, hyps, strict=True))),
        "lines": float(len(refs)),
    }


# ---- options, presets, registration ------------------------------------------------------------
def check(cfg: OCRConfig) -> None:
    from rnnkit.tasks.base import check_library_options

    inf = math.inf
    check_range(
        "data",
        cfg.data,
        {
            "max_chars": (1, 250),
            "batch_size": (1, 4096),
            "epoch_batches": (1, inf),
            "val_lines": (1, inf),
            "test_lines": (1, inf),
        },
    )
    check_range("model", cfg.model, {"hidden_size": (1, inf), "num_layers": (1, inf)})
    if cfg.data.source == "text":
        D.check_fonts(list(cfg.data.holdout_fonts), "data.holdout_fonts")
    elif cfg.data.path is not None:
        raise UserError("option 'data.path' (--data) is for data.source text, not digits")
    check_library_options("model", cfg.model, lambda: LineReader(2, cfg.model))
    check_train_config(cfg.train)


def build(cfg: OCRConfig, cache_dir=None, rank: int = 0, world_size: int = 1, vocab=None):
    return OCRTask(cfg, rank=rank, world_size=world_size, vocab=vocab)


def default() -> OCRConfig:
    """Conv(3 layers) + 2 bidirectional LSTM layers of 128: the 30-minute run (docs/ocr.md)."""
    cfg = OCRConfig()
    t = cfg.train
    t.lr, t.warmup_steps, t.schedule, t.clip_norm = 3e-3, 100, "cosine", 5.0
    t.max_steps, t.max_minutes, t.eval_every, t.checkpoint_every = 6000, 30.0, 250, 250
    t.log_every, t.eval_batches = 25, 0
    t.threads = 1  # measured: 2 threads are 10x slower on a shared 2-core machine
    return cfg


def tiny() -> OCRConfig:
    """Seconds: for tests and trying the commands."""
    cfg = default()
    m, d, t = cfg.model, cfg.data, cfg.train
    m.conv, m.channels, m.hidden_size, m.num_layers = 2, 4, 16, 1
    d.max_chars, d.batch_size, d.epoch_batches, d.val_lines, d.test_lines = 12, 8, 10, 16, 16
    t.max_steps, t.max_minutes, t.warmup_steps, t.lr = 30, 0.0, 2, 1e-2
    t.eval_every, t.checkpoint_every, t.log_every = 15, 15, 5
    return cfg
