"""``rnnkit lab compare``: cells against sequence length on a long-range task.

    rnnkit lab compare adding --cells elman,irnn,lstm,gru,mingru --T 50,100,200 --seeds 3
        [--minutes M] [--steps S] [--jobs N] [--preset P] [--out DIR] [--section.key VALUE ...]

Trains one run per (cell, T, seed) with the task's preset (``rnnkit train TASK``'s trainer,
budgets, evaluation and checkpoints; each run in DIR/runs/CELL-T<T>-seed<S>/): one after another
in this process, or ``--jobs N`` at a time in worker processes (each with one torch thread unless
``--train.threads`` says otherwise, so N jobs share N cores rather than fight over them). Writes:

- DIR/results.json: one record per run: the final and best validation metric, the baseline,
  steps, seconds (rewritten after every run, so a long comparison shows its progress);
- DIR/results.md: a table of T by cell, mean ± std over seeds, and the baseline;
- DIR/compare.png: the final metric against T, one line per cell (log y for losses), the
  baseline dashed.

The question it answers is the one of Hochreiter & Schmidhuber (1997), Arjovsky et al. (2016)
and Le et al. (2015): which cells learn dependencies over T steps, and which stay at the
baseline that ignores them.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from rnnkit.argparse_config import parser_from_dataclasses
from rnnkit.cells import cell_names
from rnnkit.config import option
from rnnkit.errors import UserError

RESULTS_JSON, RESULTS_MD, PLOT = "results.json", "results.md", "compare.png"


@dataclass
class CompareOptions:
    """The options of ``rnnkit lab compare`` (task options are ``--section.key VALUE``)."""

    task: str = field(metadata={"help": "a task with a sequence length data.T: adding, copy, ..."})
    cells: str = option("elman,lstm,gru", "comma-separated cells (listed below)")
    T: str = option("50,100,200", "comma-separated sequence lengths")
    seeds: int = option(1, "runs per (cell, T), seeds 0..N-1")
    minutes: float | None = option(None, "wall-clock budget per run")
    steps: int | None = option(None, "optimiser steps per run (at most)")
    jobs: int = option(1, "runs at a time, one process each")
    preset: str | None = option(None, "the task's preset (default: its default)")
    out: str | None = option(None, "output directory (default: runs/compare-TASK)")
    quiet: bool = option(False, "no progress bars")


def parser() -> argparse.ArgumentParser:
    from rnnkit.tasks.longrange import CELLS

    return parser_from_dataclasses(
        "rnnkit lab compare",
        CompareOptions,
        description="Train each cell at each sequence length; table and plot the final metric.",
        epilog=f"cells: {', '.join(CELLS)}. Any task option applies to every run: "
        "--section.key VALUE (e.g. --model.hidden_size 64 --train.lr 3e-3); see rnnkit train "
        "TASK --help.",
    )


def _int_list(option: str, text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(
            f"option {option}: expected comma-separated integers, got {text!r}"
        ) from None
    if not values:
        raise UserError(f"option {option}: expected at least one value, got {text!r}")
    return values


def plan(argv: list[str]):
    """Parse and check every option before anything runs: (args, spec, base config, cells, Ts)."""
    from rnnkit.config import parse_cli_overrides, resolve_config
    from rnnkit.tasks import get_task
    from rnnkit.tasks.longrange import CELLS, PROBLEMS

    overrides, rest = parse_cli_overrides(argv)
    args = parser().parse_args(rest)
    if args.task not in PROBLEMS:
        raise UserError(
            f"task {args.task!r} cannot be compared over T; tasks: {', '.join(PROBLEMS)}"
        )
    spec = get_task(args.task)
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    unknown = [c for c in cells if c not in CELLS]
    if unknown or not cells:
        raise UserError(
            f"option --cells: unknown cell {unknown[0] if unknown else args.cells!r}; "
            f"cells: {', '.join(CELLS)}"
        )
    Ts = _int_list("--T", args.T)
    if min(Ts) < 1:
        raise UserError(f"option --T: sequence lengths must be >= 1, got {min(Ts)}")
    if args.seeds < 1:
        raise UserError(f"option --seeds: expected an integer >= 1, got {args.seeds}")
    if args.minutes is not None and not (math.isfinite(args.minutes) and args.minutes > 0):
        raise UserError(f"option --minutes: expected a number > 0, got {args.minutes}")
    if args.jobs < 1:
        raise UserError(f"option --jobs: expected an integer >= 1, got {args.jobs}")
    if args.steps is not None and args.steps < 1:
        raise UserError(f"option --steps: expected an integer >= 1, got {args.steps}")
    preset = args.preset or spec.default_preset
    if preset not in spec.presets:
        raise UserError(
            f"option --preset: unknown preset {preset!r} for {spec.name}; "
            f"presets: {', '.join(spec.presets)}"
        )
    budget = []
    if args.minutes is not None:
        budget.append(("train.max_minutes", args.minutes))
    if args.steps is not None:
        budget.append(("train.max_steps", args.steps))
    if args.quiet or args.jobs > 1:  # N bars at once would garble each other
        budget.append(("train.progress", False))
    if args.jobs > 1:  # one thread per job (an explicit --train.threads, below, still wins)
        budget.append(("train.threads", 1))
    base = resolve_config(spec.presets[preset](), None, [*budget, *overrides])
    for cell in cells:  # every run's options checked now, not an hour in
        for T in Ts:
            spec.check(run_config(base, cell, T, 0))
    return args, spec, base, cells, Ts


def run_config(base, cell: str, T: int, seed: int):
    from rnnkit.config import apply_overrides

    overrides = {"model.cell": cell, "data.T": T, "train.seed": seed, "data.seed": seed + 1}
    if cell not in cell_names(nonlinearities=True):
        overrides["model.nonlinearity"] = "tanh"
    if cell not in (*cell_names(forget_bias=True), "peephole"):
        overrides["model.forget_bias"] = None
    if cell not in (*cell_names(chrono_init=True), "peephole"):
        overrides["model.chrono_t_max"] = None
    return apply_overrides(base, overrides)


def best_metric(run_dir: Path, metric: str, lower_is_better: bool) -> float:
    """The best validation value of ``metric`` in a run's log (NaN after a divergence is not
    a value; NaN if there is none)."""
    from rnnkit.plots import read_log

    values = [
        r[metric]
        for r in read_log(run_dir / "log.jsonl")
        if r.get("split") == "val"
        and isinstance(r.get(metric), (int, float))
        and math.isfinite(r[metric])
    ]
    if not values:
        return math.nan
    return min(values) if lower_is_better else max(values)


def train_one(task_name: str, cfg, run_dir: Path, cell: str, T: int, seed: int) -> dict:
    """Train one run with the task's trainer (in this process or a worker); its record."""
    from rnnkit.config import config_to_dict, save_config
    from rnnkit.tasks import get_task
    from rnnkit.train.trainer import Trainer, run_dir_ready

    spec = get_task(task_name)
    run_dir_ready(run_dir, resume=False)
    save_config(cfg, run_dir / "config.json", argv=None)
    task = spec.build(cfg, None)
    meta = {"task": spec.name, "config": config_to_dict(cfg)}
    result = Trainer(task, cfg.train, run_dir, meta).fit()
    problem = task.problem
    name, baseline = problem.baseline
    return {
        "task": spec.name,
        "cell": cell,
        "T": T,
        "seed": seed,
        "metric": problem.metric,
        "final": result[problem.metric],
        "best": best_metric(run_dir, problem.metric, problem.lower_is_better),
        "baseline": baseline,
        "baseline_name": name,
        "steps": result["step"],
        "seconds": round(result["seconds"], 2),
        "max_minutes": cfg.train.max_minutes,
        "max_steps": cfg.train.max_steps,
        "run": str(run_dir),
    }


