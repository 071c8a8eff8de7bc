"""rnnkit lab explode: clipping bounds the gradients; the unclipped run diverges; a short run."""

from __future__ import annotations

import json

import torch

from rnnkit.cli import main
from rnnkit.data.synthetic import adding
from rnnkit.lab.explode import ExplodeConfig, clip, scaled_elman, spectral_radius
from rnnkit.lab.gradflow import adding_loss


def grads_of(model, cfg):
    x, y = adding(8, cfg.T, torch.Generator().manual_seed(0))
    model.zero_grad()
    adding_loss(model, x, y).backward()
    return list(model.parameters())


def test_clipping_by_value_bounds_every_entry_and_by_norm_the_norm():
    cfg = ExplodeConfig(rho=3.0, T=20, clip_value=0.01, clip_norm=0.5)
    model = scaled_elman(cfg)
    assert abs(spectral_radius(model.rnn.weight_hh_l0) - 3.0) < 1e-5
    params = grads_of(model, cfg)
    before = torch.cat([p.grad.flatten() for p in params]).norm()
    norm = clip(params, "value", cfg)
    assert abs(norm - float(before)) < 1e-3 * float(before)
    assert max(float(p.grad.abs().max()) for p in params) <= 0.01
    params = grads_of(model, cfg)
    clip(params, "norm", cfg)
    assert float(torch.cat([p.grad.flatten() for p in params]).norm()) <= 0.5 + 1e-6


def test_command_clipped_runs_learn_unclipped_diverges(tmp_path):
    argv = ["lab", "explode", "--out", str(tmp_path), "--steps", "60", "--T", "20", "--quiet"]
    assert main(argv) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["modes"]["none"]["diverged_at"] is not None
    for mode in ("norm", "value"):
        r = result["modes"][mode]
        assert r["diverged_at"] is None and r["last_loss"] < r["first_loss"], mode
    assert (tmp_path / "explode.png").exists()
