"""rnnkit lab gradflow: the state-gradient norms on a case with a known answer, and a short run."""

from __future__ import annotations

import json

import pytest
import torch

from rnnkit.cli import main
from rnnkit.data.synthetic import adding
from rnnkit.lab.gradflow import AddingModel, state_gradient_norms
from rnnkit.layers import RNN


def test_norms_of_a_scalar_linear_rnn_are_powers_of_w():
    model = AddingModel("elman", 1)
    model.rnn = RNN(2, 1, nonlinearity="identity")  # h_t = w h_{t-1} + u x_t + b
    w = 0.75  # exact in float32
    with torch.no_grad():
        model.rnn.weight_hh_l0.fill_(w)
        model.head.weight.fill_(1.0)
    x, y = adding(4, 20, torch.Generator().manual_seed(0))
    norms = state_gradient_norms(model, x, y)
    expected = norms[-1] * w ** torch.arange(19, -1, -1, dtype=torch.float64)
    torch.testing.assert_close(norms, expected, rtol=1e-10, atol=0)


def test_short_run_lowers_the_loss_and_writes_files(tmp_path, capsys):
    argv = [
        "lab",
        "gradflow",
        "--out",
        str(tmp_path),
        "--cells",
        "elman,gru",
        "--T",
        "10",
        "--steps",
        "60",
        "--hidden-size",
        "8",
        "--quiet",
    ]
    assert main(argv) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    for cell, r in result["cells"].items():
        assert r["test_mse"] < 0.5 * r["init_test_mse"], cell
        assert len(r["init"]) == 10 and all(v > 0 for v in r["init"])
    assert (tmp_path / "gradflow.png").exists() and "gru" in capsys.readouterr().out


def test_bad_cells_option_is_one_line_error():
    from rnnkit.errors import UserError
    from rnnkit.lab.gradflow import main as lab_main

    with pytest.raises(UserError, match="--cells"):
        lab_main(["--cells", "elman,tree"])
