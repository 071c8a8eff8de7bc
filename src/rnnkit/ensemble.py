"""Several trained encoder-decoders decoded as one (``Ensemble``)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class Ensemble(nn.Module):
    """Several trained models over one vocabulary, decoded as one: at every step the next
    token's distribution is the mean of the models' distributions,
    log p(y | ·) = log (1/K) Σ_k p_k(y | ·) (an ensemble of independently trained networks,
    as in Sutskever et al. 2014 and the g2p systems of Yao & Zweig 2015). The decoding
    interface of ``Seq2Seq`` (``encode``, ``prepare``, ``step``, ``reorder_state``), so greedy,
    sampling and beam search take it as they take one model; its ``step`` returns
    log-probabilities."""

    def __init__(self, models: list[nn.Module]) -> None:
        super().__init__()
        if not models:
            raise ValueError("an ensemble needs at least one model")
        self.members = nn.ModuleList(models)

    def encode(self, src: Tensor, lengths: Tensor) -> tuple:
        return tuple(m.encode(src, lengths) for m in self.members)

    def prepare(self, states: tuple) -> tuple:
        return tuple(m.prepare(s) for m, s in zip(self.members, states, strict=True))

    def step(self, y_prev: Tensor, states: tuple) -> tuple[Tensor, tuple]:
        outs = [m.step(y_prev, s) for m, s in zip(self.members, states, strict=True)]
        log_probs = torch.stack([torch.log_softmax(logits, -1) for logits, _ in outs])
        mixed = torch.logsumexp(log_probs, 0) - math.log(len(outs))  # (B, V)
        return mixed, tuple(state for _, state in outs)

    def reorder_state(self, states: tuple, index: Tensor) -> tuple:
        return tuple(m.reorder_state(s, index) for m, s in zip(self.members, states, strict=True))
