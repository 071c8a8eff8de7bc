"""The demo: an LSTM learns to echo a bit stream with a delay, trained through the BPTT kernels.

The task (a classic memory probe): inputs are random bits x_t, the target at step t is x_{t-d}.
A network can only solve it by holding d bits in its state, so it shows backpropagation through
time at work in seconds. At the end it prints the gradient norms ||dL/dh_t|| through time.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import rnnkit
from rnnkit.cells.registry import cell_names
from rnnkit.errors import UserError
from rnnkit.layers.torch_compat import BY_NAME


@dataclass
class DemoConfig:
    cell: str = "lstm"  # lstm, gru, mingru, elman
    hidden_size: int = 32  # H
    delay: int = 5  # d: the target is the input d steps back
    seq_len: int = 40  # T
    batch_size: int = 32  # B
    steps: int = 400  # optimiser steps
    lr: float = 1e-2  # Adam
    clip_norm: float = 1.0  # gradient clipping by norm, 0 disables
    seed: int = 0


# the cells whose output is their hidden state (all but Jordan's), from the cell registry
LAYERS = {name: BY_NAME[name] for name in cell_names(output_projection=False)}


class EchoModel(nn.Module):
    def __init__(self, cfg: DemoConfig) -> None:
        super().__init__()
        self.rnn = LAYERS[cfg.cell](1, cfg.hidden_size)
        self.head = nn.Linear(cfg.hidden_size, 1)

    def forward(self, xs):
        ys, _ = self.rnn(xs)
        return self.head(ys).squeeze(-1)  # (T, B) logits


def echo_batch(cfg: DemoConfig, generator: torch.Generator):
    """Bits xs (T, B, 1) and targets (T, B): x_{t-d}, with no target for the first d steps."""
    bits = torch.randint(0, 2, (cfg.seq_len, cfg.batch_size), generator=generator).float()
    targets = torch.roll(bits, cfg.delay, dims=0)
    return bits.unsqueeze(-1), targets


def run_demo(cfg: DemoConfig, progress: bool = True) -> dict:
    """Train, then report accuracy and gradient flow. Returns the measured figures."""
    from tqdm import tqdm

    if cfg.cell not in LAYERS:
        raise UserError(f"cell must be one of {sorted(LAYERS)}, got {cfg.cell!r}")
    if not 0 < cfg.delay < cfg.seq_len:
        raise UserError(f"delay must lie in [1, seq_len), got {cfg.delay}")
    for name in ("batch_size", "steps"):  # hidden_size: the layer checks it
        if getattr(cfg, name) < 1:
            raise UserError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise UserError(f"lr must be a finite number > 0, got {cfg.lr}")
    if not (math.isfinite(cfg.clip_norm) and cfg.clip_norm >= 0):
        raise UserError(f"clip_norm must be a finite number >= 0, got {cfg.clip_norm}")
    if not 0 <= cfg.seed < 2**63:
        raise UserError(f"seed must be in [0, 2**63 - 1], got {cfg.seed}")
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    try:
        model = EchoModel(cfg)
    except ValueError as e:  # the library's check of its own argument, e.g. hidden_size
        raise UserError(str(e)) from None
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    d = cfg.delay
    losses = []
    start = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc=f"echo d={d} {cfg.cell}", disable=not progress, unit="step")
    for step in bar:
        xs, targets = echo_batch(cfg, generator)
        loss = F.binary_cross_entropy_with_logits(model(xs)[d:], targets[d:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_norm:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
        opt.step()
        losses.append(loss.item())
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    seconds = time.perf_counter() - start
    xs, targets = echo_batch(cfg, generator)
    with torch.no_grad():
        accuracy = ((model(xs)[d:] > 0).float() == targets[d:]).float().mean().item()
    cell = model.rnn._cells[0]  # the layer's first cell, for a step-by-step look

    def last_loss(ys):
        return F.binary_cross_entropy_with_logits(model.head(ys[-1]).squeeze(-1), targets[-1])

    norms = rnnkit.gradient_norms(cell, xs, last_loss)
    return {
        "first_loss": sum(losses[:10]) / 10,
        "last_loss": sum(losses[-10:]) / 10,
        "accuracy": accuracy,
        "seconds": seconds,
        "grad_norms": norms.tolist(),
    }


def print_report(cfg: DemoConfig, result: dict) -> None:
    print(
        f"loss {result['first_loss']:.4f} -> {result['last_loss']:.4f} "
        f"(chance: {torch.log(torch.tensor(2.0)).item():.4f}); held-out accuracy "
        f"{100 * result['accuracy']:.1f}% in {result['seconds']:.1f} s"
    )
    print(
        f"||dL/dh_t|| for the loss at the last step t = {cfg.seq_len} (gradient flow through time):"
    )
    norms = result["grad_norms"]
    top = max(norms) or 1.0
    for t in range(len(norms) - 1, max(-1, len(norms) - 13), -1):
        bar = "#" * round(40 * norms[t] / top)
        print(f"  t={t + 1:3d}  {norms[t]:.2e}  {bar}")
