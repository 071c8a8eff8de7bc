"""The main job end to end through the command line: train, resume, sample, score, plot, errors."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from rnnkit.cli import main

TEXT = (Path(__file__).parents[1] / "fixtures" / "tiny_shakespeare.txt").read_text()
QUIET = ["--train.progress", "false"]


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return path


def train(args: list[str]) -> int:
    return main(["train", "charlm", "--preset", "tiny", *QUIET, *args])


def log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(path).items() if k.startswith("model.")}


def test_train_writes_a_run_and_the_loss_goes_down(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(["--data", str(corpus), "--out", str(run), "--train.max_steps", "60"]) == 0
    out = capsys.readouterr().out
    assert "validation loss" in out and "sample (temperature 0.8)" in out
    for name in ("last.safetensors", "best.safetensors", "config.json", "log.jsonl"):
        assert (run / name).exists(), name
    assert list((run / "tensorboard").iterdir())
    records = log(run)
    train_losses = [r["loss"] for r in records if r["split"] == "train"]
    val = [r for r in records if r["split"] == "val"]
    assert train_losses[-1] < 0.8 * train_losses[0]
    assert val[-1]["loss"] < val[0]["loss"] and val[-1]["bpc"] == pytest.approx(
        val[-1]["loss"] / math.log(2)
    )
    assert {"grad_norm", "lr", "tokens_per_s"} <= set(records[0])
    saved = json.loads((run / "config.json").read_text())
    assert saved["config"]["train"]["max_steps"] == 60 and saved["config"]["data"]["path"]


def test_sample_gives_the_same_text_with_the_step_shared_by_threads(
    corpus, tmp_path, capsys, monkeypatch
):
    """A model whose hidden size is a multiple of 64 takes the compiled sampler's team of
    threads (``--threads 2``); the text is the one thread's, byte for byte."""
    from rnnkit.kernels import fused
    from rnnkit.kernels.fused import lm_sampler

    if not fused.available():
        pytest.skip("no C++ compiler here")
    teams = []
    init = lm_sampler.Stepper.__init__

    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        teams.append(self.threads)

    monkeypatch.setattr(lm_sampler.Stepper, "__init__", spy)
    run = tmp_path / "run"
    cfg = ["--model.cell", "lstm", "--model.hidden_size", "128", "--train.max_steps", "30"]
    assert train(["--data", str(corpus), "--out", str(run), *cfg]) == 0
    capsys.readouterr()
    texts, before = [], torch.get_num_threads()
    try:
        for threads in ("1", "2"):
            args = ["sample", str(run), "--length", "300", "--seed", "4", "--threads", threads]
            assert main(args) == 0
            texts.append(capsys.readouterr().out)
    finally:
        torch.set_num_threads(before)  # the command sets the process's
    assert texts[0] == texts[1] and len(set(texts[0])) > 5
    assert teams[-2:] == [1, 2]
    args = ["sample", str(run), "--length", "100", "--seed", "4", "--weights", "bfloat16"]
    assert main(args) == 0 and len(capsys.readouterr().out) > 50
    assert main(["sample", str(run), "--threads", "0"]) == 2
    assert "--threads must be in [1, 1024], got 0" in capsys.readouterr().err


