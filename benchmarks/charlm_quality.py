"""Quality of the main job: the default charlm preset on the bundled Shakespeare.

Target (the main-job issue): validation loss <= 1.60 nats/char within 10 minutes on a 2-core
CPU. Trains with the default preset, then writes the figures as JSON and exits non-zero if the
target is missed.

    python benchmarks/charlm_quality.py [--out runs/quality] [--json quality.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from rnnkit.cli import main as rnnkit

TARGET = 1.60  # nats per character
BUDGET_MINUTES = 10.0


def run(out: Path) -> dict:
    start = time.perf_counter()
    status = rnnkit(["train", "charlm", "--out", str(out), "--train.progress", "false"])
    minutes = (time.perf_counter() - start) / 60
    if status != 0:
        raise SystemExit(f"training failed with status {status}")
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    val = [r for r in records if r["split"] == "val"]
    rates = [r["tokens_per_s"] for r in records if r["split"] == "train"]
    return {
        "val_loss": val[-1]["loss"],
        "val_bpc": val[-1]["bpc"],
        "steps": val[-1]["step"],
        "minutes_including_setup": minutes,
        "train_minutes": max(r["time"] for r in records if r["split"] == "train") / 60,
        "tokens_per_s_median": statistics.median(rates),
        "target": TARGET,
        "budget_minutes": BUDGET_MINUTES,
        "curve": [(r["step"], r["loss"]) for r in val],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=f"runs/quality-{time.strftime('%Y%m%d-%H%M%S')}")
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args(argv)
    result = run(Path(args.out))
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    ok = result["val_loss"] <= TARGET and result["minutes_including_setup"] <= BUDGET_MINUTES + 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
