"""The Elman and GRU layers in inference: the torch.nn twin, the rnnkit layer as it runs by
default (torch's own op when no gradient is recorded, where ``rnnkit.kernels.elman.use_torch_op``
/ ``rnnkit.kernels.gru.use_torch_op`` say so) and the rnnkit layer through its hand-derived
kernel (the "elman" / "gru" switch at "rnnkit"), side by side in one process, one thread, at the
layer shapes of ``rnnkit bench speed``'s configs A, B and C; one forward under
``torch.no_grad()`` each in turn, ``--repeats`` rounds; medians in ms and speed relative to the
torch.nn twin (> 1: faster).

    python benchmarks/layer_inference.py --json docs/layer_inference.json
"""

from __future__ import annotations

import statistics
import time

import torch

import rnnkit
from rnnkit.bench.common import script_args, write_json
from rnnkit.kernels.backends import set_backend

SHAPES = {"A": (512, 512, 2, 100, 32), "B": (128, 128, 1, 100, 32), "C": (256, 1024, 1, 50, 128)}
LAYERS = {"RNN": "elman", "GRU": "gru"}  # the layer's name -> its switch


def the_calls(name: str, ours: torch.nn.Module, theirs: torch.nn.Module, x: torch.Tensor) -> dict:
    def kernel() -> object:
        with set_backend(LAYERS[name], "rnnkit"):
            return ours(x)

    return {
        f"torch.nn.{name}": lambda: theirs(x),
        f"rnnkit.{name}": lambda: ours(x),
        f"rnnkit.{name}, hand kernel": kernel,
    }


def main(argv: list[str] | None = None, shapes: dict | None = None) -> dict:
    a = script_args(__doc__, argv, repeats=15)
    rows: dict[str, dict] = {name: {} for name in LAYERS}
    for config, (I, H, L, T, B) in (shapes or SHAPES).items():
        for name in LAYERS:
            ours = getattr(rnnkit, name)(I, H, num_layers=L)
            theirs = getattr(torch.nn, name)(I, H, num_layers=L)
            theirs.load_state_dict(ours.state_dict())
            x = torch.randn(T, B, I)
            calls = the_calls(name, ours, theirs, x)
            times: dict[str, list[float]] = {call: [] for call in calls}
            with torch.no_grad():
                for call in calls.values():  # warm-up
                    call()
                for _ in range(a.repeats):
                    for call_name, call in calls.items():
                        start = time.perf_counter()
                        call()
                        times[call_name].append(time.perf_counter() - start)
            ms = {call: statistics.median(ts) * 1e3 for call, ts in times.items()}
            twin = ms[f"torch.nn.{name}"]
            row = rows[name][config] = {
                "ms": {call: round(v, 3) for call, v in ms.items()},
                "speed_vs_torch_nn": {call: round(twin / v, 3) for call, v in ms.items()},
            }
            speeds = ", ".join(f"{n} {v:.3f}x" for n, v in row["speed_vs_torch_nn"].items())
            print(f"{config}: {speeds}")
    result = {"torch": torch.__version__, "threads": 1, "repeats": a.repeats, "rows": rows}
    if a.json:
        write_json(a.json, result)
    return result


if __name__ == "__main__":
    main()
