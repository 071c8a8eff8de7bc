"""Brute force over every CTC path (C^T of them) on tiny inputs: the reference the decoders,
the loss and the aligner are tested against."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

import torch

from rnnkit.ctc import collapse


def random_log_probs(T: int, B: int, C: int, seed: int, sharp: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(sharp * torch.randn(T, B, C, generator=g, dtype=torch.float64), -1)


def paths(lp: torch.Tensor):
    """(path, log-prob) for every path of one item's (T, C) log-probs."""
    T, C = lp.shape
    rows = lp.tolist()
    for path in itertools.product(range(C), repeat=T):
        yield path, sum(rows[t][k] for t, k in enumerate(path))


def label_log_probs(lp: torch.Tensor, blank: int = 0) -> dict[tuple, float]:
    """log p(l | x) for every label sequence l with a path: a log-sum over its paths."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    for path, s in paths(lp):
        groups[tuple(collapse(path, blank))].append(s)
    return {k: math.log(sum(math.exp(v) for v in vs)) for k, vs in groups.items()}


def best_path(lp: torch.Tensor, target=None, blank: int = 0):
    """The most probable path (among those collapsing to ``target`` if given) and its score."""
    best, best_s = None, -math.inf
    for path, s in paths(lp):
        if target is not None and collapse(path, blank) != list(target):
            continue
        if s > best_s:
            best, best_s = list(path), s
    return best, best_s
