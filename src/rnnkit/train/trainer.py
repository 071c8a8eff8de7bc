"""The task-agnostic trainer: optimiser, schedule, clipping, evaluation, checkpoints, logs.

Nothing here knows about language models: a task (``rnnkit.train.task.Task``) supplies the model,
the loss of one batch, the batches by position, and its evaluation. The loop follows nanoGPT's
order: set lr -> evaluate/checkpoint if due -> forward/backward -> clip -> step -> zero_grad -> log.

Resuming is exact: a checkpoint holds the weights, the optimiser state, every RNG state, the data
position, the task's carried state (the hidden state of truncated BPTT) and the trainer's
counters, so a run killed at any moment and resumed ends with the same weights as one that
never stopped. Many processes: launched by torchrun, the trainer wraps the model in
DistributedDataParallel (gloo on the CPU, nccl on GPUs); rank 0 logs and checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from rnnkit.config import atomic_write, option
from rnnkit.errors import UserError
from rnnkit.train.checkpoint import (
    check_compatible,
    load_checkpoint,
    load_model_state,
    restore_rng,
    save_checkpoint,
)
from rnnkit.train.distributed import Distributed
from rnnkit.train.task import Task

LAST, BEST = "last.safetensors", "best.safetensors"
MAX_SEED = 2**63 - 1  # torch.manual_seed overflows above 2**64 - 1; numpy and hashes want >= 0
MAX_THREADS = 1024  # more only exhaust the process's thread limit ("can't start new thread")


@dataclass
class TrainConfig:
    optimizer: Literal["adamw", "adam", "sgd"] = option("adamw", "the optimiser")
    lr: float = option(2e-3, "peak learning rate")
    weight_decay: float = option(0.0, "decoupled weight decay (adamw), L2 (adam, sgd)")
    momentum: float = option(0.9, "momentum (sgd only)")
    warmup_steps: int = option(100, "linear warm-up from 0 to lr over this many steps")
    schedule: Literal["constant", "cosine", "linear"] = option(
        "cosine", "decay after warm-up, down to min_lr_ratio * lr at max_steps"
    )
    min_lr_ratio: float = option(0.1, "the schedule's final lr as a fraction of lr")
    clip_norm: float = option(1.0, "clip the gradient's global norm to this (0: off)")
    clip_value: float = option(0.0, "clip each gradient element to [-v, v] (0: off)")
    max_steps: int = option(2000, "stop after this many optimiser steps")
    max_minutes: float = option(
        0.0,
        "stop after this much training time, summed over resumes (0: off); the schedule "
        "and the progress bar follow it when it binds before max_steps",
    )
    eval_every: int = option(200, "evaluate on the validation split every N steps")
    eval_batches: int = option(0, "validation batches (windows) per evaluation (0: all)")
    patience: int = option(0, "stop after N evaluations without improvement (0: off)")
    checkpoint_every: int = option(200, "write last.safetensors every N steps")
    log_every: int = option(10, "log training loss every N steps")
    seed: int = option(1337, "seed for weights, dropout and sampling")
    device: str = option("auto", "auto, cpu, cuda, cuda:1, mps ...")
    threads: int = option(0, "torch intra-op threads (0: torch's default)")
    progress: bool = option(True, "show a progress bar")
    nonfinite: Literal["stop", "skip"] = option(
        "stop", "a step whose loss or gradient norm is NaN/inf: stop the run, or skip the step"
    )


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UserError(f"option 'train.device': {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"option 'train.device' is {name!r}, but this torch sees no CUDA device")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"option 'train.device' is {name!r}, but MPS is not available here")
    return device


def check_range(section: str, cfg, rules: dict[str, tuple[float, float]]) -> None:
    """One-line errors for options outside their range: {name: (low, high)}, both inclusive."""
    for name, (low, high) in rules.items():
        value = getattr(cfg, name)
        if not low <= value <= high:
            span = f">= {low}" if high == math.inf else f"in [{low}, {high}]"
            raise UserError(f"option '{section}.{name}' must be {span}, got {value!r}")


def check_train_config(cfg: TrainConfig) -> None:
    """Reject impossible training options before anything is created or written."""
    inf = math.inf
    check_range("train", cfg, {
        "lr": (0, inf), "weight_decay": (0, inf), "momentum": (0, 1), "warmup_steps": (0, inf),
        "min_lr_ratio": (0, 1), "clip_norm": (0, inf), "clip_value": (0, inf),
        "max_steps": (1, inf), "max_minutes": (0, inf), "eval_every": (1, inf),
        "eval_batches": (0, inf), "patience": (0, inf), "checkpoint_every": (1, inf),
        "log_every": (1, inf), "threads": (0, MAX_THREADS), "seed": (0, MAX_SEED),
    })  # fmt: skip
    pick_device(cfg.device)


def learning_rate(cfg: TrainConfig, step: int, time_used: float = 0.0) -> float:
    """Linear warm-up to cfg.lr, then the chosen decay down to min_lr_ratio * lr at max_steps.

    ``time_used`` is the fraction of the time budget (``max_minutes``) spent. When time runs out
    before the steps do, the decay follows the clock: it runs at the step the run stands at by
    either budget, ``max(step, time_used * max_steps)``, so the schedule ends at its floor when
    the time does.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    at = max(step, time_used * cfg.max_steps)
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (at - cfg.warmup_steps) / span)
    floor = cfg.lr * cfg.min_lr_ratio
    if cfg.schedule == "linear":
        return cfg.lr - (cfg.lr - floor) * progress
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * progress))


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


