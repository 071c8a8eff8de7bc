"""The dates task: generated formats, the held-out split, training through the command line
(the loss goes down), resume, predict with an attention map, eval."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from matplotlib.image import imread

from rnnkit.cli import main
from rnnkit.tasks import dates

QUIET = ["--train.progress", "false"]
SMALL = ["--data.train_examples", "400", "--data.val_examples", "32", "--data.test_examples", "40"]


def losses(run: Path, split: str) -> list[float]:
    lines = (run / "log.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["split"] == split]


def test_formats_render_the_same_date():
    d = dt.date(2020, 3, 3)
    assert dates.render(d, dates.FORMATS[0]) == "Tuesday, 3rd of March 2020"
    assert dates.render(d, "{m}/{d}/{yy}") == "3/3/20"
    assert dates.render(d, "the {th} of {month} {yyyy}", "lower") == "the 3rd of march 2020"
    assert [dates.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 31)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "31st"
    ]  # fmt: skip


def test_held_out_dates_never_appear_in_training():
    train = dates.generate(3000, "train", 0)
    test = dates.generate(300, "test", 0)
    assert {ex.target for ex in train}.isdisjoint({ex.target for ex in test})
    assert all(dates.split_of(dt.date.fromisoformat(ex.target)) == "test" for ex in test)
    assert dates.generate(50, "test", 0) == test[:50]  # fixed: the same examples every time
    for ex in train[:200]:  # every two-digit year reads back in 1950-2049
        assert dates.FIRST <= dt.date.fromisoformat(ex.target) <= dates.LAST


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dates") / "run"
    code = main(["train", "dates", "--preset", "tiny", "--out", str(out), *QUIET, *SMALL,
                 "--train.max_steps", "30", "--train.eval_every", "15"])  # fmt: skip
    assert code == 0
    return out


def test_training_lowers_the_loss(run):
    train, val = losses(run, "train"), losses(run, "val")
    assert train[-1] < 0.8 * train[0]
    assert val[-1] < val[0]


def test_predict_with_attention_map_and_beam(run, tmp_path, capsys):
    png = tmp_path / "attn.png"
    assert main(["predict", str(run), "the 3rd of march 2020", "--attention", str(png)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("the 3rd of march 2020\t")
    image = imread(png)  # a real picture: it decodes, and it is not one flat colour
    assert image.ndim == 3 and image.shape[0] > 100 and image[..., :3].std() > 0.05
    assert main(["predict", str(run), "3/3/20", "--beam", "3", "--n-best", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "3/3/20" and lines[1].startswith("  1. ") and lines[2].startswith("  2. ")


def test_eval_writes_results(run, capsys):
    assert main(["eval", str(run), "--limit", "20"]) == 0
    result = json.loads((run / "eval_test.json").read_text())
    buckets = result["by_source_length"].values()
    assert result["examples"] == 20 and sum(b["examples"] for b in buckets) == 20
    # a share of 20 examples, and the examples-weighted mean of the per-length scores
    assert (20 * result["exact_match"]) == pytest.approx(round(20 * result["exact_match"]))
    weighted = sum(b["examples"] * b["exact_match"] for b in buckets) / 20
    assert result["exact_match"] == pytest.approx(weighted)
    assert (run / "eval_test.png").exists()


def test_resume_continues(run, capsys):
    code = main(["train", "dates", "--out", str(run), "--resume", "--train.max_steps", "32",
                 *QUIET])  # fmt: skip
    assert code == 0
    assert "step 32" in capsys.readouterr().out


def test_user_errors_are_one_line(run, tmp_path, capsys):
    assert main(["predict", str(run), "x", "--n-best", "3"]) == 2
    assert "--n-best needs --beam" in capsys.readouterr().err
    assert main(["train", "dates", "--preset", "tiny", "--model.attention", "luong-dot",
                 "--model.encoder_size", "3", "--out", str(tmp_path / "r")]) == 2  # fmt: skip
    assert "luong-dot" in capsys.readouterr().err and not (tmp_path / "r").exists()
    assert main(["eval", str(tmp_path / "missing")]) == 2


def test_resume_is_exact_across_epochs(tmp_path):
    """Stopped at step 15, in the second epoch (400 pairs / 32 = 13 batches an epoch, each
    epoch its own order), and resumed, a run ends with the same weights as one that never
    stopped."""
    import torch
    from safetensors.torch import load_file

    common = ["train", "dates", "--preset", "tiny", *QUIET, *SMALL, "--train.eval_every", "100",
              "--train.checkpoint_every", "1", "--train.schedule", "constant"]  # fmt: skip
    full, part = tmp_path / "full", tmp_path / "part"
    assert main([*common, "--out", str(full), "--train.max_steps", "18"]) == 0
    assert main([*common, "--out", str(part), "--train.max_steps", "15"]) == 0
    assert main(["train", "dates", "--out", str(part), "--resume", "--train.max_steps", "18",
                 *QUIET]) == 0  # fmt: skip
    a, b = load_file(full / "last.safetensors"), load_file(part / "last.safetensors")
    for k in a:
        if k.startswith("model."):
            torch.testing.assert_close(a[k], b[k], msg=k)


def test_two_processes_train_under_torchrun(tmp_path):
    """torchrun, DistributedDataParallel on gloo: each process takes its own batches (rank r
    of 2 reads batches 2p + r), gradients are averaged, and the run trains: the validation loss
    goes down and the checkpoint holds one set of finite weights."""
    import os
    import subprocess
    import sys

    import torch
    from safetensors.torch import load_file

    out = tmp_path / "ddp"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--standalone", "-m", "rnnkit"]  # fmt: skip
    args = ["train", "dates", "--preset", "tiny", "--out", str(out), *QUIET, *SMALL,
            "--train.max_steps", "30", "--train.eval_every", "15"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*torchrun, *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    val = losses(out, "val")
    assert len(val) == 2 and val[-1] < val[0]
    weights = load_file(out / "last.safetensors")
    assert all(torch.isfinite(w).all() for k, w in weights.items() if k.startswith("model."))
