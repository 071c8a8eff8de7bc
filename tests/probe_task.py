"""A trainer task that records a probe inside every training step: what the process looked like
while the trainer ran (tests/test_denormals.py, tests/test_heap.py)."""

from __future__ import annotations

from collections.abc import Callable

import torch


class ProbeTask:
    """A linear model on constant batches; ``probe()`` runs in every loss and its results are
    kept in ``seen``."""

    def __init__(self, probe: Callable[[], object]) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Linear(2, 1)
        self.probe = probe
        self.seen: list = []

    def to(self, device):
        pass

    def num_train_batches(self):
        return 4

    def start_epoch(self, epoch):
        pass

    def train_batch(self, position):
        return torch.full((8, 2), float(position))

    def loss(self, model, batch):
        self.seen.append(self.probe())
        return model(batch).pow(2).mean(), batch.shape[0]

    def evaluate(self, model, max_batches):
        return {"loss": float(model(torch.ones(4, 2)).pow(2).mean())}

    def metrics(self, sums):
        return {"loss": sums["loss"]}

    def carried_state(self):
        return {}

    def load_carried_state(self, tensors):
        pass
