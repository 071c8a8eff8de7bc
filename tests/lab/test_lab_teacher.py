"""rnnkit lab teacher-forcing: the task's sequences, the feedback of each mode, the schedule,
and a short training run of each mode with the loss going down."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rnnkit.cells import JordanCell
from rnnkit.cli import main
from rnnkit.errors import UserError
from rnnkit.lab.teacher import TeacherConfig, eps_at, rollout, rotations, run, sequence_mse


def test_rotations_rotate_by_omega_each_step():
    x, y = rotations(5, 8, torch.Generator().manual_seed(0))
    assert x.shape == (8, 5, 1) and y.shape == (8, 5, 2)
    w = x[0, :, 0]
    assert torch.all(x[..., 0] == w) and torch.all((w >= 0.15) & (w <= 0.45))
    c, s = w.cos(), w.sin()
    a, b = y[:-1, :, 0], y[:-1, :, 1]
    rotated = torch.stack([c * a - s * b, s * a + c * b], dim=-1)
    torch.testing.assert_close(y[1:], rotated, atol=1e-5, rtol=0)
    radius = y.norm(dim=-1)
    torch.testing.assert_close(radius, radius[:1].expand_as(radius), atol=1e-5, rtol=0)


def test_rollout_feeds_back_the_truth_or_its_own_output():
    cell = JordanCell(1, 6, output_size=2)
    x, y = rotations(3, 5, torch.Generator().manual_seed(1))
    forced, free = rollout(cell, x, y, 1.0), rollout(cell, x, y, 0.0)
    prev = y[0]
    for t in range(1, 5):
        torch.testing.assert_close(forced[t - 1], cell(x[t], y[t - 1])[0])
        torch.testing.assert_close(free[t - 1], cell(x[t], prev)[0])
        prev = free[t - 1]
    assert forced.shape == (4, 3, 2) and not torch.allclose(forced[1:], free[1:])
    # Mixed feedback: every fed-back vector is either the truth or the own output.
    mixed = rollout(cell, x, y, 0.5, torch.Generator().manual_seed(2))
    torch.testing.assert_close(mixed[0], forced[0])
    # Free running trains through the generated sequence: the last output depends on the first.
    first = cell.weight_hy
    (g,) = torch.autograd.grad(sequence_mse(free[-1:], y[-2:]), first)
    assert g.abs().sum() > 0


def test_schedules_of_the_three_modes():
    cfg = TeacherConfig(steps=100)
    assert [eps_at("teacher", s, cfg) for s in (0, 99)] == [1.0, 1.0]
    assert [eps_at("free", s, cfg) for s in (0, 99)] == [0.0, 0.0]
    assert eps_at("scheduled", 0, cfg) == 1.0 and eps_at("scheduled", 75, cfg) == 0.0
    assert eps_at("scheduled", 30, cfg) == pytest.approx(1 - 30 / 75)


def test_short_training_lowers_the_loss_of_every_mode(tmp_path):
    cfg = TeacherConfig(T=6, hidden_size=16, steps=80, eval_every=40, test_size=64)
    result = run(cfg, tmp_path, quiet=True)
    for mode, m in result["models"].items():
        assert m["train_last"] < 0.5 * m["train_first"], mode
        assert m["free"] >= m["forced"] - 1e-6 or mode != "teacher"
        assert m["gap"] == pytest.approx(m["free"] - m["forced"])
        assert m["free"] < result["zero_prediction_mse"], mode
    curves = json.loads((tmp_path / "curves.json").read_text())
    assert curves["teacher"]["step"] == [0, 40, 80] and len(curves["free"]["train"]) == 80
    assert (tmp_path / "teacher_forcing.png").stat().st_size > 10_000
    assert math.isfinite(json.loads((tmp_path / "results.json").read_text())["seconds"])


def test_command_prints_the_table(tmp_path, capsys):
    argv = [
        "lab",
        "teacher-forcing",
        "--out",
        str(tmp_path),
        "--T",
        "5",
        "--steps",
        "20",
        "--hidden-size",
        "4",
        "--quiet",
        "--schedule",
        "inverse_sigmoid",
        "--k",
        "5",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "teacher forcing" in out and "scheduled sampling" in out and "gap" in out


@pytest.mark.parametrize(
    "args, word",
    [
        (["--schedule", "free"], "--schedule"),
        (["--schedule", "exponential", "--k", "2"], "--k"),
        (["--T", "2"], "--T"),
        (["--steps", "0"], "--steps"),
        (["--lr", "nan"], "--lr"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, args, word):
    from rnnkit.lab.teacher import main as lab_main

    with pytest.raises(UserError, match=word) as info:
        lab_main([*args, "--out", str(tmp_path)])
    assert "\n" not in str(info.value)
