"""Training steps with glibc's malloc as it comes and with freed memory kept in the heap
(``rnnkit.heap``), each run in a fresh process (the mode cannot be undone within one: glibc's
own threshold heuristic stops once it is set), one thread, denormals flushed as the trainer does.

For each task preset: the first ``--steps`` training steps of a fresh model as the trainer takes
them (``rnnkit.bench.common.preset_steps``), the time a step; the modes take turns, ``--repeats``
fresh processes each; medians, and each process's peak resident memory.

    python benchmarks/freed_memory.py --json docs/freed_memory.json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys

import torch

from rnnkit.bench.common import check_json_target, preset_steps, write_json
from rnnkit.denormals import flush_denormals
from rnnkit.errors import UserError
from rnnkit.heap import keep_freed_memory

TASKS = {"charlm": "default", "adding": "default", "g2p": "default"}
MODES = ("glibc as it comes", "freed memory kept")


def child(name: str, preset: str, steps: int, mode: str) -> dict:
    """One measurement in this (fresh) process."""
    torch.set_num_threads(1)
    flush_denormals(True)
    if mode == MODES[1]:
        keep_freed_memory(True)
    seconds = preset_steps(name, preset, steps)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    return {"seconds": seconds, "peak_rss_mb": peak}


def main(argv: list[str] | None = None, tasks: dict[str, str] = TASKS) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--child", nargs=4, default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        name, preset, steps, mode = a.child
        print(json.dumps(child(name, preset, int(steps), mode)))
        return {}
    if a.repeats < 1 or a.steps < 1:
        raise SystemExit(
            f"--repeats and --steps: expected integers >= 1, got {a.repeats}, {a.steps}"
        )
    if a.json:
        try:
            check_json_target(a.json)
        except UserError as e:
            raise SystemExit(str(e)) from None
    rows = {}
    for name, preset in tasks.items():
        runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
        for _ in range(a.repeats):
            for mode in MODES:
                command = [sys.executable, __file__, "--child", name, preset, str(a.steps), mode]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:  # the child's last line says why, e.g. a missing file
                    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                    raise SystemExit(
                        f"{name} ({preset}), {mode}: the measuring process failed: {last}"
                    )
                runs[mode].append(json.loads(done.stdout.strip().splitlines()[-1]))
        ms = {m: round(statistics.median(r["seconds"] for r in runs[m]) * 1e3, 2) for m in MODES}
        peak = {m: round(max(r["peak_rss_mb"] for r in runs[m])) for m in MODES}
        rows[f"{name} ({preset})"] = {
            "ms": ms,
            "kept_over_as_it_comes": round(ms[MODES[1]] / ms[MODES[0]], 3),
            "peak_rss_mb": peak,
        }
        r = rows[f"{name} ({preset})"]
        print(
            f"{name} ({preset}): {ms[MODES[0]]:.1f} ms a step as it comes, {ms[MODES[1]]:.1f} ms "
            f"kept ({r['kept_over_as_it_comes']:.3f}x); peak memory {peak[MODES[0]]} -> "
            f"{peak[MODES[1]]} MB"
        )
    result = {"torch": torch.__version__, "repeats": a.repeats, "steps": a.steps, "rows": rows}
    if a.json:
        write_json(a.json, result)
    return result


if __name__ == "__main__":
    main()
