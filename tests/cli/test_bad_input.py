"""A user's mistake ends in one line on stderr and exit status 2, naming the file, line or
option and what was expected: never a traceback, never silent acceptance, never lost work."""

from __future__ import annotations

import errno
import math
import os
from pathlib import Path

import pytest
import torch

from rnnkit.cli import main
from rnnkit.train import trainer as trainer_module
from rnnkit.train.checkpoint import load_checkpoint, save_checkpoint
from rnnkit.train.memory import check_model_memory, parameter_lower_bound

QUIET = ["--train.progress", "false"]
TEXT = (Path(__file__).parents[1] / "fixtures" / "tiny_shakespeare.txt").read_text()


def error_line(capsys, command: str) -> str:
    """The one line a refused command printed on stderr."""
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"rnnkit {command}: error: "), err
    return err


@pytest.fixture(scope="module")
def dates_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dates") / "run"
    small = ["--data.train_examples", "200", "--data.val_examples", "16",
             "--data.test_examples", "16", "--train.max_steps", "2",
             "--train.eval_every", "2"]  # fmt: skip
    assert main(["train", "dates", "--preset", "tiny", "--out", str(out), *QUIET, *small]) == 0
    return out


# ---- checkpoints ---------------------------------------------------------------------------


def test_a_checkpoint_lacking_its_vocabulary_is_one_line(tmp_path, capsys):
    path = tmp_path / "last.safetensors"
    meta = {"task": "charlm", "level": "char", "config": {}}
    save_checkpoint(path, model_state={"w": torch.ones(1)}, meta=meta)
    assert main(["sample", str(path), "--length", "3"]) == 2
    assert error_line(capsys, "sample").endswith(
        f"checkpoint {path} is incomplete: its metadata lacks 'vocab'"
    )
    save_checkpoint(path, model_state={"w": torch.ones(1)}, meta={"task": "dates"})
    assert main(["predict", str(path), "x"]) == 2
    assert "lacks 'config'" in error_line(capsys, "predict")


# ---- options -------------------------------------------------------------------------------


def test_a_model_too_large_for_memory_is_refused_before_the_run_directory(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "charlm", "--preset", "tiny", "--out", str(run), *QUIET]
    assert main([*args, "--model.hidden_size", "1000000000"]) == 2
    err = error_line(capsys, "train")
    assert "too large for this machine" in err and "model.hidden_size 1000000000" in err
    assert not run.exists()


def test_the_memory_bound():
    from rnnkit.tasks.lm import ModelConfig

    cfg = ModelConfig(cell="lstm", embedding_size=3, hidden_size=5, num_layers=2)
    assert parameter_lower_bound(cfg) == 4 * 5 * (3 + 5) + 4 * 5 * (5 + 5)
    model = torch.nn.LSTM(3, 5, 2)  # the bound is below a real model's count
    assert parameter_lower_bound(cfg) <= sum(p.numel() for p in model.parameters())

    class Config:
        model = cfg

    check_model_memory(Config(), memory=10**6)
    with pytest.raises(ValueError, match="model.hidden_size 5"):
        check_model_memory(Config(), memory=1000)


def test_an_allocator_failure_while_building_is_one_line_and_leaves_no_run(
    tmp_path, capsys, monkeypatch
):
    def refuse(*args, **kwargs):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 192000000000 bytes.\nError code 12"
        )

    monkeypatch.setattr("rnnkit.tasks.lm.LanguageModel.__init__", refuse)
    run = tmp_path / "run"
    assert main(["train", "charlm", "--preset", "tiny", "--out", str(run), *QUIET]) == 2
    assert "out of memory while building the charlm task" in error_line(capsys, "train")
    assert not run.exists()


@pytest.mark.parametrize("seed", [str(2**64), str(2**63), "-1"])
def test_seeds_outside_the_range_are_one_line(tmp_path, capsys, seed):
    args = ["train", "charlm", "--preset", "tiny", "--out", str(tmp_path / "r"), *QUIET]
    assert main([*args, "--train.seed", seed]) == 2
    assert error_line(capsys, "train") == (
        f"rnnkit train: error: option 'train.seed' must be in [0, {2**63 - 1}], got {seed}"
    )
    assert not (tmp_path / "r").exists()
    assert main(["sample", str(tmp_path / "r"), "--seed", seed]) == 2
    assert error_line(capsys, "sample").endswith(f"--seed must be in [0, 2**63 - 1], got {seed}")


