"""A run under faults, as a user meets them: resuming a finished run, a refused resume, two
processes on one run, non-finite training, a run killed before its first checkpoint, orphan
temporary files, a full disk, a time budget. (Kills and signals of a real process at a known step
are in test_train_cli.py; the random kills in test_kill_at_random_moments, marked slow.)"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from test_trainer import SumTask

from rnnkit.cli import main
from rnnkit.train import checkpoint as checkpoint_module
from rnnkit.train import trainer as trainer_module
from rnnkit.train.checkpoint import load_checkpoint, save_checkpoint
from rnnkit.train.trainer import TrainConfig, Trainer, learning_rate, lock_run_dir

TEXT = (Path(__file__).parents[1] / "fixtures" / "tiny_shakespeare.txt").read_text()
QUIET = ["--train.progress", "false"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return path


def train(*args: str) -> int:
    return main(["train", "charlm", "--preset", "tiny", *QUIET, *args])


def resume(run: Path, *args: str) -> int:
    return main(["train", "charlm", *QUIET, "--out", str(run), "--resume", *args])


def digest(run: Path) -> dict[str, str]:
    """Every file in the run directory, by its bytes."""
    return {
        str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run.rglob("*"))
        if p.is_file()
    }


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def step_of(path: Path) -> int:
    return load_checkpoint(path).meta["trainer"]["step"]


# ---- 1, 2: resuming a finished run; a refused resume changes nothing -----------------------
def test_resuming_a_finished_run_says_so_and_changes_nothing(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert train("--data", str(corpus), "--out", str(run)) == 0
    before = digest(run)
    capsys.readouterr()
    assert resume(run) == 0  # nothing to do is not an error
    out = capsys.readouterr().out
    assert "is complete (step 40" in out and "--resume --train.max_steps 80" in out, out
    assert digest(run) == before
    assert resume(run, "--train.max_steps", "60") == 0  # extended, as the message says
    assert step_of(run / "last.safetensors") == 60


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model.hidden_size", "64"], "does not fit the model"),
        (["--train.lr", "inf"], "'train.lr' must be a finite number"),
        (["--train.optimizer", "sgd"], "was trained with another optimiser"),
        (["--data", "{tmp}/missing.txt"], "missing.txt"),
    ],
)
def test_a_refused_resume_changes_nothing_in_the_run(corpus, tmp_path, capsys, args, message):
    run = tmp_path / "run"
    assert train("--data", str(corpus), "--out", str(run), "--train.max_steps", "20") == 0
    before = digest(run)
    capsys.readouterr()
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert resume(run, "--train.max_steps", "40", *args) == 2
    assert message in one_line(capsys)
    assert digest(run) == before  # config.json, logs, TensorBoard files: all as they were


# ---- 3: one process per run directory -----------------------------------------------------
def test_a_run_directory_in_use_is_refused(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert train("--data", str(corpus), "--out", str(run), "--train.max_steps", "20") == 0
    capsys.readouterr()
    held = lock_run_dir(run)  # as another process training into it holds it
    try:
        before = digest(run)
        assert resume(run, "--train.max_steps", "40") == 2
        assert "is in use by another rnnkit process" in one_line(capsys)
        assert train("--data", str(corpus), "--out", str(run)) == 2
        assert "is in use by another rnnkit process" in one_line(capsys)
        assert digest(run) == before
    finally:
        held.close()
    assert resume(run, "--train.max_steps", "40") == 0  # released with its holder


def test_two_processes_on_one_run_directory(corpus, tmp_path, capsys):
    """A real second process: the one that came first keeps the run, the other is refused."""
    run = tmp_path / "run"
    args = ["train", "charlm", "--preset", "tiny", *QUIET, "--data", str(corpus), "--out",
            str(run), "--train.max_steps", "100000"]  # fmt: skip
    first = subprocess.Popen(
        [sys.executable, "-m", "rnnkit", *args], env=ENV, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120  # config.json is written once the lock is held
        while not (run / "config.json").exists() and first.poll() is None:
            assert time.monotonic() < deadline, "the first run never started"
            time.sleep(0.05)
        assert train("--data", str(corpus), "--out", str(run)) == 2
        assert "in use by another rnnkit process" in one_line(capsys)
        assert resume(run) == 2
        assert "in use by another rnnkit process" in one_line(capsys)
    finally:
        first.kill()
        first.wait()


# ---- 5: non-finite training ---------------------------------------------------------------
class NaNAtStep(SumTask):
    """The sum task whose loss is NaN at the given (1-based) steps."""

    def __init__(self, bad_steps: set[int]) -> None:
        super().__init__()
        self.bad_steps, self.calls = bad_steps, 0

    def loss(self, model, batch):
        self.calls += 1
        loss, n = super().loss(model, batch)
        return (loss * math.nan if self.calls in self.bad_steps else loss), n


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_a_non_finite_step_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = TrainConfig(progress=False, eval_every=10, checkpoint_every=10, log_every=5,
                      max_steps=40, lr=1e-2)  # fmt: skip
    trainer = Trainer(NaNAtStep({23}), cfg, tmp_path, {"task": "sum"})
    with pytest.raises(trainer_module.UserError) as excinfo:
        trainer.fit()
    message = str(excinfo.value)
    assert message.startswith("step 23: the loss is nan") and "\n" not in message
    assert "last.safetensors is kept" in message and "--train.nonfinite skip" in message
    kept = load_checkpoint(tmp_path / "last.safetensors")
    assert kept.meta["trainer"]["step"] == 20
    assert all(torch.isfinite(t).all() for t in kept.model_state.values())


def test_non_finite_steps_can_be_skipped_and_are_counted(tmp_path):
    cfg = TrainConfig(progress=False, eval_every=10, checkpoint_every=10, log_every=5,
                      max_steps=40, lr=1e-2, nonfinite="skip")  # fmt: skip
    result = Trainer(NaNAtStep({12, 23}), cfg, tmp_path, {"task": "sum"}).fit()
    assert result["skipped"] == 2 and result["step"] == 40 and math.isfinite(result["loss"])
    train_records = [r for r in records(tmp_path) if r["split"] == "train"]
    assert [r["skipped"] for r in train_records] == [0, 0, 1, 1, 2, 2, 2, 2]
    assert load_checkpoint(tmp_path / "last.safetensors").meta["trainer"]["skipped"] == 2


def test_weights_that_are_not_finite_are_never_saved(tmp_path):
    trainer = Trainer(SumTask(), TrainConfig(progress=False), tmp_path, {"task": "sum"})
    with torch.no_grad():
        trainer.model["head"].bias.fill_(math.inf)
    with pytest.raises(trainer_module.UserError, match="the weights hold NaN or inf"):
        trainer.save("last.safetensors")
    assert not (tmp_path / "last.safetensors").exists()


def test_a_diverged_lm_run_stops_in_one_line_and_its_checkpoints_are_refused(
    corpus, tmp_path, capsys
):
    run = tmp_path / "run"
    assert train("--data", str(corpus), "--out", str(run), "--train.max_steps", "20") == 0
    capsys.readouterr()
    # a checkpoint holding NaN (written by hand: the trainer never writes one)
    ckpt = load_checkpoint(run / "best.safetensors")
    state = dict(ckpt.model_state)
    state["head.bias"] = torch.full_like(state["head.bias"], math.nan)
    save_checkpoint(run / "best.safetensors", model_state=state, meta=ckpt.meta, rng=False)
    for command in (["sample", str(run)], ["score", str(run), "ROMEO"]):
        assert main(command) == 2
        err = one_line(capsys)
        assert "best.safetensors holds NaN or inf weights ('head.bias')" in err, err


def test_a_seq2seq_checkpoint_with_nan_weights_is_refused(tmp_path, capsys):
    run = tmp_path / "dates"
    small = ["--data.train_examples", "200", "--data.val_examples", "16",
             "--data.test_examples", "16", "--train.max_steps", "2",
             "--train.eval_every", "2"]  # fmt: skip
    assert main(["train", "dates", "--preset", "tiny", "--out", str(run), *QUIET, *small]) == 0
    ckpt = load_checkpoint(run / "best.safetensors")
    state = {k: v.clone() for k, v in ckpt.model_state.items()}
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key].view(-1)[0] = math.inf
    save_checkpoint(run / "best.safetensors", model_state=state, meta=ckpt.meta, rng=False)
    capsys.readouterr()
    for command in (["predict", str(run), "3/3/20"], ["eval", str(run)]):
        assert main(command) == 2
        assert f"holds NaN or inf weights ({key!r})" in one_line(capsys)
    # model options the library refuses, in a checkpoint's config: one line, not a traceback
    ckpt.meta["config"]["model"]["hidden_size"] = 0
    save_checkpoint(
        run / "best.safetensors", model_state=ckpt.model_state, meta=ckpt.meta, rng=False
    )
    assert main(["predict", str(run), "3/3/20"]) == 2
    assert "option 'model.hidden_size'" in one_line(capsys)


def test_a_diverged_lm_run_is_not_reported_as_a_success(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert train("--data", str(corpus), "--out", str(run), "--train.lr", "1e6") == 2
    err = one_line(capsys)
    assert "training diverged: validation loss" in err and "lower --train.lr" in err, err


def test_non_finite_options_are_refused_naming_the_key(tmp_path, capsys):
    for value in ("inf", "nan", "-inf"):
        assert train("--out", str(tmp_path / "run"), "--train.lr", value) == 2
        assert f"option 'train.lr' must be a finite number, got '{value}'" in one_line(capsys)
    toml = tmp_path / "c.toml"
    toml.write_text("[model]\ndropout = nan\n")
    assert train("--out", str(tmp_path / "run"), "--config", str(toml)) == 2
    assert "'model.dropout' must be a finite number" in one_line(capsys)
    assert not (tmp_path / "run").exists()


# ---- 6, 7: killed before the first checkpoint; orphans; relative --data ---------------------
def killed_before_first_checkpoint(corpus: Path, run: Path, monkeypatch) -> None:
    """A run that dies at step 7, before its first checkpoint (at 20)."""

    def die(self):
        if self.step == 7:
            raise SystemExit("killed")
        return real_clip(self)

    real_clip = Trainer._clip
    monkeypatch.setattr(Trainer, "_clip", die)
    with pytest.raises(SystemExit):
        train("--data", str(corpus), "--out", str(run))
    monkeypatch.undo()
    assert (run / "config.json").exists() and not (run / "last.safetensors").exists()


def test_a_run_killed_before_its_first_checkpoint_can_be_resumed(
    corpus, tmp_path, capsys, monkeypatch
):
    run = tmp_path / "run"
    killed_before_first_checkpoint(corpus, run, monkeypatch)
    capsys.readouterr()
    assert resume(run) == 0
    assert "holds no checkpoint yet: starting it again from step 0" in capsys.readouterr().out
    assert step_of(run / "last.safetensors") == 40
    steps = [r["step"] for r in records(run) if r["split"] == "train"]
    assert steps == sorted(set(steps))  # the killed attempt's log lines are gone


def test_a_fresh_start_may_reuse_a_run_directory_without_checkpoint(
    corpus, tmp_path, capsys, monkeypatch
):
    run = tmp_path / "run"
    killed_before_first_checkpoint(corpus, run, monkeypatch)
    assert train("--data", str(corpus), "--out", str(run)) == 0
    assert step_of(run / "last.safetensors") == 40
    capsys.readouterr()
    assert train("--data", str(corpus), "--out", str(run)) == 2  # now it holds a checkpoint
    assert "exists and is not empty: pass --resume" in one_line(capsys)


def test_a_run_killed_before_it_saved_its_config_can_be_started_again(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "cache").mkdir(parents=True)
    (run / ".lock").touch()  # all that a kill during start-up leaves
    assert resume(run) == 2
    assert "stopped before it saved its config: start it again without --resume" in one_line(capsys)
    assert train("--data", str(corpus), "--out", str(run), "--train.max_steps", "20") == 0


def test_a_relative_data_path_is_stored_absolute(corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(corpus.parent)
    run = tmp_path / "run"
    assert train("--data", corpus.name, "--out", str(run), "--train.max_steps", "20") == 0
    saved = json.loads((run / "config.json").read_text())["config"]["data"]["path"]
    assert saved == str(corpus)
    monkeypatch.chdir(tmp_path.parent)  # resume from elsewhere
    assert resume(run, "--train.max_steps", "30") == 0


# ---- 10 (c): a full disk ------------------------------------------------------------------
def test_a_full_disk_during_a_checkpoint_fails_in_one_line_and_keeps_the_last(
    corpus, tmp_path, capsys, monkeypatch
):
    run = tmp_path / "run"
    real_save_file = checkpoint_module.save_file

    def save_file(tensors, filename, metadata=None):
        if json.loads(metadata["meta"])["trainer"]["step"] == 40:
            with open(filename, "wb") as f:
                f.write(b"\0" * 100)  # part of it made it to the disk
            raise SafetensorError("Error while serializing: I/O error: No space left on device")
        real_save_file(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint_module, "save_file", save_file)
    assert train("--data", str(corpus), "--out", str(run)) == 2
    err = one_line(capsys)
    assert f"cannot write {run}" in err and "No space left on device" in err, err
    assert step_of(run / "last.safetensors") == 20  # the previous one, intact
    assert not list(run.glob(".*.tmp"))
    monkeypatch.undo()
    assert resume(run) == 0 and step_of(run / "last.safetensors") == 40


# ---- 8: evaluation on a large corpus ------------------------------------------------------
def test_evaluation_is_capped_by_default(corpus, tmp_path):
    from rnnkit.tasks.charlm import default, tiny
    from rnnkit.tasks.lm import LanguageModelTask
    from rnnkit.tasks.wordlm import default as word_default

    # language models read corpora of any size: their presets cap each evaluation
    assert default().train.eval_batches == 50 and word_default().train.eval_batches == 100
    cfg = tiny()
    cfg.data.path = str(corpus)
    task = LanguageModelTask(cfg, "char", tmp_path / "cache")
    B, k = task.val_data.batch_size, cfg.data.bptt_len
    assert len(task.val_data) > 3
    with torch.no_grad():
        capped = task.evaluate(task.model, 3)
        every = task.evaluate(task.model, 0)
    assert capped["tokens"] == 3 * B * k  # the first 3 windows of the B streams
    assert every["tokens"] > (len(task.val_data) - 1) * B * k  # all (the last may be short)


# ---- 9: a time budget ---------------------------------------------------------------------
class FakeClock:
    """Seconds that pass only when the task computes a loss: `per_step` each."""

    def __init__(self, per_step: float) -> None:
        self.now, self.per_step = 0.0, per_step

    def __call__(self) -> float:
        return self.now


class TimedSumTask(SumTask):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock

    def loss(self, model, batch):
        self.clock.now += self.clock.per_step
        return super().loss(model, batch)


def test_the_schedule_follows_a_time_budget_that_binds(tmp_path):
    clock = FakeClock(per_step=1.0)  # 1 s a step, a 1-minute budget: 60 of 1000 steps
    cfg = TrainConfig(progress=False, eval_every=10, checkpoint_every=10, log_every=1, lr=1.0,
                      warmup_steps=5, max_steps=1000, max_minutes=1.0)  # fmt: skip
    trainer = Trainer(TimedSumTask(clock), cfg, tmp_path, {"task": "sum"}, clock=clock)
    result = trainer.fit()
    assert result["step"] == 60
    lrs = [r["lr"] for r in records(tmp_path) if r["split"] == "train"]
    assert lrs[4] == 1.0 and lrs[-1] == pytest.approx(0.1, abs=0.01)  # decayed with the clock
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))
    # the time is summed over resumes: the checkpoint holds it, and a resume sees it spent
    assert load_checkpoint(tmp_path / "last.safetensors").meta["trainer"]["elapsed"] >= 60


def test_learning_rate_with_a_time_budget():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert learning_rate(cfg, 60, time_used=0.0) == pytest.approx(0.55)
    assert learning_rate(cfg, 60, time_used=0.1) == pytest.approx(0.55)  # steps bind
    assert learning_rate(cfg, 20, time_used=1.0) == pytest.approx(0.1)  # time binds
    assert learning_rate(cfg, 5, time_used=0.9) == pytest.approx(0.6)  # warm-up by steps


@pytest.fixture
def bar_totals(monkeypatch) -> list:
    """The progress bar's total at each of its refreshes."""
    import tqdm

    totals = []
    real_refresh = tqdm.tqdm.refresh

    def refresh(self, *args, **kwargs):
        totals.append(self.total)
        return real_refresh(self, *args, **kwargs)

    monkeypatch.setattr(tqdm.tqdm, "refresh", refresh)
    return totals


