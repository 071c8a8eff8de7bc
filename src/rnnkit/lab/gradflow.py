"""Gradient flow through time on the adding problem: ||∂L/∂h_t|| against t, one line per cell,
at initialisation and after training. Vanishing gradients made visible.

The loss reads only the last step, L = (w·h_T + b - y)², so the gradient reaching step t is
∂L/∂h_t = (∂h_T/∂h_t)ᵀ ∂L/∂h_T, a product of T - t step Jacobians (Bengio, Simard & Frasconi
1994; Hochreiter 1991). For an Elman RNN each factor is diag(1 - h²) W_hh, whose norm is
usually below 1: the gradient decays geometrically as t goes back from T. The LSTM's and GRU's
additive state updates (c_t = f ⊙ c_{t-1} + ..., h_t = (1 - z) ⊙ h_{t-1} + ...) keep factors
near 1 where the gates say so (Hochreiter & Schmidhuber 1997; Cho et al. 2014).

The task is the adding problem (``rnnkit.data.synthetic.adding``): two marked numbers, one in
each half of the sequence, are to be summed at the end, so the gradient must reach t ≤ T/2.
The norms come from ``rnnkit.diagnostics.gradient_norms`` (for the LSTM: ∂L/∂h_t; its cell
state c_t also carries gradient), averaged over a held-out batch.

    rnnkit lab gradflow [--cells elman,lstm,gru] [--T 100] [--steps 300] [--out DIR]

Writes gradflow.png (init | trained | training loss) and results.json.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.argparse_config import from_args
from rnnkit.cells import cell_names
from rnnkit.config import option
from rnnkit.data.synthetic import adding, adding_baseline_mse
from rnnkit.diagnostics import gradient_norms
from rnnkit.lab.experiment import (
    DPI,
    check_choices,
    check_float,
    check_int,
    lab_parser,
    out_dir,
    parse,
    progress,
    write_json,
)
from rnnkit.layers.torch_compat import BY_NAME
from rnnkit.plots import figure, save_figure

CELLS = cell_names()  # every built-in cell (rnnkit.cells.REGISTRY)


class AddingModel(nn.Module):
    """One recurrent layer over x (T, B, 2) and a linear read-out of its last output: (B,)."""

    def __init__(self, cell: str, hidden_size: int) -> None:
        super().__init__()
        self.rnn = BY_NAME[cell](2, hidden_size)
        self.head = nn.Linear(self.rnn.output_size, 1)

    @property
    def cell(self) -> nn.Module:
        """The layer's cell, for stepping it one step at a time (diagnostics)."""
        self.rnn._sync()  # the cell computes with the layer's current parameters
        return self.rnn._cells[0]

    def forward(self, x: Tensor) -> Tensor:
        ys, _ = self.rnn(x)  # (T, B, H)
        return self.head(ys[-1]).squeeze(-1)  # (B,)


def adding_loss(model: AddingModel, x: Tensor, y: Tensor) -> Tensor:
    return F.mse_loss(model(x), y)


def state_gradient_norms(model: AddingModel, x: Tensor, y: Tensor) -> Tensor:
    """||∂L/∂h_t|| for t = 1..T (a float64 (T,) tensor), L the batch's mean squared error read
    at T. Computed on a float64 copy of the model: over 100 steps the norms fall below float32's
    smallest number (1e-45) and would read 0."""
    model = copy.deepcopy(model).double()
    x, y = x.double(), y.double()

    def loss_fn(ys: Tensor) -> Tensor:  # ys (T, B, H): only the last step is read
        return F.mse_loss(model.head(ys[-1]).squeeze(-1), y)

    return gradient_norms(model.cell, x, loss_fn)


@dataclass
class GradflowConfig:
    cells: tuple[str, ...] = option(
        ("elman", "lstm", "gru"), f"comma-separated: {', '.join(CELLS)}"
    )
    T: int = option(100, "sequence length")
    hidden_size: int = option(32, "H")
    batch_size: int = option(32, "sequences per step")
    steps: int = option(300, "Adam steps per cell")
    lr: float = option(3e-3, "Adam learning rate")
    clip_norm: float = option(1.0, "gradient clipping by norm")
    test_size: int = option(256, "test sequences")
    seed: int = option(0, "random seed (data and initial weights)")