def main(argv: list[str]) -> int:
    from tqdm import tqdm

    from rnnkit.files import atomic_write

    if any(a in ("-h", "--help") for a in argv):
        parser().print_help()
        return 0
    args, spec, base, cells, Ts = plan(argv)
    out = Path(args.out) if args.out else Path("runs") / f"compare-{spec.name}"
    runs = [(cell, T, seed) for T in Ts for cell in cells for seed in range(args.seeds)]
    try:  # before any training: a file in the way is the user's to move, not a crash later
        (out / "runs").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(
            f"cannot create {out / 'runs'}: {e.strerror}: choose another --out"
        ) from None
    for cell, T, seed in runs:
        run_dir = out / "runs" / f"{cell}-T{T}-seed{seed}"
        if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            raise UserError(f"{run_dir} exists and is not an empty directory: choose another --out")
    records: list[dict] = []
    bar = tqdm(total=len(runs), unit="run", desc=f"compare {spec.name}", disable=args.quiet)

    def done(record: dict) -> None:  # results.json after every run: a long grid shows progress
        records.append(record)
        records.sort(key=lambda r: runs.index((r["cell"], r["T"], r["seed"])))  # the grid order
        atomic_write(out / RESULTS_JSON, json.dumps(records, indent=1) + "\n")
        bar.set_postfix(cell=record["cell"], T=record["T"], seed=record["seed"])
        bar.update()

    jobs = [
        (
            spec.name,
            run_config(base, cell, T, seed),
            out / "runs" / f"{cell}-T{T}-seed{seed}",
            cell,
            T,
            seed,
        )
        for cell, T, seed in runs
    ]
    if args.jobs == 1:
        for job in jobs:
            done(train_one(*job))
    else:
        run_parallel(jobs, args.jobs, done)
    bar.close()
    write_table(records, out / RESULTS_MD)
    plot_compare(records, out / PLOT)
    print(table_markdown(records))
    print(f"\nwrote {out / RESULTS_JSON}, {out / RESULTS_MD}, {out / PLOT}")
    return 0


