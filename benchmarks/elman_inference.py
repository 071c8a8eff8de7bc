"""The Elman layer in inference: torch.nn.RNN, rnnkit.RNN as it runs by default (torch's own RNN
op when no gradient is recorded: ``rnnkit.kernels.elman.use_torch_op``) and rnnkit.RNN through
its hand-derived kernel (the "elman" switch at "rnnkit"), side by side in one process, one
thread, at the layer shapes of ``rnnkit bench speed``'s configs A, B and C; one forward under
``torch.no_grad()`` each in turn, ``--repeats`` rounds; medians in ms and speed relative to
torch.nn.RNN (> 1: faster).

    python benchmarks/elman_inference.py --json docs/elman_inference.json
"""

from __future__ import annotations

import statistics
import time

import torch

import rnnkit
from rnnkit.bench.common import script_args, write_json
from rnnkit.kernels.backends import set_backend

SHAPES = {"A": (512, 512, 2, 100, 32), "B": (128, 128, 1, 100, 32), "C": (256, 1024, 1, 50, 128)}


def the_calls(ours: torch.nn.Module, theirs: torch.nn.Module, x: torch.Tensor) -> dict:
    def kernel() -> object:
        with set_backend("elman", "rnnkit"):
            return ours(x)

    return {
        "torch.nn.RNN": lambda: theirs(x),
        "rnnkit.RNN": lambda: ours(x),
        "rnnkit.RNN, hand kernel": kernel,
    }


def main(argv: list[str] | None = None, shapes: dict | None = None) -> dict:
    a = script_args(__doc__, argv, repeats=15)
    rows = {}
    for config, (I, H, L, T, B) in (shapes or SHAPES).items():
        ours, theirs = rnnkit.RNN(I, H, num_layers=L), torch.nn.RNN(I, H, num_layers=L)
        theirs.load_state_dict(ours.state_dict())
        x = torch.randn(T, B, I)

        calls = the_calls(ours, theirs, x)
        times: dict[str, list[float]] = {name: [] for name in calls}
        with torch.no_grad():
            for call in calls.values():  # warm-up
                call()
            for _ in range(a.repeats):
                for name, call in calls.items():
                    start = time.perf_counter()
                    call()
                    times[name].append(time.perf_counter() - start)
        ms = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
        rows[config] = {
            "ms": {name: round(v, 3) for name, v in ms.items()},
            "speed_vs_torch_nn": {name: round(ms["torch.nn.RNN"] / v, 3) for name, v in ms.items()},
        }
        print(
            f"{config}: "
            + ", ".join(f"{n} {v:.3f}x" for n, v in rows[config]["speed_vs_torch_nn"].items())
        )
    result = {"torch": torch.__version__, "threads": 1, "repeats": a.repeats, "rows": rows}
    if a.json:
        write_json(a.json, result)
    return result


if __name__ == "__main__":
    main()
