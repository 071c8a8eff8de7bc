"""What second derivatives cost an ordinary training step: a kernel Function also receives the
origin of its inputs (the sequence, the initial state, the cell's parameters; see
``rnnkit.kernels.dispatch``). Times forward + backward of 2-layer rnnkit layers with and without
that origin, interleaved in one process, and reports the medians and their ratio as JSON.

    python benchmarks/second_order_overhead.py [--repeats 400] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

import rnnkit
from rnnkit.files import atomic_write
from rnnkit.kernels import elman, gru, jordan, lstm, minimal_gru

MODULES = (elman, gru, jordan, lstm, minimal_gru)
CASES = [  # (layer, hidden size, T, B, options)
    ("LSTM", 32, 20, 8, {"peephole": True}),
    ("GRU", 32, 10, 4, {}),
    ("RNN", 64, 100, 16, {}),
    ("GRU", 128, 50, 32, {}),
]


def step_seconds(layer, x) -> float:
    start = time.perf_counter()
    y, _ = layer(x)
    y.sum().backward()
    return time.perf_counter() - start


def measure(repeats: int) -> list[dict]:
    with_origin = {m: m.origin for m in MODULES}
    without = {m: (lambda *args: ()) for m in MODULES}
    rows = []
    try:
        for name, H, T, B, options in CASES:
            layer = getattr(rnnkit, name)(H, H, 2, **options)
            x = torch.randn(T, B, H)
            times = {"with": [], "without": []}
            for i in range(2 * repeats):  # interleaved, so that load falls on both alike
                which = "without" if i % 2 else "with"
                for m, fn in (without if i % 2 else with_origin).items():
                    m.origin = fn
                times[which].append(step_seconds(layer, x))
            a, b = statistics.median(times["with"]), statistics.median(times["without"])
            rows.append({
                "layer": name, "hidden": H, "T": T, "B": B, "options": options,
                "median_ms_with_origin": 1e3 * a, "median_ms_without": 1e3 * b, "ratio": a / b,
            })  # fmt: skip
            print(f"{name}{options or ''} H {H} T {T} B {B}: {1e3 * b:.3f} ms without the "
                  f"origin, {1e3 * a:.3f} ms with, ratio {a / b:.3f}")  # fmt: skip
    finally:
        for m, fn in with_origin.items():
            m.origin = fn
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=400, help="timed steps per variant and case")
    p.add_argument("--json", help="write the rows here")
    a = p.parse_args(argv)
    if a.repeats < 1:
        p.error("--repeats must be at least 1")
    torch.set_num_threads(1)
    rows = measure(a.repeats)
    if a.json:
        atomic_write(a.json, json.dumps({"torch": torch.__version__, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
