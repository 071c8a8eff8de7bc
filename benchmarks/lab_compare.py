"""The README's adding-problem comparison: cells against T under wall-clock budgets.

    nice -n 10 python benchmarks/lab_compare.py [--out DIR] [--stages 1,2,3,4,5] [--docs]

Runs ``rnnkit lab compare adding --seeds 3`` in stages (the trainings are benchmarks, not
tests) and merges their records into one table and one figure. Budgets are wall-clock per run:

1. lstm, gru at T = 200, 10 minutes each: the issue's target, MSE < 0.01;
2. mingru at T = 200, 10 minutes; elman, irnn at T = 200, 5 minutes;
3. lstm, gru, mingru at T = 100, 3 minutes;
4. all five cells at T = 50, 1 minute; elman, irnn at T = 100, 3 minutes.

Stages 1+3 and 2+4 take about 90 minutes each; on two cores run them side by side, then merge:

    nice python benchmarks/lab_compare.py --stages 1,3 &
    nice python benchmarks/lab_compare.py --stages 2,4; wait
    python benchmarks/lab_compare.py --stages "" --docs

Writes OUT/stageN-I/ (each a compare directory), OUT/results.json (all records), OUT/results.md
(the table, then steps and minutes per run), OUT/compare.png and OUT/curves_T200.png (validation
MSE against step at T = 200); ``--docs`` copies them to docs/lab_compare_adding{.png,.json,
_curves.png}. Every run uses one thread (``--train.threads 1``), so two stages run side by side
on two cores without sharing one.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

from rnnkit.lab.compare import RESULTS_JSON, best_metric, plot_compare, table_markdown
from rnnkit.lab.compare import main as compare

SEEDS = 3
STAGES = {
    1: [("lstm,gru", "200", 10.0)],
    2: [("mingru", "200", 10.0), ("elman,irnn", "200", 5.0)],
    3: [("lstm,gru,mingru", "100", 3.0)],
    4: [("elman,irnn,mingru,lstm,gru", "50", 1.0), ("elman,irnn", "100", 3.0)],
}
EXTENDED: tuple[int, ...] = ()  # stages tabled apart (none at present)
SUFFIX: dict[int, str] = {}  # how the table names a stage's variant


def first_step_below(run: Path, threshold: float = 0.01) -> int | None:
    """The first validation step whose MSE is below ``threshold`` (None: never)."""
    from rnnkit.plots import read_log

    for x in read_log(Path(run) / "log.jsonl"):
        if x.get("split") == "val" and math.isfinite(x["mse"]) and x["mse"] < threshold:
            return x["step"]
    return None


def budget_table(records: list[dict]) -> str:
    """Per (cell, T): each seed's final MSE, how many solved it (< 0.01) and at which step,
    steps reached and the budget."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in sorted(records, key=lambda r: (r["T"], r["cell"], r["seed"])):
        groups.setdefault((r["cell"], r["T"]), []).append(r)
    lines = [
        "| cell | T | final MSE, seeds 0, 1, 2 | MSE < 0.01 | at step | steps (mean) | minutes |",
        "|---|---:|---|---:|---|---:|---:|",
    ]  # noqa: E501
    for (cell, T), rs in groups.items():
        finals = ", ".join(f"{r['final']:.3g}" for r in rs)
        solved = sum(r["final"] < 0.01 for r in rs)  # NaN (diverged) is not solved
        at = [first_step_below(r["run"]) for r in rs]
        at_text = ", ".join("–" if a is None else f"{a:,}" for a in at)
        steps = sum(r["steps"] for r in rs) / len(rs)
        minutes = max(r["seconds"] for r in rs) / 60
        lines.append(
            f"| {cell} | {T} | {finals} | {solved} of {len(rs)} | {at_text} | {steps:,.0f} | "
            f"{minutes:.1f} ({rs[0]['max_minutes']:g}) |"
        )
    return "\n".join(lines) + "\n"


def plot_curves_at(records: list[dict], T: int, path: Path) -> Path:
    """Validation MSE against step for seed 0 of every cell at length T, from the runs' logs."""
    from rnnkit.plots import plot_curves, read_log

    series = {}
    for r in records:
        if r["T"] == T and r["seed"] == 0:  # one curve per cell: seed 0
            val = [x for x in read_log(Path(r["run"]) / "log.jsonl") if x.get("split") == "val"]
            label = f"{r['cell']} ({r['seconds'] / 60:.0f} min)"
            kept = [x for x in val if math.isfinite(x["mse"]) and x["mse"] < 10]
            if len(kept) < len(val):  # a divergence would squash every other curve
                label += f", diverged after step {kept[-1]['step'] if kept else 0}"
            series[label] = ([x["step"] for x in kept], [x["mse"] for x in kept])
    return plot_curves(
        series,
        path,
        xlabel="step",
        ylabel="validation MSE",
        logy=True,
        title=f"adding, T = {T}: validation MSE during training (seed 0)",
        hlines={"baseline": 1 / 6},
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/bench-compare", help="output directory")
    p.add_argument("--stages", default="1,2,3,4", help="which stages to run (others are merged)")
    p.add_argument("--docs", action="store_true", help="copy the figure and JSON to docs/")
    a = p.parse_args(argv)
    out = Path(a.out)
    stages = [s.strip() for s in a.stages.split(",") if s.strip()]
    if any(s not in {str(k) for k in STAGES} for s in stages):
        p.error(f"--stages: expected numbers among {', '.join(map(str, STAGES))}, got {a.stages!r}")
    for stage in map(int, stages):
        for i, (cells, Ts, minutes, *extra) in enumerate(STAGES[stage]):
            compare(
                [
                    "adding",
                    "--cells",
                    cells,
                    "--T",
                    Ts,
                    "--seeds",
                    str(SEEDS),
                    "--minutes",
                    str(minutes),
                    "--out",
                    str(out / f"stage{stage}-{i}"),
                    "--train.threads",
                    "1",
                    "--quiet",
                    *extra,
                ]
            )
    records, extended = [], []
    for path in sorted(out.glob(f"stage*/{RESULTS_JSON}")):
        stage = int(path.parent.name[len("stage") :].split("-")[0])
        found = json.loads(path.read_text())
        for r in found:
            r["cell"] += SUFFIX.get(stage, "")
        (extended if stage in EXTENDED else records).extend(found)
    for r in records + extended:  # from the logs, so a record is as its run's log says
        r["best"] = best_metric(Path(r["run"]), r["metric"], lower_is_better=True)
    if not records:
        raise SystemExit(f"no results under {out}")
    everything = {"records": records, "extended": extended}
    (out / "results.json").write_text(json.dumps(everything, indent=1) + "\n")
    text = table_markdown(records) + "\n" + budget_table(records)
    if extended:
        text += "\nextended budget:\n\n" + budget_table(extended)
    (out / "results.md").write_text(text)
    plot_compare(records, out / "compare.png")
    plot_curves_at(records + extended, 200, out / "curves_T200.png")
    print(text)
    if a.docs:
        docs = Path(__file__).resolve().parent.parent / "docs"
        shutil.copy(out / "compare.png", docs / "lab_compare_adding.png")
        shutil.copy(out / "results.json", docs / "lab_compare_adding.json")
        shutil.copy(out / "curves_T200.png", docs / "lab_compare_adding_curves.png")


if __name__ == "__main__":
    main()
