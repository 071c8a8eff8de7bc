"""rnnkit lab activations: the character classes, the correlations, the stepped states against
the model's own forward pass, the unit picking, and the command on a tiny trained run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnkit.cli import main
from rnnkit.errors import UserError
from rnnkit.lab.activations import (
    character_classes,
    correlations,
    hidden_states,
    pick_units,
)
from rnnkit.tasks.runs import load_run

FIXTURE = Path(__file__).parents[1] / "fixtures" / "tiny_shakespeare.txt"


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory) -> Path:
    """A 2-layer LSTM char LM trained for a few seconds (the loss going down is checked)."""
    run = tmp_path_factory.mktemp("act") / "run"
    argv = [
        "train",
        "charlm",
        "--preset",
        "tiny",
        "--train.progress",
        "false",
        "--data",
        str(FIXTURE),
        "--out",
        str(run),
        "--model.cell",
        "lstm",
        "--model.num_layers",
        "2",
        "--train.max_steps",
        "40",
    ]
    assert main(argv) == 0
    losses = [
        json.loads(line)["loss"]
        for line in (run / "log.jsonl").read_text().splitlines()
        if json.loads(line)["split"] == "train"
    ]
    assert losses[-1] < 0.85 * losses[0]
    return run


def test_character_classes_of_a_known_text():
    text = 'AB "c" [d]\ne (f)'
    c = character_classes(text)
    assert c["newline"].tolist() == [0] * 10 + [1] + [0] * 5
    assert c["capital"].tolist()[:3] == [1, 1, 0]
    assert c['inside " "'].tolist()[3:7] == [1, 1, 1, 0] and c['inside " "'].sum() == 3
    assert c["inside [ ]"].tolist()[7:11] == [1, 1, 1, 0]
    assert c["inside ( )"].tolist()[-3:] == [1, 1, 1]
    assert c["position in line"].tolist()[9:13] == [9, 10, 0, 1]
    assert c["end of line next"].tolist()[9] == 1 and c["end of line next"].sum() == 1
    assert c["speaker line"].tolist()[:10] == [0] * 10  # "AB" line has lowercase letters too
    assert character_classes("ROMEO.\nhi")["speaker line"].tolist() == [1] * 6 + [0] * 3


def test_correlations_equal_numpy_corrcoef():
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(50, 4))
    acts[:, 2] = 3.0  # a constant unit: r = 0, not nan
    target = (rng.random(50) < 0.3).astype(float)
    r = correlations(acts, target)
    for u in (0, 1, 3):
        assert r[u] == pytest.approx(np.corrcoef(acts[:, u], target)[0, 1], abs=1e-12)
    assert r[2] == 0.0


def test_pick_units_finds_the_unit_that_is_the_class():
    text = "ab\ncd e\nf g"
    classes = character_classes(text)
    rng = np.random.default_rng(1)
    acts = rng.normal(size=(2, len(text), 5))
    acts[1, :, 3] = classes["newline"] * 2 - 1  # layer 2 unit 3 fires on newlines exactly
    acts[0, :, 1] = -classes["space"]  # layer 1 unit 1 is off on spaces
    picks = {p["class"]: p for p in pick_units(acts, classes)}
    assert (picks["newline"]["layer"], picks["newline"]["unit"]) == (1, 3)
    assert picks["newline"]["r"] == pytest.approx(1.0)
    assert (picks["space"]["layer"], picks["space"]["unit"]) == (0, 1)
    assert picks["space"]["r"] == pytest.approx(-1.0)
    assert "inside [ ]" not in picks  # no such character in the text
    units = [(p["layer"], p["unit"]) for p in picks.values()]
    assert len(units) == len(set(units))


def test_stepped_states_equal_the_models_forward_pass(lstm_run):
    loaded = load_run(lstm_run)
    text = "ROMEO.\nWhat light"
    h = hidden_states(loaded, text, "h")
    c = hidden_states(loaded, text, "c")
    assert h.shape == (2, len(text), loaded.model.rnn.hidden_size) == c.shape
    ids = torch.tensor(loaded.start_ids()[-1:] + loaded.vocab.encode(text).tolist())
    with torch.no_grad():
        emb = loaded.model.embedding(ids.unsqueeze(1))
        ys, _ = loaded.model.rnn(emb)  # (T, 1, H): the top layer's h at every step
    np.testing.assert_allclose(h[1], ys[1:, 0].numpy(), atol=1e-5)
    assert np.abs(h).max() <= 1.0 and not np.allclose(c, h)


def test_command_writes_pictures_and_results(lstm_run, tmp_path, capsys):
    out = tmp_path / "act"
    argv = [
        "lab",
        "activations",
        str(lstm_run),
        "--out",
        str(out),
        "--state",
        "c",
        "--text",
        "KING.\nGood morrow, [aside] cousin.\nAnd you?\n",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "newline" in printed and "position in line" in printed
    result = json.loads((out / "results.json").read_text())
    assert result["cell"] == "lstm" and result["state"] == "c" and result["layers"] == 2
    classes = {u["class"] for u in result["units"]}
    assert {"newline", "space", "inside [ ]", "speaker line"} <= classes
    assert "inside ( )" not in classes and 'inside " "' not in classes
    for name in ("activations.png", "activations_heatmap.png"):
        assert (out / name).stat().st_size > 5_000


def test_errors_are_one_line(lstm_run, tmp_path):
    from rnnkit.lab.activations import main as lab_main

    cases = [
        ([str(tmp_path / "nope")], "no run"),
        ([str(lstm_run), "--text", "caf\u00e9 \u2603"], "--text: .*never seen"),
        ([str(lstm_run), "--text", ""], "empty"),
        ([str(lstm_run), "--text", "a", "--text-file", "x"], "one, not both"),
        ([str(lstm_run), "--width", "2"], "--width"),
    ]
    for args, word in cases:
        with pytest.raises(UserError, match=word) as info:
            lab_main([*args, "--out", str(tmp_path / "o")])
        assert "\n" not in str(info.value)