class _Stop:
    requested = False
    signum = 0  # the signal that asked to stop: SIGINT or SIGTERM


STOP = _Stop()


@contextlib.contextmanager
def stop_requests():
    """Turn Ctrl-C (SIGINT) and SIGTERM into a request to stop at the next step boundary, so
    that the checkpoint written on the way out is exact; a second signal interrupts at once."""
    STOP.requested, STOP.signum = False, 0
    if threading.current_thread() is not threading.main_thread():
        yield lambda: STOP.requested
        return

    def on_signal(signum, frame):
        if STOP.requested:
            raise KeyboardInterrupt
        STOP.requested, STOP.signum = True, signum

    # SIGTERM (batch schedulers, `timeout`, `kill`) is treated as Ctrl-C: stop and checkpoint
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: STOP.requested
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def drop_partial_line(path: Path) -> None:
    """A run killed mid-write leaves half a JSON line at the end: cut it before appending."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


class Logger:
    """JSON lines (the source of every plot) and TensorBoard event files beside them."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.enabled, self.run_dir = enabled, run_dir
        self.path = run_dir / "log.jsonl"
        self.tb = None

    def open(self) -> None:
        """Touch the run directory only once training starts (a refused resume changes nothing)."""
        if self.enabled and self.tb is None:
            run_dir = self.run_dir
            try:
                drop_partial_line(self.path)
            except OSError as e:  # e.g. a directory where the log should be
                raise UserError(f"cannot open the training log {self.path}: {e.strerror}") from None
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:  # tensorboard is a dependency; without it, JSON lines only
                self.tb = None
            except OSError as e:  # e.g. a file where its directory should be
                tb = run_dir / "tensorboard"
                why = "it is a file" if tb.is_file() else e.strerror
                raise UserError(f"cannot write the TensorBoard logs in {tb}: {why}") from None

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:  # a full disk: stop here; the checkpoints already written stand
            raise UserError(
                f"cannot append to the training log {self.path}: {e.strerror or e}; the last "
                f"checkpoint is intact: make room, then continue with --resume"
            ) from None
        if self.tb is not None:
            for key, value in record.items():
                if key not in ("step", "split") and isinstance(value, (int, float)):
                    self.tb.add_scalar(f"{record['split']}/{key}", value, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


class Trainer:
    """Trains ``task`` with ``cfg`` into ``run_dir``; ``resume`` continues from last.safetensors.

    Args:
        task: what to train (model, loss, batches, evaluation; see ``Task``).
        cfg: the training options.
        run_dir: where checkpoints, logs and plots go.
        meta: JSON-safe facts saved in every checkpoint (task name, full config, vocabulary).
        resume: continue exactly from ``run_dir/last.safetensors``.
        clock: seconds, monotonic (``time.perf_counter``); tests pass a fake one.
    """

    def __init__(
        self, task: Task, cfg: TrainConfig, run_dir: Path, meta: dict, resume: bool = False,
        clock=time.perf_counter,
    ) -> None:  # fmt: skip
        self.task, self.cfg, self.run_dir, self.meta = task, cfg, Path(run_dir), meta
        self.clock = clock
        self.started = clock()
        self.dist = Distributed.from_environment()
        self.device = pick_device(cfg.device, self.dist.local_rank)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.model = task.model.to(self.device)
        task.to(self.device)
        self.trained = self.dist.wrap(self.model, self.device)
        self.optimizer = make_optimizer(cfg, self.model)
        self.step = 0
        self.epoch, self.position = 0, 0
        # the checkpoint kept as best: by the task's choice of validation metric (seq2seq tasks:
        # their score, e.g. WER; a label-smoothed model's loss need not follow it), else loss
        self.selection, self.selection_mode = getattr(task, "selection", ("loss", "min"))
        self.best = math.inf if self.selection_mode == "min" else -math.inf
        self.bad_evals = 0
        self.elapsed = 0.0  # seconds of training before this process, over all resumes
        self.skipped = 0  # steps skipped for a non-finite loss or gradient (nonfinite=skip)
        self.interrupted = False  # a signal (in any process) stopped the loop
        self.last_metrics: dict = {}
        self.logger = Logger(self.run_dir, enabled=self.dist.is_main)
        if resume:
            self._resume()

    # ---- checkpoints -------------------------------------------------------------------
    def _trainer_state(self) -> dict:
        return {
            "step": self.step, "epoch": self.epoch, "position": self.position,
            "best": self.best, "best_metric": self.selection, "bad_evals": self.bad_evals,
            "elapsed": self.elapsed + self.clock() - self.started, "skipped": self.skipped,
        }  # fmt: skip

    def save(self, name: str, with_optimizer: bool = True) -> None:
        if not self.dist.is_main:
            return
        for key, t in self.model.state_dict().items():  # the last good checkpoint stays
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise UserError(
                    f"step {self.step}: the weights hold NaN or inf ({key}); not saving "
                    f"{self.run_dir / name}. Lower --train.lr or clip (--train.clip_norm)"
                )
        meta = {**self.meta, "trainer": self._trainer_state()}
        save_checkpoint(
            self.run_dir / name,
            model_state=self.model.state_dict(),
            meta=meta,
            optimizer_state=self.optimizer.state_dict() if with_optimizer else None,
            rng=with_optimizer,
            extra_tensors=self.task.carried_state() if with_optimizer else None,
        )

    def _resume(self) -> None:
        path = self.run_dir / LAST
        ckpt = load_checkpoint(path, require=("task", "trainer"))
        check_compatible(ckpt.meta, {"task": self.meta["task"]}, path)
        load_model_state(self.model, ckpt.model_state, path)
        if ckpt.optimizer_state is None:
            raise UserError(f"{path} holds no optimiser state: it cannot be resumed")
        saved_groups = ckpt.optimizer_state.get("param_groups") or [{}]
        if set(saved_groups[0]) != set(self.optimizer.state_dict()["param_groups"][0]):
            raise UserError(
                f"{path} was trained with another optimiser than --train.optimizer "
                f"{self.cfg.optimizer}: resume it with the one it was trained with"
            )
        self.optimizer.load_state_dict(ckpt.optimizer_state)
        state = ckpt.meta["trainer"]
        self.step, self.epoch, self.position = state["step"], state["epoch"], state["position"]
        if state.get("best_metric", "loss") == self.selection:  # else: kept by another metric
            self.best, self.bad_evals = state["best"], state["bad_evals"]
        self.elapsed, self.skipped = state.get("elapsed", 0.0), state.get("skipped", 0)
        self.task.load_carried_state({k: v.to(self.device) for k, v in ckpt.extra_tensors.items()})
        restore_rng(ckpt.rng)

    # ---- the loop ----------------------------------------------------------------------
    def evaluate(self) -> dict:
        self.model.eval()
        with torch.no_grad():
            totals = self.task.evaluate(self.model, self.cfg.eval_batches)
        self.model.train()
        totals = self.dist.all_reduce_sums(totals, self.device)
        return self.task.metrics(totals)

    def _log_eval(self) -> bool:
        """Evaluate, log, keep the best; True if training should stop early."""
        metrics = self.evaluate()
        self.logger.write({"step": self.step, "split": "val", **metrics})
        self.last_metrics = metrics
        value = metrics[self.selection]
        if value < self.best if self.selection_mode == "min" else value > self.best:
            self.best, self.bad_evals = value, 0
            self.save(BEST, with_optimizer=False)
        else:
            self.bad_evals += 1
        return bool(self.cfg.patience) and self.bad_evals >= self.cfg.patience

    def fit(self) -> dict:
        """Train until a budget is spent; returns the final validation metrics.

        Raises:
            UserError: a step's loss or gradient norm is NaN or inf (``nonfinite="stop"``); the
                run directory keeps its last good checkpoint.
            KeyboardInterrupt: after SIGINT or SIGTERM (``STOP.signum`` says which), once the
                checkpoint of the last finished step is written.
        """
        from tqdm import tqdm

        cfg = self.cfg
        self.started = self.clock()
        self.logger.open()
        bar = tqdm(
            total=cfg.max_steps, initial=self.step, unit="step", dynamic_ncols=True,
            disable=not (cfg.progress and self.dist.is_main), desc=self.meta["task"],
        )  # fmt: skip
        self.model.train()
        if self.step == 0 and self.position == 0:
            self.task.start_epoch(self.epoch)
        try:
            with stop_requests():
                stopped_early = self._loop(bar)
        except BaseException:  # e.g. a non-finite step: nothing more is written
            bar.close()
            self.logger.close()
            raise
        bar.close()
        if self.interrupted:  # Ctrl-C or SIGTERM: the last step finished, its checkpoint is exact
            self.save(LAST)
            self.logger.close()
            raise KeyboardInterrupt
        if self.step % cfg.eval_every != 0 or not self.last_metrics:  # end with a measured loss
            self._log_eval()
        self.save(LAST)
        self.logger.close()
        self.dist.barrier()
        return {
            **self.last_metrics, "best": self.best, "best_metric": self.selection,
            "step": self.step, "skipped": self.skipped,
            "seconds": self.clock() - self.started, "stopped_early": stopped_early,
        }  # fmt: skip

    def time_used(self) -> float:
        """The fraction of the time budget (max_minutes, over all resumes) spent; 0 without one."""
        if not self.cfg.max_minutes:
            return 0.0
        return (self.elapsed + self.clock() - self.started) / (60 * self.cfg.max_minutes)

    def _loop(self, bar) -> bool:
        """Steps until a budget is spent or a stop is requested; True if stopped early."""
        cfg = self.cfg
        n_batches = self.task.num_train_batches()
        tokens_since, time_since = 0, self.clock()
        while self.step < cfg.max_steps:
            used, self.interrupted = self._budget()
            if used >= 1 or self.interrupted:
                return False
            lr = learning_rate(cfg, self.step, used)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            batch = self.task.train_batch(self.position)
            loss, n_tokens = self.task.loss(self.trained, batch)
            loss.backward()
            grad_norm = self._clip()
            value = loss.item()
            if self._finite(value, grad_norm):
                self.optimizer.step()
            else:
                self._nonfinite(value, grad_norm)
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            self.position += 1
            if self.position >= n_batches:  # epoch boundary: the carried state starts afresh
                self.epoch, self.position = self.epoch + 1, 0
                self.task.start_epoch(self.epoch)
            tokens_since += n_tokens * self.dist.world_size
            bar.update(1)
            self._follow_time(bar)
            if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                now = self.clock()
                rate = tokens_since / max(now - time_since, 1e-9)
                tokens_since, time_since = 0, now
                record = {
                    "step": self.step, "split": "train", "loss": value, "grad_norm": grad_norm,
                    "lr": lr, "tokens_per_s": rate, "time": now - self.started,
                    "epoch": self.epoch,
                }  # fmt: skip
                if cfg.nonfinite == "skip":
                    record["skipped"] = self.skipped
                self.logger.write(record)
                bar.set_postfix(loss=f"{value:.3f}", tok_s=f"{rate:,.0f}", refresh=False)
            stopped_early = self.step % cfg.eval_every == 0 and self._log_eval()
            if self.step % cfg.checkpoint_every == 0:
                self.save(LAST)
            if stopped_early:
                return True
        return False

    def _budget(self) -> tuple[float, bool]:
        """The time budget's used fraction, and whether a signal asked to stop: the same in
        every process, since DDP needs them all to take the same steps with the same lr."""
        used, stop = self.time_used(), STOP.requested
        if self.dist.world_size > 1:
            got = self.dist.all_reduce_sums({"used": used, "stop": float(stop)}, self.device)
            used, stop = got["used"] / self.dist.world_size, got["stop"] > 0
        return used, stop

    def _follow_time(self, bar) -> None:
        """When the time budget binds before max_steps, the bar's total becomes the step the run
        will end at by the clock, so that its percentage and ETA follow the time."""
        used = self.time_used()
        if used > self.step / self.cfg.max_steps and used > 0:
            total = max(self.step, min(self.cfg.max_steps, round(self.step / used)))
            if total != bar.total:
                bar.total = total
                bar.refresh()

    def _finite(self, loss: float, grad_norm: float) -> bool:
        finite = math.isfinite(loss) and math.isfinite(grad_norm)
        if self.dist.world_size > 1:  # every process must take the same decision
            bad = self.dist.all_reduce_sums({"bad": float(not finite)}, self.device)["bad"]
            finite = bad == 0
        return finite

    def _nonfinite(self, loss: float, grad_norm: float) -> None:
        """A step whose loss or gradient norm is NaN or inf: stop (nonfinite=stop, the weights
        are unchanged and the last checkpoint stays) or skip its update (nonfinite=skip)."""
        step = self.step + 1
        if self.cfg.nonfinite == "stop":
            last = self.run_dir / LAST
            kept = f"{last} is kept" if last.exists() else "no checkpoint was written"
            raise UserError(
                f"step {step}: the loss is {loss:g} and the gradient norm {grad_norm:g}, not "
                f"finite: training stopped ({kept}). Lower --train.lr, or pass "
                "--train.nonfinite skip to skip such steps"
            )
        self.skipped += 1
        carried = self.task.carried_state()
        if any(not bool(torch.isfinite(t).all()) for t in carried.values()):
            self.task.load_carried_state({})  # NaN in the carried state: start it afresh

    def _clip(self) -> float:
        """The global gradient norm before clipping (logged), then clip as configured."""
        params = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = self.cfg.clip_norm if self.cfg.clip_norm > 0 else math.inf
        norm = float(nn.utils.clip_grad_norm_(params, max_norm))
        if self.cfg.clip_value > 0:
            nn.utils.clip_grad_value_(params, self.cfg.clip_value)
        return norm


def started_without_checkpoint(run_dir: Path) -> bool:
    """A run directory whose run was stopped before its first checkpoint: it has the lock file
    and config.json that a run writes first (or one of them), and neither checkpoint."""
    return (
        ((run_dir / "config.json").is_file() or (run_dir / ".lock").is_file())
        and not (run_dir / LAST).exists()
        and not (run_dir / BEST).exists()
    )


def run_dir_ready(run_dir: Path, resume: bool) -> bool:
    """Refuse to overwrite a run; require one to resume. One-line errors.

    A run stopped before its first checkpoint has nothing to lose: ``--resume`` starts it again
    from step 0, and so does a fresh start on the same ``--out``.

    Returns:
        True if there is a checkpoint to resume from.
    """
    last = run_dir / LAST
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} is a file: choose another --out")
    if resume:
        if last.exists():
            return True
        if not started_without_checkpoint(run_dir):
            raise UserError(f"--resume: no checkpoint at {last} to resume from")
        if not (run_dir / "config.json").is_file():
            raise UserError(
                f"--resume: {run_dir} was stopped before it saved its config: start it again "
                "without --resume"
            )
        return False
    if run_dir.exists() and any(run_dir.iterdir()) and not started_without_checkpoint(run_dir):
        raise UserError(
            f"run directory {run_dir} exists and is not empty: pass --resume to continue it, "
            "or choose another --out"
        )
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as e:  # a file where a parent directory should be, no permission, ...
        raise UserError(f"cannot create the run directory {run_dir}: {e.strerror}") from None
    return False