def test_predict_seed_out_of_range(dates_run, capsys):
    assert main(["predict", str(dates_run), "x", "--sample", "--seed", str(2**64)]) == 2
    assert "--seed must be in [0, 2**63 - 1]" in error_line(capsys, "predict")


# ---- data files ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["directory", "fifo"])
@pytest.mark.parametrize("task", ["charlm", "translate", "g2p"])
def test_data_that_is_not_a_regular_file(tmp_path, capsys, kind, task):
    data = tmp_path / "data"
    if kind == "directory":
        data.mkdir()
    elif hasattr(os, "mkfifo"):
        os.mkfifo(data)
    else:
        pytest.skip("no FIFOs here")
    run = tmp_path / "run"
    assert main(["train", task, "--preset", "tiny", "--data", str(data), "--out", str(run)]) == 2
    err = error_line(capsys, "train")
    want = "is a directory, expected" if kind == "directory" else "is not a regular file"
    assert str(data) in err and want in err
    assert not run.exists()


def test_g2p_binary_data_is_one_line(tmp_path, capsys):
    data = tmp_path / "cmudict.dict"
    data.write_bytes(bytes(range(256)) * 4)
    assert main(["train", "g2p", "--preset", "tiny", "--data", str(data), "--out",
                 str(tmp_path / "run")]) == 2  # fmt: skip
    assert "binary file" in error_line(capsys, "train")


# ---- outputs -------------------------------------------------------------------------------


def test_predict_attention_under_a_file_is_one_line_before_decoding(dates_run, tmp_path, capsys):
    blocker = tmp_path / "x.png"
    blocker.write_text("a file")
    for target, why in [(blocker / "y.png", "is a file, not a directory"),
                        (tmp_path, "is a directory")]:  # fmt: skip
        assert main(["predict", str(dates_run), "3/3/20", "--attention", str(target)]) == 2
        assert why in error_line(capsys, "predict")


def test_plot_out_under_a_file_is_one_line(dates_run, tmp_path, capsys):
    blocker = tmp_path / "x.png"
    blocker.write_text("a file")
    assert main(["plot", str(dates_run), "--out", str(blocker)]) == 2
    assert "is a file, not a directory" in error_line(capsys, "plot")


def test_eval_refuses_to_overwrite_without_force(dates_run, tmp_path, capsys):
    out = tmp_path / "results.json"
    out.write_text("precious\n")
    args = ["eval", str(dates_run), "--limit", "4", "--out", str(out)]
    assert main(args) == 2
    assert error_line(capsys, "eval") == (
        f"rnnkit eval: error: --out: {out} exists; pass --force to replace it, or choose "
        "another --out"
    )
    assert out.read_text() == "precious\n" and not out.with_suffix(".png").exists()
    assert main([*args, "--force"]) == 0
    capsys.readouterr()
    assert '"task": "dates"' in out.read_text() and out.with_suffix(".png").exists()
    other = tmp_path / "other.json"
    other.with_suffix(".png").write_text("a picture")
    assert main(["eval", str(dates_run), "--limit", "4", "--out", str(other)]) == 2
    assert "other.png exists" in error_line(capsys, "eval")
    assert main(["eval", str(dates_run), "--limit", "4"]) == 0  # the run's own file: replaced
    assert main(["eval", str(dates_run), "--limit", "4"]) == 0


def test_a_full_disk_while_logging_is_one_line_and_keeps_the_checkpoint(
    tmp_path, capsys, monkeypatch
):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    run = tmp_path / "run"
    real_open = open
    writes = {"log": 0}

    def full_disk(file, mode="r", *args, **kwargs):
        if str(file).endswith("log.jsonl") and "a" in mode:
            writes["log"] += 1
            if writes["log"] > 4:  # steps 5, 10 (a checkpoint, val), 15 logged; then full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "open", full_disk, raising=False)
    code = main(["train", "charlm", "--preset", "tiny", "--data", str(corpus), "--out", str(run),
                 *QUIET, "--train.max_steps", "40", "--train.log_every", "5",
                 "--train.eval_every", "10", "--train.checkpoint_every", "10"])  # fmt: skip
    assert code == 2
    err = error_line(capsys, "train")
    assert f"cannot append to the training log {run / 'log.jsonl'}: No space left" in err
    ckpt = load_checkpoint(run / "last.safetensors", require=("trainer",))
    assert ckpt.meta["trainer"]["step"] == 10


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_config_file_that_is_a_fifo_is_refused_without_blocking(tmp_path, capsys):
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    args = ["train", "charlm", "--preset", "tiny", "--config", str(fifo), "--out", str(tmp_path)]
    assert main(args) == 2
    assert "is not a regular file" in error_line(capsys, "train")