def train_cell(cell: str, cfg: GradflowConfig, test: tuple[Tensor, Tensor], quiet: bool) -> dict:
    torch.manual_seed(cfg.seed)
    model = AddingModel(cell, cfg.hidden_size)
    data = torch.Generator().manual_seed(cfg.seed + 1)
    x_test, y_test = test
    init = state_gradient_norms(model, x_test, y_test)
    with torch.no_grad():
        init_mse = float(adding_loss(model, x_test, y_test))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    losses = []
    bar = progress(range(cfg.steps), desc=f"{cell} T={cfg.T}", quiet=quiet)
    for _ in bar:
        x, y = adding(cfg.batch_size, cfg.T, data)
        loss = adding_loss(model, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
    trained = state_gradient_norms(model, x_test, y_test)
    with torch.no_grad():
        test_mse = float(adding_loss(model, x_test, y_test))
    return {
        "init": init.tolist(),
        "trained": trained.tolist(),
        "losses": losses,
        "init_test_mse": init_mse,
        "test_mse": test_mse,
        "init_ratio": float(init[0] / init[-1]),  # ||∂L/∂h_1|| / ||∂L/∂h_T||
        "trained_ratio": float(trained[0] / trained[-1]),
    }


def run(cfg: GradflowConfig, out: Path, quiet: bool = False) -> dict:
    start = time.perf_counter()
    test = adding(cfg.test_size, cfg.T, torch.Generator().manual_seed(cfg.seed + 10_000))
    cells = {cell: train_cell(cell, cfg, test, quiet) for cell in cfg.cells}
    result = {
        "config": asdict(cfg),
        "baseline_mse": adding_baseline_mse(),
        "cells": cells,
        "seconds": time.perf_counter() - start,
    }
    write_json(out / "results.json", result)
    draw(result, out / "gradflow.png")
    return result


def draw(result: dict, path: Path) -> Path:
    cfg = result["config"]
    T = cfg["T"]
    fig, axes = figure((15, 4.6), 1, 3, dpi=DPI)
    at_init, trained, curves = axes[0]
    ts = range(1, T + 1)
    for i, (cell, r) in enumerate(result["cells"].items()):
        color = f"C{i}"
        at_init.plot(ts, r["init"], color=color, lw=1.5, label=cell)
        trained.plot(ts, r["trained"], color=color, lw=1.5, label=cell)
        losses = r["losses"]
        window = max(1, len(losses) // 50)
        smooth = [
            sum(losses[max(0, k - window + 1) : k + 1]) / min(k + 1, window)
            for k in range(len(losses))
        ]
        curves.plot(
            range(1, len(losses) + 1),
            smooth,
            color=color,
            lw=1.2,
            label=f"{cell}: test MSE {r['test_mse']:.4f}",
        )
    for ax, when in ((at_init, "at initialisation"), (trained, f"after {cfg['steps']} steps")):
        ax.axvline(T // 2, color="0.6", lw=0.8, ls=":", label="T/2: last first marker")
        ax.set(
            yscale="log",
            xlabel="t",
            ylabel="||∂L/∂h_t||",
            title=f"gradient reaching step t, {when} (T = {T})",
        )
        ax.legend(fontsize=8)
    curves.axhline(
        result["baseline_mse"],
        color="0.4",
        ls="--",
        lw=1,
        label=f"predict 1: MSE {result['baseline_mse']:.4f}",
    )
    curves.set(
        yscale="log",
        xlabel="training step",
        ylabel="training MSE (smoothed)",
        title="adding problem: training loss",
    )
    curves.legend(fontsize=8)
    return save_figure(fig, path)


def main(argv: list[str]) -> int:
    p = lab_parser("gradflow", __doc__.split("\n\n")[0], GradflowConfig)
    args = parse(p, argv)
    if args is None:
        return 0
    check_choices("--cells", args.cells, CELLS)
    check_int("--T", args.T, 2, 100_000)
    check_int("--hidden-size", args.hidden_size, 1)
    check_int("--batch-size", args.batch_size, 1)
    check_int("--steps", args.steps, 1)
    check_float("--lr", args.lr, 1e-8, 10.0)
    check_float("--clip-norm", args.clip_norm, 1e-8)
    check_int("--test-size", args.test_size, 1)
    cfg = from_args(GradflowConfig, args)
    out = out_dir(args.out)
    # Matrices of a few dozen units: threads cost more than they save, and on a shared machine
    # they spin-wait for each other (the tests do the same in conftest.py).
    torch.set_num_threads(1)
    result = run(cfg, out, quiet=args.quiet)
    print(
        f"adding problem, T = {cfg.T}, H = {cfg.hidden_size}, {cfg.steps} steps per cell "
        f"(predicting 1 scores MSE {result['baseline_mse']:.4f}):"
    )
    print("  ||∂L/∂h_1|| / ||∂L/∂h_T|| at initialisation and trained; test MSE")
    print(f"  {'cell':7} {'init':>13} {'trained':>13} {'test MSE':>10}")
    for cell, r in result["cells"].items():
        print(
            f"  {cell:7} {r['init_ratio']:13.3e} {r['trained_ratio']:13.3e} "
            f"{r['init_test_mse']:10.4f} -> {r['test_mse']:.4f}"
        )
    print(f"{result['seconds']:.0f} s; wrote {out / 'gradflow.png'} and {out / 'results.json'}")
    return 0
