"""Fashion-MNIST row by row or pixel by pixel: ``rnnkit train fashion``.

Each 28x28 image (``fashion_data``: the IDX reader, the orders) is read by a recurrent network
as a sequence, and the class (one of 10 kinds of clothing) is read out from the last step:

    h_t = cell(x_t, h_{t-1}),   p(y | image) = softmax(W h_T + b)

with x_t row t of the image (``data.order row``, T = 28, 28 features a step) or pixel t
(``data.order pixel``, T = 784, one feature a step, ``data.permute true`` for a fixed random
order of the pixels: Le, Jaitly & Hinton 2015's long-range benchmark). Any cell of the generic
sequence task works (``--model.cell``), chrono initialisation too (``--model.chrono_t_max``,
Tallec & Ollivier 2018; T = 784 for pixels).

Splits: ``data.val_size`` of the 60,000 training images are held out for validation (chosen by
a permutation seeded with ``data.split_seed``, the same in every run); the 10,000 test images
are scored only by ``rnnkit eval RUN``. Training batches are ``B`` images drawn without
replacement from the rest (or its first ``data.train_size``), by a generator seeded from
(data.seed, epoch, position), so a resumed run sees the same batches.

Presets: ``default`` (row by row, an LSTM, 10 minutes), ``pixel`` (pixel by pixel, 30
minutes), ``tiny`` (a few hundred images, for tests). Measured runs: docs/classification.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from rnnkit.config import option
from rnnkit.errors import UserError
from rnnkit.tasks import TaskSpec, register
from rnnkit.tasks.fashion_commands import cmd_eval, cmd_predict, predict_one
from rnnkit.tasks.fashion_data import CLASSES, SIDE, load_split, order_of, split, to_sequences
from rnnkit.tasks.sequence_task import (
    Problem,
    SeqModelConfig,
    SequenceTask,
    check_model_config,
    loader,
)
from rnnkit.train.trainer import TrainConfig, check_range, check_train_config

TRAIN_IMAGES = 60_000


@dataclass
class FashionDataConfig:
    path: str | None = option(
        None, "directory of the four IDX files; none: ../shared/data/images/fashion_mnist"
    )
    order: Literal["row", "pixel"] = option(
        "row", "row: 28 steps of 28 pixels; pixel: 784 steps of one pixel"
    )
    permute: bool = option(False, "pixel order: the pixels in a fixed random order")
    permute_seed: int = option(0, "seed of that fixed permutation")
    val_size: int = option(5000, "training images held out for validation")
    split_seed: int = option(0, "seed of the fixed train/validation split")
    train_size: int = option(0, "train on only this many of the other images (0: all)")
    batch_size: int = option(128, "B, images per batch (the global batch across processes)")
    epoch_batches: int = option(430, "batches per epoch (about one pass over 55,000 images)")
    seed: int = option(1, "seed of the training batches (with the epoch and position)")


@dataclass
class FashionConfig:
    model: SeqModelConfig = field(default_factory=SeqModelConfig)
    data: FashionDataConfig = field(default_factory=FashionDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def fashion_problem(cfg: FashionConfig, with_data: bool = True) -> Problem:
    """The data and scoring; ``with_data`` False: only the shapes (to load a trained model)."""
    order, perm = order_of(cfg.data)
    shapes = {
        "scoring": "ce",
        "many_to_one": True,
        "input_size": SIDE if order == "row" else 1,
        "output_size": len(CLASSES),
        "metric": "accuracy",
    }
    if not with_data:
        return Problem(generate=_no_data, baseline=("baseline_accuracy", 0.1), **shapes)
    images, labels = load_split(cfg.data.path, "train")
    train, val = split(cfg.data, len(images))

    def generate(batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        rows = train[torch.randperm(len(train), generator=generator)[:batch]]
        return to_sequences(images[rows], order, perm), labels[rows]

    # The best input-blind guess: the training split's most frequent class.
    majority = int(torch.bincount(labels[train], minlength=len(CLASSES)).argmax())
    baseline = float((labels[val] == majority).float().mean())
    validation = (to_sequences(images[val], order, perm), labels[val])
    return Problem(
        generate=generate,
        baseline=("baseline_accuracy", baseline),
        validation=validation,
        **shapes,
    )


def _no_data(batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    raise RuntimeError("a loaded fashion run has no training data")


def check(cfg: FashionConfig) -> None:
    check_model_config(cfg.model)
    d = cfg.data
    if d.permute and d.order != "pixel":
        raise UserError("option 'data.permute' applies to data.order pixel, not row")
    check_range("data", d, {"val_size": (1, TRAIN_IMAGES // 2), "train_size": (0, math.inf)})
    images, _ = load_split(d.path, "train")  # a missing or malformed file: one line, now
    n_train = len(split(d, len(images))[0])
    if d.val_size >= len(images):
        raise UserError(
            f"option 'data.val_size' ({d.val_size}) leaves no training image of {len(images)}"
        )
    check_range("data", d, {"batch_size": (1, n_train), "epoch_batches": (1, math.inf)})
    check_train_config(cfg.train)


def build(cfg: FashionConfig, cache_dir=None, rank: int = 0, world_size: int = 1, vocab=None):
    return SequenceTask(cfg, fashion_problem(cfg), rank=rank, world_size=world_size)


def default() -> FashionConfig:
    """Row by row: an LSTM (128 units) over 28 rows, 10 minutes on one CPU thread."""
    cfg = FashionConfig()
    m, t = cfg.model, cfg.train
    m.cell, m.hidden_size = "lstm", 128
    t.lr, t.warmup_steps, t.schedule, t.clip_norm = 2e-3, 100, "cosine", 1.0
    t.max_steps, t.max_minutes, t.eval_every = 20_000, 10.0, 500
    t.checkpoint_every, t.log_every, t.min_lr_ratio = 500, 50, 0.05
    return cfg


def pixel() -> FashionConfig:
    """Pixel by pixel: 784 steps, an LSTM (64 units), 30 minutes; validation on 2,000 images."""
    cfg = default()
    m, d, t = cfg.model, cfg.data, cfg.train
    m.hidden_size = 64
    d.order, d.batch_size, d.val_size = "pixel", 64, 2000
    d.epoch_batches = (TRAIN_IMAGES - d.val_size) // d.batch_size
    t.lr, t.warmup_steps, t.max_minutes = 2e-3, 100, 30.0
    t.eval_every, t.checkpoint_every, t.log_every = 200, 100, 10
    return cfg


def tiny() -> FashionConfig:
    """For tests: 256 images row by row, 16 units, a few seconds."""
    cfg = default()
    m, d, t = cfg.model, cfg.data, cfg.train
    m.hidden_size = 16
    d.train_size, d.val_size, d.batch_size, d.epoch_batches = 256, 256, 32, 8
    t.lr, t.warmup_steps, t.max_steps, t.max_minutes = 1e-2, 5, 40, 0.0
    t.eval_every, t.checkpoint_every, t.log_every = 20, 20, 5
    return cfg


SPEC = register(
    TaskSpec(
        name="fashion",
        description="Fashion-MNIST row by row (28 steps) or pixel by pixel (784), many-to-one",
        presets={"default": default, "pixel": pixel, "tiny": tiny},
        build=build,
        check=check,
        load=loader(FashionConfig, lambda cfg: fashion_problem(cfg, with_data=False)),
        predict=predict_one,
        run_commands={
            "predict": (cmd_predict, "the class of pictures (PNG, JPEG) or test images"),
            "eval": (cmd_eval, "test accuracy, per class, and the confusion matrix PNG"),
        },
    )
)