def test_sample_score_and_plot(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(["--data", str(corpus), "--out", str(run)]) == 0
    capsys.readouterr()
    args = ["sample", str(run), "--prime", "ROMEO", "--length", "50", "--top-k", "5"]
    assert main([*args, "--seed", "3"]) == 0
    first = capsys.readouterr().out
    assert main([*args, "--seed", "3"]) == 0
    assert capsys.readouterr().out == first and first.startswith("ROMEO")
    assert main(["sample", str(run), "--greedy", "--length", "20"]) == 0
    assert main(["score", str(run), "ROMEO. What light", "xqzz kqvv vvqxzkq"]) == 0
    out = capsys.readouterr().out
    assert (
        "bits/char" in out
        and "most likely (highest total log-probability): 'ROMEO. What light'" in out
    )
    assert main(["plot", str(run)]) == 0
    pngs = capsys.readouterr().out.split()
    assert pngs and all(Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_word_model_trains_and_scores(corpus, tmp_path, capsys):
    run = tmp_path / "words"
    args = ["train", "wordlm", "--preset", "tiny", *QUIET, "--data", str(corpus)]
    assert main([*args, "--out", str(run), "--data.max_vocab", "300"]) == 0
    records = log(run)
    train_losses = [r["loss"] for r in records if r["split"] == "train"]
    assert train_losses[-1] < train_losses[0]
    assert "ppl" in records[-1]
    capsys.readouterr()
    assert main(["score", str(run), "the king", "the zyzzyva"]) == 0
    out = capsys.readouterr().out
    assert "bits/token" in out and "1 word(s) scored as <unk>: zyzzyva" in out


RESUME_STEPS = 40
RESUME_RUN = [
    "train", "charlm", "--preset", "tiny", *QUIET, "--train.max_steps", str(RESUME_STEPS),
    "--train.checkpoint_every", "10", "--train.eval_every", "15", "--model.dropout", "0.2",
]  # fmt: skip
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
DRIVER = str(Path(__file__).parents[1] / "fault_driver.py")  # rnnkit with a fault at a known step


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """One whole run, the reference for the interrupted ones."""
    tmp = tmp_path_factory.mktemp("whole")
    (tmp / "corpus.txt").write_text(TEXT)
    assert main([*RESUME_RUN, "--data", str(tmp / "corpus.txt"), "--out", str(tmp / "run")]) == 0
    return tmp / "run"


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a / "last.safetensors"), weights(b / "last.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.mark.parametrize(
    "fault, at, status, saved_at",
    [
        ("kill", 27, -signal.SIGKILL, 20),  # between checkpoints: the one of step 20 stays
        ("kill-in-checkpoint", 30, -signal.SIGKILL, 20),  # a half-written .tmp is left
        ("int", 27, 130, 27),  # Ctrl-C: stop at the step boundary, save, say how to continue
        ("term", 27, 143, 27),  # SIGTERM (kill, timeout, batch schedulers): the same, 128 + 15
    ],
)
def test_interrupted_and_resumed_run_ends_with_the_same_weights(
    fault, at, status, saved_at, uninterrupted, tmp_path, capsys
):
    """A real process, killed (or signalled) at a known step: the resumed run equals an
    uninterrupted one, bit for bit."""
    corpus = uninterrupted.parent / "corpus.txt"
    killed = tmp_path / "killed"
    args = [*RESUME_RUN, "--data", str(corpus), "--out", str(killed)]
    done = subprocess.run(
        [sys.executable, DRIVER, fault, str(at), *args], env=ENV, capture_output=True, text=True
    )
    assert done.returncode == status, done.stderr[-2000:]
    if status > 0:
        assert "checkpoint saved" in done.stderr and "--resume" in done.stderr, done.stderr
    stopped_at = json.loads(safe_open(killed / "last.safetensors", "pt").metadata()["meta"])
    assert stopped_at["trainer"]["step"] == saved_at
    orphans = list(killed.glob(".*.tmp"))
    assert len(orphans) == (fault == "kill-in-checkpoint")
    assert main(["train", "charlm", *QUIET, "--out", str(killed), "--resume"]) == 0
    assert not list(killed.glob(".*.tmp"))  # the orphan of the killed write is gone
    for split in ("train", "val"):  # the killed attempt's lines after the checkpoint are gone
        steps = [r["step"] for r in log(killed) if r["split"] == split]
        assert steps == sorted(set(steps)) and steps[-1] == RESUME_STEPS, (split, steps)
    assert_same_weights(uninterrupted, killed)


def test_two_processes_match_one_at_the_same_global_batch(corpus, tmp_path):
    """torchrun, DistributedDataParallel on gloo: 2 x B/2 streams equal 1 x B."""
    common = [
        "train", "charlm", "--preset", "tiny", *QUIET, "--data", str(corpus),
        "--train.max_steps", "15", "--data.batch_size", "8",
    ]  # fmt: skip
    env = ENV
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, "-m", "rnnkit", *common, "--out", str(one)], check=True,
                   env=env, capture_output=True)  # fmt: skip
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--standalone", "-m", "rnnkit"]  # fmt: skip
    done = subprocess.run([*torchrun, *common, "--out", str(two)], env=env, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = weights(one / "last.safetensors"), weights(two / "last.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (None, ["--data", "{tmp}/missing.txt"], "missing.txt"),
        ("empty", ["--data", "{tmp}/bad.txt"], "empty"),
        ("binary", ["--data", "{tmp}/bad.txt"], "binary"),
        ("latin1", ["--data", "{tmp}/bad.txt"], "UTF-8"),
        (None, ["--train.lrr", "1"], "did you mean 'train.lr'"),
        (None, ["--train.lr", "fast"], "train.lr"),
        (None, ["--model.cell", "transformer"], "model.cell"),
        (None, ["--preset", "huge"], "unknown preset 'huge'"),
        (None, ["--resume", "--out", "{tmp}/nothing"], "no checkpoint"),
        ("empty", ["--out", "{tmp}/bad.txt"], "is a file: choose another --out"),
        ("empty", ["--out", "{tmp}/bad.txt/run"], "cannot create the run directory"),
        (None, ["--model.hidden_size", "0"], "'model.hidden_size' must be a positive integer"),
        (None, ["--model.dropout", "1.5"], "'model.dropout' must be a number in [0, 1], got 1.5"),
        (None, ["--train.lr", "-1"], "'train.lr' must be >= 0"),
        (None, ["--train.max_steps", "0"], "'train.max_steps' must be >= 1"),
        (None, ["--train.eval_every", "0"], "'train.eval_every' must be >= 1"),
        (None, ["--data.batch_size", "0"], "data.batch_size"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(setup, args, message, tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    if setup == "empty":
        bad.write_text("")
    elif setup == "binary":
        bad.write_bytes(b"abc\x00\x01\x02" * 100)
    elif setup == "latin1":
        bad.write_bytes("caf\u00e9 au lait\n".encode("latin-1"))
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "run")]
    assert train(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "run").exists()  # a refused run leaves no directory behind


def test_unknown_task_and_existing_run_directory(corpus, tmp_path, capsys):
    assert main(["train", "poetry"]) == 2
    assert "unknown task 'poetry'" in capsys.readouterr().err
    run = tmp_path / "run"
    assert train(["--data", str(corpus), "--out", str(run), "--train.max_steps", "2"]) == 0
    before = {p: p.stat().st_mtime_ns for p in run.iterdir()}
    capsys.readouterr()
    assert train(["--data", str(corpus), "--out", str(run)]) == 2
    assert "exists" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in run.iterdir()} == before  # nothing overwritten


def test_corrupt_and_mismatched_checkpoints(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(["--data", str(corpus), "--out", str(run), "--train.max_steps", "2"]) == 0
    capsys.readouterr()
    assert main(["train", "wordlm", "--out", str(run), "--resume", *QUIET]) == 2
    assert "charlm" in capsys.readouterr().err
    (run / "best.safetensors").write_bytes(b"not a checkpoint at all")
    assert main(["sample", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "best.safetensors" in err and len(err.splitlines()) == 1
    assert main(["sample", str(run / "last.safetensors"), "--prime", "\u2603"]) == 2
    assert "never seen" in capsys.readouterr().err
    assert main(["score", str(run / "last.safetensors"), ""]) == 2
    assert "nothing to score" in capsys.readouterr().err


def test_help_lists_every_option_with_its_default(capsys):
    assert main(["train", "charlm", "--help"]) == 0
    out = capsys.readouterr().out
    for key in ("--model.hidden_size", "--data.bptt_len", "--train.lr", "--train.max_minutes"):
        assert key in out
    assert "(default: 0.003)" in out and "presets: default, quick, tiny" in out


def test_toml_config_and_dry_run(corpus, tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('[model]\ncell = "gru"\nhidden_size = 24\n[train]\nlr = 0.005\n')
    run = tmp_path / "run"
    args = ["--data", str(corpus), "--out", str(run), "--config", str(toml), "--dry-run"]
    assert train([*args, "--train.lr", "0.004"]) == 0
    cfg = json.loads((run / "config.json").read_text())["config"]
    assert cfg["model"]["cell"] == "gru" and cfg["model"]["hidden_size"] == 24
    assert cfg["train"]["lr"] == 0.004  # the command line wins over the file
    assert [r["step"] for r in log(run) if r["split"] == "train"] == [1]
