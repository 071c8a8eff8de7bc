"""The measured table of docs/classification.md from finished sentiment runs.

    python -m rnnkit.tasks.sentiment_report NAME=RUN ... [--json OUT.json] [--png OUT.png]

For each run: its best validation accuracy and the step it was reached at, the steps and
minutes trained (the last training record's ``time``), and its test accuracy from
``RUN/eval_test.json`` (written by ``rnnkit eval RUN``; run that first). Prints a Markdown
table; ``--json`` writes the same figures; ``--png`` draws validation accuracy against step,
one curve a run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rnnkit.errors import UserError


def summarize(run: Path) -> dict:
    """The figures of one run (see the module docstring)."""
    from rnnkit.plots import read_log

    records = read_log(run / "log.jsonl")
    val = [r for r in records if r.get("split") == "val" and "accuracy" in r]
    train = [r for r in records if r.get("split") == "train"]
    if not val or not train:
        raise UserError(f"{run}: no validation accuracy in its log yet")
    best = max(val, key=lambda r: r["accuracy"])
    evaluated = run / "eval_test.json"
    test = json.loads(evaluated.read_text())["accuracy"] if evaluated.is_file() else None
    return {
        "run": str(run),
        "best_val_accuracy": best["accuracy"],
        "best_step": best["step"],
        "steps": train[-1]["step"],
        "minutes": train[-1]["time"] / 60,
        "test_accuracy": test,
        "val_curve": [(r["step"], r["accuracy"]) for r in val],
    }


def table(results: dict[str, dict]) -> str:
    lines = [
        "| run | validation accuracy (best) | at step | test accuracy | steps | minutes |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        test = f"{r['test_accuracy']:.2%}" if r["test_accuracy"] is not None else "not evaluated"
        lines.append(
            f"| {name} | {r['best_val_accuracy']:.2%} | {r['best_step']} | {test} | "
            f"{r['steps']} | {r['minutes']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rnnkit.tasks.sentiment_report")
    p.add_argument("runs", nargs="+", help="NAME=RUN_DIR")
    p.add_argument("--json", default=None, help="write the figures here")
    p.add_argument("--png", default=None, help="draw validation accuracy against step here")
    a = p.parse_args(argv)
    results = {}
    for item in a.runs:
        name, _, run = item.partition("=")
        results[name] = summarize(Path(run or name))
    print(table(results))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2) + "\n")
    if a.png:
        from rnnkit.plots import plot_curves

        series = {n: tuple(zip(*r["val_curve"], strict=True)) for n, r in results.items()}
        plot_curves(
            series,
            a.png,
            xlabel="step (64 sentences each)",
            ylabel="validation accuracy",
            title="sentiment: validation accuracy by pooling",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
