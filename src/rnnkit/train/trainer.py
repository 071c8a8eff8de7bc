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
import signal
import threading
import time
from pathlib import Path

import torch
from torch import nn

from rnnkit.errors import UserError
from rnnkit.train.checkpoint import (
    check_compatible,
    load_checkpoint,
    load_model_state,
    restore_rng,
    save_checkpoint,
)
from rnnkit.train.distributed import Distributed
from rnnkit.train.ema import WeightAverage, split_average
from rnnkit.train.run_dir import BEST as BEST
from rnnkit.train.run_dir import LAST as LAST
from rnnkit.train.run_dir import lock_run_dir as lock_run_dir
from rnnkit.train.run_dir import run_dir_ready as run_dir_ready
from rnnkit.train.run_dir import tidy_run_dir as tidy_run_dir
from rnnkit.train.task import Task
from rnnkit.train.train_config import MAX_SEED as MAX_SEED
from rnnkit.train.train_config import MAX_THREADS as MAX_THREADS
from rnnkit.train.train_config import TrainConfig as TrainConfig
from rnnkit.train.train_config import check_range as check_range
from rnnkit.train.train_config import check_train_config as check_train_config
from rnnkit.train.train_config import cpu_modes
from rnnkit.train.train_config import learning_rate as learning_rate
from rnnkit.train.train_config import make_optimizer as make_optimizer
from rnnkit.train.train_config import pick_device as pick_device


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
        self,
        task: Task,
        cfg: TrainConfig,
        run_dir: Path,
        meta: dict,
        resume: bool = False,
        clock=time.perf_counter,
    ) -> None:
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
        self.average = WeightAverage(self.model, cfg.ema) if cfg.ema > 0 else None
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
            "step": self.step,
            "epoch": self.epoch,
            "position": self.position,
            "best": self.best,
            "best_metric": self.selection,
            "bad_evals": self.bad_evals,
            "elapsed": self.elapsed + self.clock() - self.started,
            "skipped": self.skipped,
        }

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
        extra = None
        if with_optimizer:
            extra = {**self.task.carried_state(), **(self.average.state() if self.average else {})}
        # the best checkpoint holds the weights it was chosen by: the average, if one is kept
        with self._averaged() if name == BEST else contextlib.nullcontext():
            save_checkpoint(
                self.run_dir / name,
                model_state=self.model.state_dict(),
                meta=meta,
                optimizer_state=self.optimizer.state_dict() if with_optimizer else None,
                rng=with_optimizer,
                extra_tensors=extra,
            )

    def _averaged(self):
        """The model holds the weight average inside the block (``--train.ema``), else as is."""
        return self.average.applied(self.model) if self.average else contextlib.nullcontext()

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
        average, carried = split_average(ckpt.extra_tensors)
        if self.average and not self.average.load(
            {k: v.to(self.device) for k, v in average.items()}
        ):
            self.average = WeightAverage(self.model, self.cfg.ema)  # started without: from here
        self.task.load_carried_state({k: v.to(self.device) for k, v in carried.items()})
        restore_rng(ckpt.rng)

    # ---- the loop ----------------------------------------------------------------------
    def evaluate(self) -> dict:
        self.model.eval()
        with torch.no_grad(), self._averaged():
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
            total=cfg.max_steps,
            initial=self.step,
            unit="step",
            dynamic_ncols=True,
            disable=not (cfg.progress and self.dist.is_main),
            desc=self.meta["task"],
        )
        self.model.train()
        if self.step == 0 and self.position == 0:
            self.task.start_epoch(self.epoch)
        try:
            with stop_requests(), cpu_modes(cfg, self.device):
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
            **self.last_metrics,
            "best": self.best,
            "best_metric": self.selection,
            "step": self.step,
            "skipped": self.skipped,
            "seconds": self.clock() - self.started,
            "stopped_early": stopped_early,
        }

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
                if self.average:
                    self.average.update(self.model)
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
                    "step": self.step,
                    "split": "train",
                    "loss": value,
                    "grad_norm": grad_norm,
                    "lr": lr,
                    "tokens_per_s": rate,
                    "time": now - self.started,
                    "epoch": self.epoch,
                }
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
        will end at by the clock, so that its percentage and ETA follow the time; projected
        again at every step, so a slow start (set-up, warm-up) does not leave it too low."""
        used = self.time_used()
        if used > 0 and self.step > 0:
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
