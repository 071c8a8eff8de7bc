"""The cost of one training step of the execute task at its target difficulty, in CPU seconds
(``time.process_time``, one thread), for a few model sizes: how the presets were sized.

CPU time rather than wall time, so that other work on the machine does not inflate it. Every
batch is drawn at the target difficulty (``train.curriculum none``): the longest programs, the
dearest steps; a curriculum's early stages cost less.

    python benchmarks/execute_step_cost.py [--preset paper] [--steps 5] [--json OUT.json]
        [--sizes 128x1,128x2,256x2,400x2]     (hidden size x layers, encoder and decoder)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from rnnkit.config import apply_overrides
from rnnkit.tasks import get_task


def step_cost(preset: str, hidden: int, layers: int, steps: int, extra: dict) -> dict:
    spec = get_task("execute")
    cfg = apply_overrides(
        spec.presets[preset](),
        {
            "model.hidden_size": hidden,
            "model.encoder_layers": layers,
            "model.decoder_layers": layers,
            "train.curriculum": "none",
            "data.val_examples": 1,
            **extra,
        },
    )
    task = spec.build(cfg)
    optimizer = torch.optim.AdamW(task.model.parameters(), lr=1e-3)
    times = []
    for position in range(steps + 1):  # the first step warms up
        batch = task.train_batch(position)
        start = time.process_time()
        loss, _ = task.loss(task.model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.process_time() - start)
    return {
        "hidden": hidden,
        "layers": layers,
        "parameters": sum(p.numel() for p in task.model.parameters()),
        "batch_size": cfg.data.batch_size,
        "cpu_seconds": statistics.median(times[1:]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="paper")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--sizes", default="128x1,128x2,256x2,400x2")
    p.add_argument("--json", default=None)
    p.add_argument("--batch-size", type=int, default=0, help="0: the preset's")
    a = p.parse_args()
    torch.set_num_threads(1)
    extra = {"data.batch_size": a.batch_size} if a.batch_size else {}
    rows = []
    for size in a.sizes.split(","):
        hidden, layers = map(int, size.split("x"))
        rows.append(step_cost(a.preset, hidden, layers, a.steps, extra))
        r = rows[-1]
        print(f"H {hidden} x {layers} layers ({r['parameters']:,} parameters), batch "
              f"{r['batch_size']}: {r['cpu_seconds']:.3f} CPU s a step")  # fmt: skip
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"preset": a.preset, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
