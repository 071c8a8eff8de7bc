"""torch's CPU tanh against its sigmoid and against tanh(x) = 2σ(2x) - 1 made from the sigmoid,
one thread, side by side in one process: why the attention kernels score with the sigmoid.

Each op runs in turn, round-robin, ``--repeats`` times (each the mean of 20 calls into a buffer
allocated once, after a warm-up) on float32 N(0, 1) data; the figure is the median, in ms, and
ns an element. Also the largest difference of the composite from torch.tanh.

    OMP_NUM_THREADS=1 python benchmarks/tanh_cost.py --json docs/tanh_cost.json
"""

from __future__ import annotations

import statistics

import torch

from rnnkit.bench.common import mean_ms, script_args, write_json

SIZES = [64 * 9 * 256, 320 * 9 * 256, 64 * 25 * 512]  # (B, S, A) of the g2p/translate scores


def one_size(n: int, repeats: int) -> dict:
    x, out = torch.randn(n), torch.empty(n)
    ops = {
        "torch.tanh": lambda: torch.tanh(x, out=out),
        "torch.sigmoid": lambda: torch.sigmoid(x, out=out),
        "2 sigmoid(2x) - 1": lambda: torch.mul(x, 2, out=out).sigmoid_().mul_(2).sub_(1),
    }
    ms: dict[str, list[float]] = {name: [] for name in ops}
    for fn in ops.values():
        fn()
    for _ in range(repeats):
        for name, fn in ops.items():
            ms[name].append(mean_ms(fn, 20))
    medians = {name: statistics.median(v) for name, v in ms.items()}
    composite = medians["2 sigmoid(2x) - 1"]
    return {
        "elements": n,
        "ms": {k: round(v, 4) for k, v in medians.items()},
        "ns_per_element": {k: round(v * 1e6 / n, 3) for k, v in medians.items()},
        "tanh_over_composite": round(medians["torch.tanh"] / composite, 2),
        "max_abs_difference": (torch.tanh(x) - (torch.sigmoid(2 * x) * 2 - 1)).abs().max().item(),
    }


def main(argv: list[str] | None = None, sizes: list[int] | None = None) -> dict:
    a = script_args(__doc__, argv)
    rows = []
    for n in sizes or SIZES:
        rows.append(one_size(n, a.repeats))
        times = ", ".join(f"{k} {v:.3f} ms" for k, v in rows[-1]["ms"].items())
        print(f"{n:>9} elements: {times}")
    result = {"torch": torch.__version__, "threads": 1, "repeats": a.repeats, "rows": rows}
    result["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    if a.json:
        write_json(a.json, result)
    return result


if __name__ == "__main__":
    main()
