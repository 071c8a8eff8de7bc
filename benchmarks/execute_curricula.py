"""The four curricula of "Learning to Execute" (Zaremba & Sutskever 2014) side by side.

Trains the ``execute`` task (default: the ``programs`` preset, length 4, nesting 1) once per
curriculum, ``none`` (the paper's baseline), ``naive``, ``mix`` and ``combined``, with the same
budget and seed; scores each run on the held-out test programs at every difficulty
(``rnnkit eval``); writes one table (JSON, and printed) and one plot: the validation accuracy
at the target difficulty against the training step, per-character (teacher forced) and exact
match (greedy), for each curriculum.

    python benchmarks/execute_curricula.py [--preset programs] [--minutes 30] [--steps 0]
        [--jobs 1] [--out runs/execute-curricula] [--json docs/execute_curricula.json]
        [--png docs/execute_curricula.png] [--examples 500] [--reuse] [--smoke]
        [-- extra training options, e.g. --data.nesting 2]

``--jobs 2`` trains two curricula at a time, each in a process of its own (one thread); with
``--jobs 1`` they run one after the other in this process. ``--smoke``: the ``tiny``
preset, a few steps each: seconds, to check the script itself (the tests call it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import rnnkit as rnnkit_package
from rnnkit.plots import plot_curves, read_log

CURRICULA = ("none", "naive", "mix", "combined")


def rnnkit(args: list[str], jobs: int) -> None:
    """``rnnkit ARGS``: in this process when runs go one at a time, else in a process of its own
    (one thread), this checkout's rnnkit either way."""
    if jobs <= 1:
        from rnnkit.cli import main as rnnkit_main

        status, err = rnnkit_main(args), ""
    else:
        src = str(Path(rnnkit_package.__file__).resolve().parents[1])
        path = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
        command = [sys.executable, "-m", "rnnkit", *args]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        status, err = done.returncode, done.stderr.strip()[-2000:]
    if status != 0:
        raise SystemExit(f"rnnkit {' '.join(args[:3])} failed ({status}): {err}")


def train(curriculum: str, a) -> dict:
    """Train one curriculum's run and score it; its row of the table."""
    run = Path(a.out) / curriculum
    args = ["train", "execute", "--preset", a.preset, "--out", str(run),
            "--train.curriculum", curriculum, "--train.progress", "false"]  # fmt: skip
    if a.minutes:
        args += ["--train.max_minutes", str(a.minutes)]
    if a.steps:
        args += ["--train.max_steps", str(a.steps)]
    if not (a.reuse and (run / "last.safetensors").exists()):
        rnnkit([*args, *a.extra], a.jobs)
    rnnkit(["eval", str(run), "--examples", str(a.examples), "--force"], a.jobs)
    test = json.loads((run / "eval_test.json").read_text())
    val = [r for r in read_log(run / "log.jsonl") if r["split"] == "val"]
    return {
        "curriculum": curriculum,
        "run": str(run),
        "steps": val[-1]["step"],
        # the training time the run logged (also for a run --reuse scores again)
        "wall_minutes": round(max(r.get("time", 0.0) for r in read_log(run / "log.jsonl")) / 60, 2),
        "val_char_acc": val[-1]["char_acc"],
        "val_exact_match": val[-1]["exact_match"],
        "best_val_char_acc": max(r["char_acc"] for r in val),
        "test_char_acc": test["char_acc"],
        "test_exact_match": test["exact_match"],
        "final_stage": [val[-1]["stage_length"], val[-1]["stage_nesting"]],
        "curve": [[r["step"], r["char_acc"], r["exact_match"]] for r in val],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="The four curricula of Learning to Execute.")
    p.add_argument("--preset", default="programs")
    p.add_argument("--minutes", type=float, default=0.0, help="per run (0: the preset's)")
    p.add_argument("--steps", type=int, default=0, help="per run (0: the preset's)")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at the same time")
    p.add_argument("--out", default="runs/execute-curricula")
    p.add_argument("--json", default="docs/execute_curricula.json")
    p.add_argument("--png", default="docs/execute_curricula.png")
    p.add_argument("--examples", type=int, default=500, help="test programs per difficulty")
    p.add_argument("--reuse", action="store_true", help="score runs already trained in --out")
    p.add_argument("--smoke", action="store_true", help="tiny preset, a few steps: seconds")
    p.add_argument("extra", nargs="*", help="training options after --")
    a = p.parse_args(argv)
    if a.smoke:
        a.preset, a.steps, a.minutes, a.examples = "tiny", 4, 0.0, 4
        a.extra = ["--train.eval_every", "2", "--data.val_examples", "8", *a.extra]
    with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        rows = list(pool.map(lambda c: train(c, a), CURRICULA))
    print("curriculum  steps  val char_acc  val exact  test char_acc  test exact  final stage")
    for r in rows:
        print(f"{r['curriculum']:10s} {r['steps']:6d} {r['val_char_acc']:13.4f} "
              f"{r['val_exact_match']:10.4f} {r['test_char_acc']:14.4f} "
              f"{r['test_exact_match']:11.4f}  length {r['final_stage'][0]} nesting "
              f"{r['final_stage'][1]}")  # fmt: skip
    series = {}
    for r in rows:
        steps = [c[0] for c in r["curve"]]
        series[f"{r['curriculum']}: per-char"] = (steps, [c[1] for c in r["curve"]])
        series[f"{r['curriculum']}: exact"] = (steps, [c[2] for c in r["curve"]])
    png = plot_curves(
        series,
        a.png,
        xlabel="training step",
        ylabel="validation accuracy at the target difficulty",
        title=f"execute ({a.preset}): the four curricula",
    )
    table = {"preset": a.preset, "minutes": a.minutes, "steps": a.steps, "extra": a.extra,
             "rows": rows}  # fmt: skip
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
    print(f"results: {a.json}, {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
