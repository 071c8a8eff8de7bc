"""What ``rnnkit bench speed`` and ``rnnkit bench memory`` share: the vocabulary of their
character-level model, an option parser whose mistakes are one-line ``UserError``s, the JSON
records file, and the share of the CPUs that other processes used while timing; and the options
and timer of the side-by-side scripts in benchmarks/."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from rnnkit.argparse_config import OneLineParser
from rnnkit.errors import UserError
from rnnkit.files import atomic_write

VOCAB = 65  # the bundled corpus's characters: the size of the embedding and of the output layer


class BenchParser(OneLineParser):
    """``rnnkit bench``'s one-line errors: the command line names the command, so the message
    points at its --help instead."""

    def error(self, message: str):  # argparse would print usage and exit
        raise UserError(f"{message} (see {self.prog} --help)")


def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    """The parsed options, or the exit code (0) when --help was printed."""
    try:
        return parser.parse_args(argv)
    except SystemExit as stop:  # only --help exits; errors raise UserError
        return int(stop.code or 0)


def check_json_target(path: str) -> None:
    """Refuse an unwritable --json now, not after minutes of measuring."""
    from rnnkit.plots import check_writable

    check_writable(path, "--json")


def write_json(path: str | Path, payload: dict) -> None:
    """The records, written atomically; a UserError naming the file if it cannot be written."""
    atomic_write(path, json.dumps(payload, indent=1) + "\n")


def summary(times: list[float]) -> tuple[float, float, float]:
    """(median, min, max) of a list of durations."""
    return statistics.median(times), min(times), max(times)


def cpu_seconds() -> tuple[float, float] | None:
    """(CPU-seconds all processes have used on this machine, CPU-seconds this process has used),
    from /proc/stat and os.times(); None where /proc/stat is missing (not Linux)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


def others_share(before, after, seconds: float) -> float | None:
    """The share of all CPUs that other processes used between two ``cpu_seconds`` readings."""
    if before is None or after is None or seconds <= 0:
        return None
    others = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, others / (seconds * (os.cpu_count() or 1)))


def script_args(doc: str, argv: list[str] | None, repeats: int = 9) -> argparse.Namespace:
    """The options every side-by-side script in benchmarks/ shares (``--repeats``, ``--json``),
    parsed (an unwritable ``--json`` ends the script in one line at once); then one thread and
    seed 0, as those scripts measure. The scripts write their JSON with ``write_json``."""
    import torch

    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--repeats", type=int, default=repeats)
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    if args.repeats < 1:
        raise SystemExit(f"--repeats: expected an integer >= 1, got {args.repeats}")
    if args.json:
        try:
            check_json_target(args.json)  # before the measuring, not after it
        except UserError as e:
            raise SystemExit(str(e)) from None
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return args


def mean_ms(fn, calls: int) -> float:
    """Milliseconds a call of ``fn``, the mean of ``calls`` calls in a row."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e3


def preset_steps(name: str, preset: str, steps: int) -> float:
    """Seconds a step over a fresh model's first ``steps`` training steps as the trainer takes
    them (the preset's seed, optimiser, learning-rate schedule and clipping), building the task
    not counted."""
    import torch

    from rnnkit.tasks import get_task
    from rnnkit.train.train_config import learning_rate, make_optimizer

    spec = get_task(name)
    cfg = spec.presets[preset]()
    torch.manual_seed(cfg.train.seed)
    task = spec.build(cfg, None)
    model = task.model.train()
    opt = make_optimizer(cfg.train, model)
    task.start_epoch(0)
    n = task.num_train_batches()
    start = time.perf_counter()
    for step in range(steps):  # the trainer's step: the preset's schedule, clipping, optimiser
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg.train, step)
        loss, _ = task.loss(model, task.train_batch(step % n))
        loss.backward()
        if cfg.train.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / steps
