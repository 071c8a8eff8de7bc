"""Exploding gradients: an Elman RNN whose recurrent matrix is scaled to spectral radius ρ > 1,
trained by plain SGD on the adding problem without clipping, with clipping by norm and with
clipping by value, from the same weights on the same batches.

With ρ(W_hh) > 1 the product of step Jacobians diag(1 - h²) W_hh can grow like ρ^T while the
states stay out of saturation (Pascanu, Mikolov & Bengio, "On the difficulty of training
recurrent neural networks", 2013, §3: a spectral radius above 1/γ, γ = 1 for tanh, is necessary
for exploding gradients). One such step of SGD throws the weights far away, and the loss goes to
inf/NaN. The remedies, after ``backward`` and before the step:

    by norm:   g <- g · min(1, c / ||g||)    (Pascanu et al. 2013; nn.utils.clip_grad_norm_)
    by value:  g_i <- max(-v, min(v, g_i))  (Mikolov 2012; char-rnn; nn.utils.clip_grad_value_)

Clipping by norm keeps the direction; clipping by value changes it but bounds every entry.

    rnnkit lab explode [--rho 1.5] [--T 50] [--lr 0.1] [--clip-norm 1] [--clip-value 0.01]

Writes explode.png (training loss | gradient norm before clipping), curves.json and
results.json. A run whose loss becomes inf/NaN stops there, and the table says at which step.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from rnnkit.argparse_config import from_args
from rnnkit.config import option
from rnnkit.data.synthetic import adding, adding_baseline_mse
from rnnkit.lab.experiment import (
    DPI,
    check_float,
    check_int,
    finite_or_none,
    lab_parser,
    out_dir,
    parse,
    progress,
    write_json,
)
from rnnkit.lab.gradflow import AddingModel, adding_loss, state_gradient_norms
from rnnkit.plots import figure, save_figure

MODES = ("none", "norm", "value")
LABELS = {"none": "no clipping", "norm": "clip by norm", "value": "clip by value"}


@dataclass
class ExplodeConfig:
    rho: float = option(1.5, "spectral radius W_hh is scaled to")
    T: int = option(50, "sequence length")
    hidden_size: int = option(32, "H")
    batch_size: int = option(32, "sequences per step")
    steps: int = option(300, "SGD steps per model")
    lr: float = option(0.1, "SGD learning rate (plain SGD: no adaptive step to hide the explosion)")
    clip_norm: float = option(1.0, "c of clipping by norm")
    clip_value: float = option(0.01, "v of clipping by value")
    test_size: int = option(256, "test sequences")
    seed: int = option(0, "random seed (data and initial weights)")


def spectral_radius(W: Tensor) -> float:
    return float(torch.linalg.eigvals(W.detach().double()).abs().max())


def scaled_elman(cfg: ExplodeConfig) -> AddingModel:
    """The Elman model with W_hh multiplied so that its spectral radius is ``cfg.rho``."""
    torch.manual_seed(cfg.seed)
    model = AddingModel("elman", cfg.hidden_size)
    with torch.no_grad():
        W = model.rnn.weight_hh_l0
        W.mul_(cfg.rho / spectral_radius(W))
    return model


def clip(params: list[Tensor], mode: str, cfg: ExplodeConfig) -> float:
    """Clip the gradients in place as ``mode`` says; returns the global norm before clipping."""
    grads = [p.grad for p in params if p.grad is not None]
    norm = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))
    if mode == "norm":
        nn.utils.clip_grad_norm_(params, cfg.clip_norm)
    elif mode == "value":
        nn.utils.clip_grad_value_(params, cfg.clip_value)
    return norm


def train_mode(mode: str, cfg: ExplodeConfig, test: tuple[Tensor, Tensor], quiet: bool) -> dict:
    model = scaled_elman(cfg)
    params = list(model.parameters())
    data = torch.Generator().manual_seed(cfg.seed + 1)
    opt = torch.optim.SGD(params, lr=cfg.lr)
    losses, norms, diverged = [], [], None
    bar = progress(range(cfg.steps), desc=LABELS[mode], quiet=quiet)
    for step in bar:
        x, y = adding(cfg.batch_size, cfg.T, data)
        loss = adding_loss(model, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = clip(params, mode, cfg)
        losses.append(loss.item())
        norms.append(norm)
        if not (math.isfinite(losses[-1]) and math.isfinite(norm)):
            diverged = step
            break
        opt.step()
        bar.set_postfix(loss=f"{losses[-1]:.3g}", norm=f"{norm:.3g}", refresh=False)
    x_test, y_test = test
    with torch.no_grad():
        test_mse = float(adding_loss(model, x_test, y_test)) if diverged is None else math.inf
    finite = [n for n in norms if math.isfinite(n)]
    return {
        "losses": [finite_or_none(v) for v in losses],
        "grad_norms": [finite_or_none(v) for v in norms],
        "diverged_at": diverged,
        "test_mse": finite_or_none(test_mse),
        "max_grad_norm": max(finite) if finite else None,
        "median_grad_norm": sorted(finite)[len(finite) // 2] if finite else None,
        "first_loss": losses[0],
        "last_loss": finite_or_none(sum(losses[-20:]) / len(losses[-20:])),
    }


def run(cfg: ExplodeConfig, out: Path, quiet: bool = False) -> dict:
    start = time.perf_counter()
    test = adding(cfg.test_size, cfg.T, torch.Generator().manual_seed(cfg.seed + 10_000))
    model = scaled_elman(cfg)
    init_norms = state_gradient_norms(model, *test)
    modes = {mode: train_mode(mode, cfg, test, quiet) for mode in MODES}
    result = {
        "config": asdict(cfg),
        "spectral_radius": spectral_radius(model.rnn.weight_hh_l0),
        "init_ratio": float(init_norms[0] / init_norms[-1]),  # ||∂L/∂h_1|| / ||∂L/∂h_T||
        "baseline_mse": adding_baseline_mse(),
        "modes": {
            m: {k: v for k, v in r.items() if k not in ("losses", "grad_norms")}
            for m, r in modes.items()
        },
        "seconds": time.perf_counter() - start,
    }
    curves = {m: {"loss": r["losses"], "grad_norm": r["grad_norms"]} for m, r in modes.items()}
    write_json(out / "curves.json", curves)
    write_json(out / "results.json", result)
    draw(result, curves, out / "explode.png")
    return result


def draw(result: dict, curves: dict, path: Path) -> Path:
    cfg = result["config"]
    fig, axes = figure((12, 4.6), 1, 2, dpi=DPI)
    loss_ax, norm_ax = axes[0]
    for i, mode in enumerate(MODES):
        c, r = curves[mode], result["modes"][mode]
        steps = range(1, len(c["loss"]) + 1)
        nan = float("nan")
        end = f", inf/NaN at step {r['diverged_at'] + 1}" if r["diverged_at"] is not None else ""
        loss_ax.plot(
            steps,
            [nan if v is None else v for v in c["loss"]],
            color=f"C{i}",
            lw=1,
            label=f"{LABELS[mode]}{end}",
        )
        norm_ax.plot(
            steps,
            [nan if v is None else v for v in c["grad_norm"]],
            color=f"C{i}",
            lw=1,
            label=LABELS[mode],
        )
        if r["diverged_at"] is not None:
            loss_ax.axvline(r["diverged_at"] + 1, color=f"C{i}", ls=":", lw=1)
    loss_ax.axhline(
        result["baseline_mse"],
        color="0.4",
        ls="--",
        lw=1,
        label=f"predict 1: {result['baseline_mse']:.4f}",
    )
    loss_ax.set(
        yscale="log",
        xlabel="SGD step",
        ylabel="training MSE",
        title=f"Elman, ρ(W_hh) = {cfg['rho']:g}, T = {cfg['T']}, lr {cfg['lr']:g}",
    )
    loss_ax.legend(fontsize=8)
    norm_ax.axhline(
        cfg["clip_norm"], color="C1", ls="--", lw=0.8, label=f"clip norm c = {cfg['clip_norm']:g}"
    )
    norm_ax.set(
        yscale="log",
        xlabel="SGD step",
        ylabel="||g|| before clipping",
        title=f"gradient norm (clip value v = {cfg['clip_value']:g})",
    )
    norm_ax.legend(fontsize=8)
    return save_figure(fig, path)


def main(argv: list[str]) -> int:
    p = lab_parser("explode", __doc__.split("\n\n")[0], ExplodeConfig)
    args = parse(p, argv)
    if args is None:
        return 0
    check_float("--rho", args.rho, 1e-3, 100.0)
    check_int("--T", args.T, 2, 100_000)
    check_int("--hidden-size", args.hidden_size, 1)
    check_int("--batch-size", args.batch_size, 1)
    check_int("--steps", args.steps, 1)
    check_float("--lr", args.lr, 1e-8, 100.0)
    check_float("--clip-norm", args.clip_norm, 1e-8)
    check_float("--clip-value", args.clip_value, 1e-8)
    check_int("--test-size", args.test_size, 1)
    cfg = from_args(ExplodeConfig, args)
    out = out_dir(args.out)
    torch.set_num_threads(1)  # small matrices: see gradflow.main
    result = run(cfg, out, quiet=args.quiet)
    print(
        f"Elman RNN, H = {cfg.hidden_size}, spectral radius of W_hh "
        f"{result['spectral_radius']:.3f}, adding problem T = {cfg.T}, SGD lr {cfg.lr:g}, "
        f"{cfg.steps} steps; at init ||∂L/∂h_1|| / ||∂L/∂h_T|| = {result['init_ratio']:.3g}"
    )
    print(f"  {'':14} {'max ||g||':>10} {'median':>10} {'last loss':>10} {'test MSE':>9}")
    for mode, r in result["modes"].items():
        if r["diverged_at"] is not None:
            tail = f"loss inf/NaN at step {r['diverged_at'] + 1}"
        else:
            tail = f"{r['last_loss']:10.4f} {r['test_mse']:9.4f}"
        big = "-" if r["max_grad_norm"] is None else f"{r['max_grad_norm']:10.3g}"
        med = "-" if r["median_grad_norm"] is None else f"{r['median_grad_norm']:10.3g}"
        print(f"  {LABELS[mode]:14} {big:>10} {med:>10} {tail}")
    print(
        f"(predicting 1 scores {result['baseline_mse']:.4f}); {result['seconds']:.0f} s; "
        f"wrote {out / 'explode.png'}, results.json, curves.json"
    )
    return 0