def test_predict_alpha_must_be_finite(dates_run, capsys):
    assert main(["predict", str(dates_run), "x", "--beam", "2", "--alpha", "nan"]) == 2
    assert error_line(capsys, "predict").endswith("--alpha must be a finite number, got nan")


def test_bench_refuses_zero_repeats_and_a_json_directory_before_measuring(tmp_path, capsys):
    assert main(["bench", "speed", "--repeats", "0"]) == 2  # 0 was read as "the default"
    assert "--repeats must be at least 1" in error_line(capsys, "bench")
    for bench in ("speed", "memory"):
        assert main(["bench", bench, "--json", str(tmp_path)]) == 2
        assert "it is a directory" in error_line(capsys, "bench")


def test_lab_seeds_outside_the_range(tmp_path, capsys):
    assert main(["lab", "gradflow", "--seed", "-1", "--out", str(tmp_path), "--quiet"]) == 2
    assert "option --seed: expected an integer in [0, " in error_line(capsys, "lab")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("log.jsonl", "cannot open the training log"),
        ("tensorboard", "cannot write the TensorBoard logs"),
        ("cache", "cannot write the encoded corpus"),
    ],
)
def test_resuming_a_damaged_run_directory_is_one_line(tmp_path, capsys, damage, message):
    import shutil

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    run = tmp_path / "run"
    args = ["train", "charlm", "--preset", "tiny", "--data", str(corpus), "--out", str(run),
            *QUIET, "--train.eval_every", "2", "--train.checkpoint_every", "2"]  # fmt: skip
    assert main([*args, "--train.max_steps", "2"]) == 0
    capsys.readouterr()
    path = run / damage
    if path.is_dir():  # a file where a directory was
        shutil.rmtree(path)
        path.write_text("in the way")
    else:  # a directory where a file was
        path.unlink()
        path.mkdir()
    assert main([*args, "--resume", "--train.max_steps", "4"]) == 2
    err = error_line(capsys, "train")
    assert message in err and str(path) in err


def test_too_many_threads_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "adding", "--preset", "tiny", "--out", str(run), *QUIET]
    assert main([*args, "--train.threads", "100000"]) == 2  # was "can't start new thread"
    assert error_line(capsys, "train").endswith(
        "option 'train.threads' must be in [0, 1024], got 100000"
    )
    assert not run.exists()


def test_out_of_memory_while_training_is_one_line_and_leaves_no_empty_run(
    tmp_path, capsys, monkeypatch
):
    def refuse(self, *args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8e10")

    monkeypatch.setattr(trainer_module.Trainer, "_loop", refuse)
    run = tmp_path / "run"
    assert main(["train", "adding", "--preset", "tiny", "--out", str(run), *QUIET]) == 2
    assert "out of memory while training at step 0: " in error_line(capsys, "train")
    assert not run.exists()


@pytest.mark.parametrize("temperature", [1e-40, 1e-300, 5e-324])
def test_a_tiny_temperature_samples_the_likeliest_token(temperature):
    from rnnkit.decoding import choose_next, filter_logits

    logits = torch.tensor([[1.0, 3.0, 2.0], [0.5, -1.0, -math.inf]])
    z = filter_logits(logits, temperature=temperature)  # logits / τ overflowed: NaN, traceback
    assert torch.equal(torch.softmax(z, -1), torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    assert choose_next(logits, temperature=temperature).tolist() == [1, 0]
    assert torch.equal(filter_logits(logits, temperature=0.5), logits / 0.5)  # unchanged


def test_more_generated_dates_than_memory_holds_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "dates", "--preset", "tiny", "--out", str(run), *QUIET]
    assert main([*args, "--data.train_examples", str(10**12)]) == 2  # generated for hours
    assert "'data.train_examples' 1,000,000,000,000" in error_line(capsys, "train")
    assert not run.exists()
