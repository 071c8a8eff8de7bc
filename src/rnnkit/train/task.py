"""What the trainer needs from a task, and nothing more (minGPT's Trainer: "nothing in this
file really has anything to do with GPT")."""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor, nn


class Task(Protocol):
    """A trainable task. Batches are addressed by position so that a resumed run continues at
    the very batch where it stopped; a task with carried state (truncated BPTT) exposes it so
    that checkpoints hold it."""

    model: nn.Module
    # optional: ``selection = (metric, "min" | "max")``, the validation metric that picks the
    # best checkpoint (default: ("loss", "min"))

    def to(self, device: torch.device) -> None:
        """Move whatever the task holds besides the model (carried state, buffers)."""

    def num_train_batches(self) -> int:
        """Batches in one epoch of this process's share of the training data."""

    def start_epoch(self, epoch: int) -> None:
        """Called at every epoch start (and at step 0): reset carried state, reshuffle, ..."""

    def train_batch(self, position: int) -> Any:
        """The batch at ``position`` in the current epoch."""

    def loss(self, model: nn.Module, batch: Any) -> tuple[Tensor, int]:
        """The mean loss of one batch through ``model`` (the task's model, maybe DDP-wrapped),
        and the number of tokens it covered. Carries and detaches any state itself."""

    def evaluate(self, model: nn.Module, max_batches: int) -> dict[str, float]:
        """Sums over the validation split (e.g. total loss, token count); 0: all batches."""

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        """Turn evaluation sums into metrics; must include ``loss``."""

    def carried_state(self) -> dict[str, Tensor]:
        """Tensors to save for an exact resume (e.g. the hidden state between windows)."""

    def load_carried_state(self, tensors: dict[str, Tensor]) -> None:
        """Inverse of ``carried_state``."""

    def report(self, result: dict) -> str:
        """The line ``rnnkit train`` ends with, from ``Trainer.fit``'s result (a task whose
        ``TaskSpec.finish`` reports the run itself, as the language models do, needs none)."""