def run_parallel(jobs: list[tuple], n: int, done) -> None:
    """``train_one(*job)`` for every job, ``n`` at a time in spawned processes (fresh
    interpreters: no forked torch thread pools); ``done(record)`` as each finishes. A failed
    run stops the comparison with its error once the runs already going have finished."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(n, len(jobs)), mp_context=context) as pool:
        pending = {pool.submit(train_one, *job) for job in jobs}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                error = future.exception()
                if error is not None:
                    for other in pending:
                        other.cancel()
                    raise error
                done(future.result())


# ---- the table and the plot (from records alone, so benchmarks can merge several runs) -----
def _group(records: list[dict]) -> tuple[list[str], list[int], dict[tuple[str, int], list[float]]]:
    cells = list(dict.fromkeys(r["cell"] for r in records))
    Ts = sorted({r["T"] for r in records})
    values: dict[tuple[str, int], list[float]] = {}
    for r in records:
        values.setdefault((r["cell"], r["T"]), []).append(r["final"])
    return cells, Ts, values


def _mean_std(xs: list[float]) -> tuple[float, float, int]:
    """Mean and standard deviation of the finite values, and how many were not finite (runs
    whose loss diverged to NaN or inf); NaN, NaN if none is finite."""
    finite = [x for x in xs if math.isfinite(x)]
    lost = len(xs) - len(finite)
    if not finite:
        return math.nan, math.nan, lost
    return statistics.fmean(finite), (statistics.stdev(finite) if len(finite) > 1 else 0.0), lost


def table_markdown(records: list[dict]) -> str:
    """T down, cells across: the final validation metric, mean ± std over seeds, and baseline."""
    if not records:
        raise ValueError("no records to tabulate")
    cells, Ts, values = _group(records)
    metric, task = records[0]["metric"], records[0]["task"]
    baselines = {r["T"]: r["baseline"] for r in records}
    lines = [
        f"{task}: final validation {metric}, mean ± std over seeds (n runs; diverged runs "
        f"are counted apart)",
        "",
        "| T | " + " | ".join(cells) + " | baseline |",
        "|---:|" + "---:|" * (len(cells) + 1),
    ]
    for T in Ts:
        row = []
        for cell in cells:
            xs = values.get((cell, T))
            if not xs:
                row.append("–")
                continue
            mean, std, lost = _mean_std(xs)
            if lost == len(xs):  # every run's loss diverged
                row.append(f"diverged ({lost} of {len(xs)})")
                continue
            n = len(xs) - lost
            cell_text = f"{mean:.4g} ± {std:.2g} ({n})" if n > 1 else f"{mean:.4g}"
            row.append(cell_text + (f", {lost} of {len(xs)} diverged" if lost else ""))
        lines.append(f"| {T} | " + " | ".join(row) + f" | {baselines[T]:.4g} |")
    return "\n".join(lines) + "\n"


def write_table(records: list[dict], path: Path) -> Path:
    from rnnkit.files import atomic_write

    atomic_write(path, table_markdown(records))
    return path


def plot_compare(records: list[dict], path: Path) -> Path:
    """The final metric against T per cell (mean, error bars ± std over seeds), baseline dashed;
    a log y axis for losses (lower is better), linear for accuracies."""
    from rnnkit.plots import figure, save_figure

    cells, Ts, values = _group(records)
    metric, task = records[0]["metric"], records[0]["task"]
    fig, [[ax]] = figure((7, 4.5))
    for cell in cells:
        pts = [(T, *_mean_std(values[(cell, T)])) for T in Ts if (cell, T) in values]
        lost = [
            f"{p[0]}"
            + (f" ({p[3]} of {len(values[(cell, p[0])])})" if len(values[(cell, p[0])]) > 1 else "")
            for p in pts
            if p[3]
        ]
        label = f"{cell} (diverged at T = {', '.join(lost)})" if lost else cell
        pts = [p for p in pts if math.isfinite(p[1])]
        ax.errorbar(
            [p[0] for p in pts],
            [p[1] for p in pts],
            yerr=[p[2] for p in pts],
            marker="o",
            markersize=4,
            capsize=3,
            linewidth=1.4,
            label=label,
        )
    baselines = {r["T"]: r["baseline"] for r in records}
    ax.plot(
        Ts,
        [baselines[T] for T in Ts],
        "--",
        color="0.35",
        linewidth=1.2,
        label=records[0]["baseline_name"].replace("_", " "),
    )
    if "accuracy" not in metric:
        ax.set_yscale("log")
    ax.set_xticks(Ts)
    ax.set(
        xlabel="sequence length T",
        ylabel=f"final validation {metric}",
        title=f"{task}: {metric} against T",
    )
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=9)
    return save_figure(fig, path)
