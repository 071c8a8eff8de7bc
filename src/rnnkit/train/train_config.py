"""The training options (``[train]``), their one range check, the device, the learning-rate
schedule, the optimiser and the CPU modes set while training."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from rnnkit.config import option
from rnnkit.denormals import flushed
from rnnkit.errors import UserError
from rnnkit.heap import freed_memory_kept

MAX_SEED = 2**63 - 1  # torch.manual_seed overflows above 2**64 - 1; numpy and hashes want >= 0
MAX_THREADS = 1024  # more only exhaust the process's thread limit ("can't start new thread")


@dataclass
class TrainConfig:
    optimizer: Literal["adamw", "adam", "sgd"] = option("adamw", "the optimiser")
    lr: float = option(2e-3, "peak learning rate")
    weight_decay: float = option(0.0, "decoupled weight decay (adamw), L2 (adam, sgd)")
    momentum: float = option(0.9, "momentum (sgd only)")
    warmup_steps: int = option(100, "linear warm-up from 0 to lr over this many steps")
    schedule: Literal["constant", "cosine", "linear"] = option(
        "cosine", "decay after warm-up, down to min_lr_ratio * lr at max_steps"
    )
    min_lr_ratio: float = option(0.1, "the schedule's final lr as a fraction of lr")
    clip_norm: float = option(1.0, "clip the gradient's global norm to this (0: off)")
    clip_value: float = option(0.0, "clip each gradient element to [-v, v] (0: off)")
    ema: float = option(
        0.0,
        "evaluate and keep as best an exponential moving average of the weights with this "
        "decay (0: off; e.g. 0.999)",
    )
    max_steps: int = option(2000, "stop after this many optimiser steps")
    max_minutes: float = option(
        0.0,
        "stop after this much training time, summed over resumes (0: off); the schedule "
        "and the progress bar follow it when it binds before max_steps",
    )
    eval_every: int = option(200, "evaluate on the validation split every N steps")
    eval_batches: int = option(0, "validation batches (windows) per evaluation (0: all)")
    patience: int = option(0, "stop after N evaluations without improvement (0: off)")
    checkpoint_every: int = option(200, "write last.safetensors every N steps")
    log_every: int = option(10, "log training loss every N steps")
    seed: int = option(1337, "seed for weights, dropout and sampling")
    device: str = option("auto", "auto, cpu, cuda, cuda:1, mps ...")
    threads: int = option(0, "torch intra-op threads (0: torch's default)")
    flush_denormals: bool = option(
        True,
        "flush denormal floats to zero on the CPU while training: vanishing gradients full of "
        "them make a step several times slower on many CPUs (rnnkit.denormals)",
    )
    keep_freed_memory: bool = option(
        True,
        "keep freed memory in the heap for the next step while training on the CPU, instead "
        "of returning it and page-faulting it back (glibc; rnnkit.heap)",
    )
    progress: bool = option(True, "show a progress bar")
    nonfinite: Literal["stop", "skip"] = option(
        "stop", "a step whose loss or gradient norm is NaN/inf: stop the run, or skip the step"
    )


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UserError(f"option 'train.device': {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"option 'train.device' is {name!r}, but this torch sees no CUDA device")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"option 'train.device' is {name!r}, but MPS is not available here")
    return device


def check_range(section: str, cfg, rules: dict[str, tuple[float, float]]) -> None:
    """One-line errors for options outside their range: {name: (low, high)}, both inclusive."""
    for name, (low, high) in rules.items():
        value = getattr(cfg, name)
        if not low <= value <= high:
            span = f">= {low}" if high == math.inf else f"in [{low}, {high}]"
            raise UserError(f"option '{section}.{name}' must be {span}, got {value!r}")


def check_train_config(cfg: TrainConfig) -> None:
    """Reject impossible training options before anything is created or written."""
    inf = math.inf
    check_range(
        "train",
        cfg,
        {
            "lr": (0, inf),
            "weight_decay": (0, inf),
            "momentum": (0, 1),
            "warmup_steps": (0, inf),
            "min_lr_ratio": (0, 1),
            "clip_norm": (0, inf),
            "clip_value": (0, inf),
            "ema": (0, 0.9999999),
            "max_steps": (1, inf),
            "max_minutes": (0, inf),
            "eval_every": (1, inf),
            "eval_batches": (0, inf),
            "patience": (0, inf),
            "checkpoint_every": (1, inf),
            "log_every": (1, inf),
            "threads": (0, MAX_THREADS),
            "seed": (0, MAX_SEED),
        },
    )
    pick_device(cfg.device)


def check_seed(seed: int | None, flag: str = "--seed") -> None:
    """A command's random seed, if given, in torch's range."""
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise UserError(f"{flag} must be in [0, 2**63 - 1], got {seed}")


def learning_rate(cfg: TrainConfig, step: int, time_used: float = 0.0) -> float:
    """Linear warm-up to cfg.lr, then the chosen decay down to min_lr_ratio * lr at max_steps.

    ``time_used`` is the fraction of the time budget (``max_minutes``) spent. When time runs out
    before the steps do, the decay follows the clock: it runs at the step the run stands at by
    either budget, ``max(step, time_used * max_steps)``, so the schedule ends at its floor when
    the time does.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    at = max(step, time_used * cfg.max_steps)
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (at - cfg.warmup_steps) / span)
    floor = cfg.lr * cfg.min_lr_ratio
    if cfg.schedule == "linear":
        return cfg.lr - (cfg.lr - floor) * progress
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * progress))


def cpu_modes(cfg: TrainConfig, device: torch.device) -> contextlib.ExitStack:
    """The process-wide modes the trainer sets while it trains on the CPU, and sets back after:
    denormals flushed to zero (``rnnkit.denormals``), freed memory kept (``rnnkit.heap``)."""
    stack = contextlib.ExitStack()
    if device.type == "cpu" and cfg.flush_denormals:
        stack.enter_context(flushed())
    if device.type == "cpu" and cfg.keep_freed_memory:
        stack.enter_context(freed_memory_kept())
    return stack


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
