"""An exponential moving average of a model's weights (``--train.ema d``).

After every optimiser step n = 1, 2, ...

    θ̄ ← d_n θ̄ + (1 - d_n) θ,    d_n = min(d, (1 + n) / (10 + n)),

starting from θ̄ = θ at step 0 (the ramp d_n keeps the random starting weights from weighing on
the average for the first few hundred steps). The average of the iterates (Polyak & Juditsky
1992, "Acceleration of stochastic approximation by averaging"), not the last iterate, is what
the trainer evaluates and keeps as best: it smooths out the noise of the last updates. Only
trainable floating-point parameters are averaged; buffers are the model's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

PREFIX = "trainer.ema."  # its tensors' names in a checkpoint's extra tensors
UPDATES = "trainer.ema_updates"


class WeightAverage:
    """θ̄ of ``model``'s trainable parameters with decay ``decay`` in [0, 1)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay!r}")
        self.decay, self.updates = decay, 0
        self.average = {
            name: p.detach().clone()
            for name, p in model.named_parameters()
            if p.requires_grad and p.is_floating_point()
        }

    def _params(self, model: nn.Module) -> list[Tensor]:
        params = dict(model.named_parameters())
        return [params[name] for name in self.average]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step of the average, after an optimiser step of ``model``."""
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(list(self.average.values()), self._params(model), 1.0 - d)

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """``model`` holds θ̄ inside the block, its own weights again after it."""
        params = self._params(model)
        with torch.no_grad():
            saved = [p.detach().clone() for p in params]
            for p, a in zip(params, self.average.values(), strict=True):
                p.copy_(a)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, s in zip(params, saved, strict=True):
                    p.copy_(s)

    def state(self) -> dict[str, Tensor]:
        """The tensors to resume from (saved beside the task's carried state)."""
        return {
            **{PREFIX + name: t for name, t in self.average.items()},
            UPDATES: torch.tensor(self.updates),
        }

    def load(self, tensors: dict[str, Tensor]) -> bool:
        """Take θ̄ from ``tensors`` (``state()``'s); False (θ̄ unchanged) if they hold none."""
        if UPDATES not in tensors:
            return False
        with torch.no_grad():
            for name, t in self.average.items():
                t.copy_(tensors[PREFIX + name])
        self.updates = int(tensors[UPDATES])
        return True


def split_average(tensors: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(the average's tensors, the rest) of a checkpoint's extra tensors."""
    mine = {k: v for k, v in tensors.items() if k.startswith(PREFIX) or k == UPDATES}
    return mine, {k: v for k, v in tensors.items() if k not in mine}
