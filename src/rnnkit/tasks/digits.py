"""Pixel-by-pixel digits: ``rnnkit train digits``.

scikit-learn's bundled 8x8 handwritten digits (``sklearn.datasets.load_digits``: 1797 images,
read from the package, no download; UCI "Optical Recognition of Handwritten Digits", Alpaydin &
Kaynak 1998), each read as a sequence of 64 pixels in raster order (intensity / 16, one
feature per step) and classified from the last step: the small sibling of pixel-by-pixel MNIST
(Le, Jaitly & Hinton 2015).

A fixed validation split (``data.val_fraction`` of the images, chosen by a permutation seeded
with ``data.split_seed``); training batches are ``B`` images drawn without replacement from
the training split by a generator seeded from (data.seed, epoch, position), so a resumed run
sees the same batches.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from rnnkit.config import option
from rnnkit.tasks import TaskSpec, register
from rnnkit.tasks.sequence_task import (
    Problem,
    SeqModelConfig,
    SequenceTask,
    check_model_config,
    loader,
)
from rnnkit.train.trainer import TrainConfig, check_range, check_train_config

SIDE = 8  # the images are 8x8: sequences of 64 steps
CLASSES = 10


@dataclass
class DigitsDataConfig:
    batch_size: int = option(32, "B, images per batch (the global batch across processes)")
    epoch_batches: int = option(45, "batches per epoch (about one pass over the training split)")
    val_fraction: float = option(0.2, "fraction of the images held out for validation")
    split_seed: int = option(0, "seed of the fixed train/validation split")
    seed: int = option(1, "seed of the training batches (with the epoch and position)")


@dataclass
class DigitsConfig:
    model: SeqModelConfig = field(default_factory=SeqModelConfig)
    data: DigitsDataConfig = field(default_factory=DigitsDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@functools.cache
def load_sequences() -> tuple[Tensor, Tensor]:
    """All 1797 digits as pixel sequences: x float32 (64, N, 1) in [0, 1], y int64 (N,)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32) / 16.0  # (N, 8, 8)
    x = images.reshape(len(images), SIDE * SIDE).T.unsqueeze(-1).contiguous()  # (64, N, 1)
    return x, torch.as_tensor(digits.target, dtype=torch.long)


def split(val_fraction: float, split_seed: int) -> tuple[Tensor, Tensor]:
    """Indices (train, validation) of a fixed split."""
    n = load_sequences()[1].numel()
    order = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    n_val = max(1, round(val_fraction * n))
    return order[n_val:], order[:n_val]


def digits_problem(cfg: DigitsConfig) -> Problem:
    x, y = load_sequences()
    train, val = split(cfg.data.val_fraction, cfg.data.split_seed)

    def generate(batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        rows = train[torch.randperm(len(train), generator=generator)[:batch]]
        return x[:, rows], y[rows]

    # The best input-blind guess: the training split's most frequent class.
    majority = int(torch.bincount(y[train], minlength=CLASSES).argmax())
    baseline = float((y[val] == majority).float().mean())
    return Problem(
        generate=generate,
        scoring="ce",
        many_to_one=True,
        input_size=1,
        output_size=CLASSES,
        baseline=("baseline_accuracy", baseline),
        metric="accuracy",
        validation=(x[:, val], y[val]),
    )


def check(cfg: DigitsConfig) -> None:
    check_model_config(cfg.model)
    n_train = len(split(cfg.data.val_fraction, cfg.data.split_seed)[0])
    check_range(
        "data",
        cfg.data,
        {
            "batch_size": (1, n_train),
            "epoch_batches": (1, math.inf),
            "val_fraction": (0.01, 0.5),
        },
    )
    check_train_config(cfg.train)


def build(cfg: DigitsConfig, cache_dir=None, rank: int = 0, world_size: int = 1, vocab=None):
    return SequenceTask(cfg, digits_problem(cfg), rank=rank, world_size=world_size)


def default() -> DigitsConfig:
    """An LSTM over the 64 pixels: a few minutes on 2 CPU cores."""
    cfg = DigitsConfig()
    m, t = cfg.model, cfg.train
    m.cell, m.hidden_size = "lstm", 64
    t.lr, t.warmup_steps, t.schedule, t.clip_norm = 3e-3, 50, "cosine", 1.0
    t.max_steps, t.max_minutes, t.eval_every = 3000, 5.0, 250
    t.checkpoint_every, t.log_every = 500, 25
    return cfg


def tiny() -> DigitsConfig:
    cfg = default()
    m, t = cfg.model, cfg.train
    m.hidden_size = 16
    t.lr, t.warmup_steps, t.max_steps, t.max_minutes = 1e-2, 5, 40, 0.0
    t.eval_every, t.checkpoint_every, t.log_every = 20, 20, 5
    return cfg


SPEC = register(
    TaskSpec(
        name="digits",
        description="pixel-by-pixel 8x8 digits (scikit-learn's load_digits), 64 steps, many-to-one",
        presets={"default": default, "tiny": tiny},
        build=build,
        check=check,
        load=loader(DigitsConfig, digits_problem),
    )
)