def test_the_progress_bar_follows_a_time_budget(tmp_path, bar_totals):
    totals = bar_totals
    clock = FakeClock(per_step=1.0)
    cfg = TrainConfig(progress=False, eval_every=10, checkpoint_every=10, log_every=1,
                      max_steps=1000, max_minutes=0.5)  # fmt: skip
    Trainer(TimedSumTask(clock), cfg, tmp_path, {"task": "sum"}, clock=clock).fit()
    assert totals and totals[-1] == 30  # the bar ends full at the step the clock ended


class SlowStartTask(TimedSumTask):
    """The first step takes 20 s (set-up), the others 0.01 s: the time budget never binds."""

    def loss(self, model, batch):
        self.clock.per_step = 20.0 if self.clock.now == 0 else 0.01
        return super().loss(model, batch)


def test_a_slow_start_does_not_leave_the_progress_bar_short(tmp_path, bar_totals):
    totals = bar_totals
    clock = FakeClock(per_step=0.0)
    cfg = TrainConfig(progress=False, eval_every=50, checkpoint_every=50, log_every=1,
                      max_steps=200, max_minutes=1.0)  # fmt: skip
    result = Trainer(SlowStartTask(clock), cfg, tmp_path, {"task": "sum"}, clock=clock).fit()
    assert result["step"] == 200  # the steps ran out first
    assert min(totals) < 10 and totals[-1] == 200  # projected short after step 1, then corrected


