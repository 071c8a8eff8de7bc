"""Teacher forcing, free running and scheduled sampling on a Jordan network, whose previous
output feeds the next step, and exposure bias: the gap between the one-step (teacher-forced)
error and the error of the network running free on its own outputs.

The task: generate the next T - 1 points of a rotating vector from the prompt (its first point
y_0 and its angular speed ω, given as the input at every step),

    y_t = a (cos(ω t + φ), sin(ω t + φ)),   ω ~ U[0.15, 0.45], a ~ U[0.5, 1], φ ~ U[0, 2π].

Chosen because (1) the output is the whole state of the process, so a Jordan RNN
(``rnnkit.cells.JordanCell``: h_t = tanh(W_ih x_t + W_yh y_{t-1} + b), y_t = W_hy h_t + b_y) can
model it exactly by feeding back its own output, and teacher forcing is Jordan's (1986) and
Williams & Zipser's (1989) original setting: replace y_{t-1} by the target d_{t-1}; (2) a rotation
is neutrally stable, so a one-step error is never damped out: it compounds along the generated
sequence, which is what exposure bias does to a model that only ever saw true prefixes.

At training step i, each feedback y_{t-1} is the true d_{t-1} with probability ε_i and the
network's own (differentiable) output otherwise: ε = 1 is teacher forcing, ε = 0 free running
(backpropagation through the whole generated sequence), and a decaying ε_i from
``rnnkit.scheduled_sampling`` (shared with ``rnnkit.seq2seq``) is scheduled sampling (Bengio,
Vinyals, Jaitly & Shazeer, "Scheduled sampling for sequence prediction with recurrent neural
networks", 2015).
Every model is tested both ways on the same held-out sequences.

    rnnkit lab teacher-forcing [--steps 2000] [--T 25] [--schedule linear] [--out DIR]

Writes teacher_forcing.png, curves.json (the test errors during training) and results.json.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from rnnkit.cells import JordanCell
from rnnkit.errors import UserError
from rnnkit.lab.experiment import (
    DPI,
    check_float,
    check_int,
    lab_parser,
    out_dir,
    parse,
    progress,
    write_json,
)
from rnnkit.plots import figure, save_figure
from rnnkit.scheduled_sampling import KINDS, check_schedule, feed_back, teacher_forcing_prob

MODES = ("teacher", "free", "scheduled")
LABELS = {"teacher": "teacher forcing", "free": "free running", "scheduled": "scheduled sampling"}


@dataclass
class TeacherConfig:
    T: int = 25  # sequence length: y_0 (the prompt) and T - 1 generated points
    hidden_size: int = 32  # H of the Jordan cell
    batch_size: int = 32
    steps: int = 2000  # optimiser steps per model
    lr: float = 1e-2  # Adam
    clip_norm: float = 1.0
    schedule: str = "linear"  # the scheduled-sampling decay (rnnkit.scheduled_sampling.KINDS)
    decay_steps: int = 0  # linear: ε reaches 0 after this many steps (0: 3/4 of --steps)
    k: float = 100.0  # exponential (k < 1) / inverse sigmoid (k >= 1) parameter
    eval_every: int = 50
    test_size: int = 256
    seed: int = 0


def rotations(batch: int, T: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The task's sequences: inputs x (T, B, 1), every step holding ω, and targets
    y (T, B, 2) = a (cos(ω t + φ), sin(ω t + φ)), t = 0..T-1."""
    w = 0.15 + 0.3 * torch.rand(batch, generator=generator)
    a = 0.5 + 0.5 * torch.rand(batch, generator=generator)
    phi = 2 * math.pi * torch.rand(batch, generator=generator)
    angle = w * torch.arange(T).unsqueeze(1) + phi  # (T, B)
    y = a.unsqueeze(-1) * torch.stack([angle.cos(), angle.sin()], dim=-1)  # (T, B, 2)
    return w.expand(T, batch).unsqueeze(-1).contiguous(), y


