"""The kernels' recurrent products through oneDNN with a packed weight, against torch.addmm:
one thread, side by side in one process (``rnnkit.kernels.onednn``, the switch "onednn").

For each layer (rnnkit.GRU, rnnkit.RNN, rnnkit.MinimalGRU, rnnkit.LSTM with peepholes and with
layer norm) at the layer shapes of ``rnnkit bench speed``'s configs A (input 512, 2 × 512,
T 100, B 32) and C (input 256, 1 × 1024, T 50, B 128): one forward and backward of the layer
(loss: the sum of the outputs), with the switch "off" and "auto" in turn, ``--repeats``
times; the medians in ms, their ratio, the largest difference between the two paths'
gradients relative to the largest gradient entry, and each path's largest difference from the
gradients computed in float64 (the same measure).

    OMP_NUM_THREADS=1 python benchmarks/onednn_products.py --json docs/onednn_products.json
"""

from __future__ import annotations

import statistics
import time

import torch

import rnnkit
from rnnkit.bench.common import script_args, write_json
from rnnkit.kernels.backends import set_backend

SHAPES = {"A": (512, 512, 2, 100, 32), "C": (256, 1024, 1, 50, 128)}  # I, H, layers, T, B
LAYERS = {  # name: (layer, options); the LSTM rows run the hand-derived LSTM kernel
    "GRU": ("GRU", {}),
    "RNN": ("RNN", {}),
    "MinimalGRU": ("MinimalGRU", {}),
    "LSTM peephole": ("LSTM", {"peephole": True}),
    "LSTM layer norm": ("LSTM", {"layer_norm": True}),
}


def one(layer: str, shape: tuple[int, int, int, int, int], repeats: int) -> dict:
    I, H, L, T, B = shape
    torch.manual_seed(0)
    name, options = LAYERS[layer]
    net = getattr(rnnkit, name)(I, H, num_layers=L, **options)
    x = torch.randn(T, B, I, requires_grad=True)

    def step() -> list[torch.Tensor]:
        y, _ = net(x)
        return torch.autograd.grad(y.sum(), [x, *net.parameters()])

    seconds: dict[str, list[float]] = {"off": [], "auto": []}
    grads = {}
    for mode in seconds:  # warm-up, and each path's gradients
        with set_backend("onednn", mode):
            grads[mode] = step()
    for _ in range(repeats):
        for mode in seconds:
            with set_backend("onednn", mode):
                start = time.perf_counter()
                step()
                seconds[mode].append(time.perf_counter() - start)
    off, auto = (statistics.median(seconds[m]) * 1e3 for m in ("off", "auto"))
    net64 = net.to(torch.float64)  # the reference: both float32 paths against it
    x64 = x.detach().to(torch.float64).requires_grad_()
    y64, _ = net64(x64)
    exact = torch.autograd.grad(y64.sum(), [x64, *net64.parameters()])

    def distance(got: list[torch.Tensor], want: list[torch.Tensor]) -> float:
        return max(
            ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()
            for a, b in zip(got, want, strict=True)
        )

    return {
        "off_ms": round(off, 2),
        "onednn_ms": round(auto, 2),
        "ratio": round(auto / off, 3),
        "max_relative_gradient_difference": distance(grads["auto"], grads["off"]),
        "from_float64": {mode: distance(grads[mode], exact) for mode in ("off", "auto")},
    }


def main(argv: list[str] | None = None, shapes: dict | None = None) -> dict:
    a = script_args(__doc__, argv, repeats=5)
    rows = {}
    for config, shape in (shapes or SHAPES).items():
        for layer in LAYERS:
            r = rows[f"{layer} {config}"] = one(layer, shape, a.repeats)
            print(
                f"{layer:15s} {config}: addmm {r['off_ms']:9.1f} ms, oneDNN packed "
                f"{r['onednn_ms']:9.1f} ms ({r['ratio']:.3f}x); gradients differ by "
                f"{r['max_relative_gradient_difference']:.1e}; from float64 "
                f"{r['from_float64']['off']:.1e} (addmm), {r['from_float64']['auto']:.1e} (oneDNN)"
            )
    result = {"torch": torch.__version__, "threads": 1, "repeats": a.repeats, "rows": rows}
    if a.json:
        write_json(a.json, result)
    return result


if __name__ == "__main__":
    main()