# ---- 10 (a): kills at random moments (slow) -------------------------------------------------
@pytest.mark.slow
def test_kill_at_random_moments_then_resume_ends_bitwise_equal(corpus, tmp_path):
    """SIGKILL a real run at random moments once it is training (many land in a checkpoint
    write: it checkpoints every step), resume each time; the end equals an uninterrupted run's,
    bit for bit."""
    common = ["train", "charlm", "--preset", "tiny", *QUIET, "--data", str(corpus),
              "--train.max_steps", "600", "--train.checkpoint_every", "1",
              "--train.eval_every", "50", "--model.dropout", "0.2"]  # fmt: skip
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run([sys.executable, "-m", "rnnkit", *common, "--out", str(whole)], env=ENV,
                   check=True, capture_output=True)  # fmt: skip
    last = killed / "last.safetensors"

    def stamp() -> int:
        return last.stat().st_mtime_ns if last.exists() else 0

    rng = random.Random(12)
    kills, steps_at_kill = 0, []
    for _ in range(100):
        command = [sys.executable, "-m", "rnnkit", *common, "--out", str(killed)]
        if (killed / "config.json").exists():  # else killed before it saved its config
            command.append("--resume")
        before = stamp()
        proc = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        while proc.poll() is None and stamp() == before:  # until this attempt trains
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is not None:
            _, err = proc.communicate()
            assert proc.returncode == 0, err[-2000:]
            break
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        kills += 1
        steps_at_kill.append(
            json.loads(safe_open(last, "pt").metadata()["meta"])["trainer"]["step"]
        )
    print(f"{kills} kills; the last checkpoint was at steps {steps_at_kill}")  # pytest -s
    assert kills >= 3 and steps_at_kill[0] < 600, (kills, steps_at_kill)
    a = {k: v for k, v in load_file(whole / "last.safetensors").items() if k.startswith("model.")}
    b = {k: v for k, v in load_file(killed / "last.safetensors").items() if k.startswith("model.")}
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