def rollout(
    cell: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Run the Jordan cell from the prompt y_0 and return its outputs for t = 1..T-1, (T-1, B, O).

    Before each step the fed-back y_{t-1} is the true one with probability ``eps`` (drawn per
    sequence and step) and the cell's own previous output otherwise; eps = 1 is teacher forcing,
    eps = 0 free running. The own output is not detached: free running trains through it.
    """
    prev, outputs = y[0], []
    # unbind, never x[t] / y[t] in the loop: indexing under autograd costs O(T) a step in backward
    for x_t, y_t in zip(x.unbind(0)[1:], y.unbind(0)[1:], strict=True):
        out, _ = cell(x_t, prev)
        outputs.append(out)
        prev = feed_back(y_t, out, eps, generator)
    return torch.stack(outputs)  # (T-1, B, O)


def sequence_mse(pred: Tensor, y: Tensor) -> Tensor:
    """Squared distance to the target point, averaged over steps 1..T-1 and the batch."""
    return (pred - y[1:]).pow(2).sum(-1).mean()


def step_errors(pred: Tensor, y: Tensor) -> Tensor:
    """The squared distance at each generated step, averaged over the batch: (T-1,)."""
    return (pred - y[1:]).pow(2).sum(-1).mean(1)


def eps_at(mode: str, step: int, cfg: TeacherConfig) -> float:
    if mode == "teacher":
        return teacher_forcing_prob(step, "teacher")
    if mode == "free":
        return teacher_forcing_prob(step, "free")
    decay = cfg.decay_steps or max(1, (3 * cfg.steps) // 4)
    return teacher_forcing_prob(step, cfg.schedule, k=cfg.k, steps=decay)


def evaluate(cell: nn.Module, x: Tensor, y: Tensor) -> dict[str, float]:
    with torch.no_grad():
        forced = float(sequence_mse(rollout(cell, x, y, 1.0), y))
        free = float(sequence_mse(rollout(cell, x, y, 0.0), y))
    return {"forced": forced, "free": free, "gap": free - forced}


def train_mode(
    mode: str, cfg: TeacherConfig, test: tuple[Tensor, Tensor], quiet: bool = False
) -> tuple[JordanCell, dict]:
    """Train one Jordan cell with the given feedback mode; every model starts from the same
    weights and sees the same batches."""
    torch.manual_seed(cfg.seed)
    data = torch.Generator().manual_seed(cfg.seed + 1)
    coins = torch.Generator().manual_seed(cfg.seed + 2)
    cell = JordanCell(1, cfg.hidden_size, output_size=2)
    opt = torch.optim.Adam(cell.parameters(), lr=cfg.lr)
    curve: dict[str, list[float]] = {k: [] for k in ("step", "train", "eps", "forced", "free")}
    bar = progress(range(cfg.steps + 1), desc=LABELS[mode], quiet=quiet)
    for step in bar:
        if step % cfg.eval_every == 0 or step == cfg.steps:
            scores = evaluate(cell, *test)
            curve["step"].append(step)
            curve["forced"].append(scores["forced"])
            curve["free"].append(scores["free"])
            bar.set_postfix(forced=f"{scores['forced']:.4f}", free=f"{scores['free']:.4f}")
        if step == cfg.steps:
            break
        eps = eps_at(mode, step, cfg)
        x, y = rotations(cfg.batch_size, cfg.T, data)
        loss = sequence_mse(rollout(cell, x, y, eps, coins), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(cell.parameters(), cfg.clip_norm)
        opt.step()
        curve["train"].append(loss.item())
        curve["eps"].append(eps)
    return cell, curve


def run(cfg: TeacherConfig, out: Path, quiet: bool = False) -> dict:
    start = time.perf_counter()
    test = rotations(cfg.test_size, cfg.T, torch.Generator().manual_seed(cfg.seed + 10_000))
    cells, curves = {}, {}
    for mode in MODES:
        cells[mode], curves[mode] = train_mode(mode, cfg, test, quiet)
    x, y = test
    zero_mse = float(y[1:].pow(2).sum(-1).mean())  # predicting the origin: a reference
    models = {}
    with torch.no_grad():
        for mode, cell in cells.items():
            models[mode] = {
                **evaluate(cell, x, y),
                "train_first": sum(curves[mode]["train"][:20]) / 20,
                "train_last": sum(curves[mode]["train"][-20:]) / 20,
                "free_by_step": step_errors(rollout(cell, x, y, 0.0), y).tolist(),
                "forced_by_step": step_errors(rollout(cell, x, y, 1.0), y).tolist(),
            }
    result = {
        "config": asdict(cfg),
        "zero_prediction_mse": zero_mse,
        "models": models,
        "seconds": time.perf_counter() - start,
    }
    write_json(out / "curves.json", curves)
    write_json(out / "results.json", result)
    draw(result, curves, cells, test, out / "teacher_forcing.png")
    return result


def draw(result: dict, curves: dict, cells: dict, test, path: Path) -> Path:
    fig, axes = figure((11, 8.5), 2, 2, dpi=DPI)
    (during, by_step), (traj, sched) = axes
    T = result["config"]["T"]
    for i, mode in enumerate(MODES):
        c = curves[mode]
        during.plot(c["step"], c["free"], color=f"C{i}", lw=1.5, label=f"{LABELS[mode]}: free")
        during.plot(
            c["step"], c["forced"], color=f"C{i}", lw=1, ls="--", label=f"{LABELS[mode]}: forced"
        )
        m = result["models"][mode]
        steps = range(1, T)
        by_step.plot(
            steps,
            m["free_by_step"],
            color=f"C{i}",
            lw=1.5,
            label=f"{LABELS[mode]}: free (gap {m['gap']:.4f})",
        )
        by_step.plot(steps, m["forced_by_step"], color=f"C{i}", lw=1, ls="--")
        sched.plot(range(len(c["eps"])), c["eps"], color=f"C{i}", lw=1.5, label=LABELS[mode])
    during.set(
        yscale="log",
        xlabel="training step",
        ylabel="test MSE",
        title="test MSE during training (solid: free, dashed: forced)",
    )
    during.legend(fontsize=7)
    by_step.set(
        yscale="log",
        xlabel="generated step t",
        ylabel="squared error at step t",
        title="error at step t after training (solid: free, dashed: forced)",
    )
    by_step.legend(fontsize=7)

    x, y = test
    b = 0
    traj.plot(y[:, b, 0], y[:, b, 1], "k-", marker="o", ms=3, lw=1, label="target")
    traj.plot(y[0, b, 0], y[0, b, 1], "ks", ms=8, label="prompt y_0")
    with torch.no_grad():
        for i, (mode, cell) in enumerate(cells.items()):
            pred = rollout(cell, x[:, b : b + 1], y[:, b : b + 1], 0.0)[:, 0]
            path_ = torch.cat([y[:1, b], pred])
            traj.plot(
                path_[:, 0],
                path_[:, 1],
                color=f"C{i}",
                marker=".",
                lw=1,
                label=f"{LABELS[mode]} (free)",
            )
    traj.set(
        aspect="equal",
        xlabel="y[0]",
        ylabel="y[1]",
        title=f"one test sequence, ω = {float(x[0, b, 0]):.3f}, generated free",
    )
    traj.legend(fontsize=7)
    sched.set(
        xlabel="training step",
        ylabel="ε (P[feed the true y_{t-1}])",
        title=f"feedback during training ({result['config']['schedule']} decay)",
        ylim=(-0.05, 1.05),
    )
    sched.legend(fontsize=8)
    return save_figure(fig, path)


def main(argv: list[str]) -> int:
    d = TeacherConfig()
    p = lab_parser("teacher-forcing", __doc__.split("\n\n")[0])
    p.add_argument("--T", type=int, default=d.T, help=f"sequence length (default {d.T})")
    p.add_argument("--hidden-size", type=int, default=d.hidden_size, help="Jordan cell width H")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="sequences per step")
    p.add_argument("--steps", type=int, default=d.steps, help="optimiser steps per model")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    p.add_argument("--schedule", default=d.schedule, help=f"scheduled sampling: {', '.join(KINDS)}")
    p.add_argument(
        "--decay-steps",
        type=int,
        default=d.decay_steps,
        help="linear schedule: steps until ε = 0 (0: 3/4 of --steps)",
    )
    p.add_argument("--k", type=float, default=d.k, help="exponential / inverse-sigmoid k")
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="test every N steps")
    args = parse(p, argv)
    if args is None:
        return 0
    cfg = TeacherConfig(
        T=check_int("--T", args.T, 3, 10_000),
        hidden_size=check_int("--hidden-size", args.hidden_size, 1),
        batch_size=check_int("--batch-size", args.batch_size, 1),
        steps=check_int("--steps", args.steps, 1),
        lr=check_float("--lr", args.lr, 1e-8, 10.0),
        schedule=args.schedule,
        decay_steps=check_int("--decay-steps", args.decay_steps, 0),
        k=args.k,
        eval_every=check_int("--eval-every", args.eval_every, 1),
        seed=args.seed,
    )
    if cfg.schedule in ("teacher", "free"):
        raise UserError(
            f"option --schedule: {cfg.schedule!r} is no schedule (the teacher and "
            "free models are trained anyway); pick linear, exponential or "
            "inverse_sigmoid"
        )
    try:
        check_schedule(cfg.schedule, cfg.k, cfg.decay_steps or 1)
    except UserError as e:
        raise UserError(f"option --schedule/--k: {e}") from None
    out = out_dir(args.out)
    # Matrices of a few dozen units: threads cost more than they save, and on a shared machine
    # they spin-wait for each other (the tests do the same in conftest.py).
    torch.set_num_threads(1)
    result = run(cfg, out, quiet=args.quiet)
    print(
        f"Jordan RNN (H = {cfg.hidden_size}) generating {cfg.T - 1} points of a rotation; "
        f"test MSE (predicting the origin: {result['zero_prediction_mse']:.4f}):"
    )
    print(f"  {'trained with':20} {'teacher-forced':>14} {'free running':>12} {'gap':>8}")
    for mode, m in result["models"].items():
        print(f"  {LABELS[mode]:20} {m['forced']:14.5f} {m['free']:12.5f} {m['gap']:8.5f}")
    print(
        f"{result['seconds']:.0f} s; wrote {out / 'teacher_forcing.png'}, results.json, curves.json"
    )
    return 0