def lock_run_dir(run_dir: Path):
    """Take the advisory lock ``run_dir/.lock`` (``fcntl.flock``) for as long as the returned
    file stays open: a second process training into the same run directory is refused.

    Returns:
        The open lock file (close it to release), or None where flock does not exist.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return None
    try:
        f = open(run_dir / ".lock", "a")  # held open for the run's life
    except OSError as e:
        raise UserError(f"cannot lock the run directory {run_dir}: {e.strerror}") from None
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise UserError(
            f"run directory {run_dir} is in use by another rnnkit process: wait for it to end, "
            "or choose another --out"
        ) from None
    return f


def tidy_run_dir(run_dir: Path, step: int = 0) -> None:
    """Under the lock, once every check has passed, before training from ``step``: remove the
    temporary files of a process killed while writing, and the log lines of steps after
    ``step`` (a killed attempt's, which the resumed run writes again); from step 0, the whole
    log and the TensorBoard files."""
    for tmp in run_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    log = run_dir / "log.jsonl"
    if not step:
        log.unlink(missing_ok=True)
        shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)
    elif log.is_file():
        kept = []
        for line in log.read_text(encoding="utf-8").splitlines(keepends=True):
            with contextlib.suppress(ValueError, TypeError, KeyError):
                if line.endswith("\n") and json.loads(line)["step"] <= step:
                    kept.append(line)
        text = "".join(kept)
        atomic_write(log, lambda tmp: tmp.write_text(text, encoding="utf-8"))
