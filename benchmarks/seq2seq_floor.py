"""How far the seq2seq training step can fall on this machine: its matrix products alone.

For the training step of the g2p and translate presets (``rnnkit bench seq2seq``'s batch and
model: forward, loss, backward and AdamW, the decoder as the hand-derived kernel), one thread:

- ``gflop``: the step's floating-point operations, counted by torch's ``FlopCounterMode``
  (the products, forward and backward; element-wise work is not counted);
- ``step_ms``: the kernel's step and the plain-PyTorch model's step (median CPU time, the two
  in turn, ``--repeats`` times);
- ``products_ms``: the time of the step's products (mm, addmm, addmm_, bmm, baddbmm): their
  share of ``--repeats`` kernel steps' wall time under ``torch.profiler`` (their self times
  over the loop's time, so that another process's share of the core cancels out; the
  profiler's own cost falls outside the products and lowers the share) times the kernel's
  step; their rate is ``gflop / products_ms``;
- ``peak_gflops``: this machine's rate for a large product (1024 x 1024 x 1024, float32).

Two floors, as a fraction of the plain-PyTorch step (issue 17's target for the kernel's step
is 0.5): ``products_only``, the step if everything but its products cost nothing, at the rate
the products run at these shapes; and ``at_peak``, its products at the large product's rate.

    OMP_NUM_THREADS=1 python benchmarks/seq2seq_floor.py --repeats 9 --json docs/seq2seq_floor.json
"""

from __future__ import annotations

import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from rnnkit.bench.common import script_args, write_json
from rnnkit.bench.seq2seq import setup

PRODUCTS = {"aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm"}


def peak_gflops(n: int = 1024, repeats: int = 9) -> float:
    """GFLOP/s of an n x n x n float32 product, the best of ``repeats`` (a machine's peak)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def cpu_ms(fn) -> float:
    start = time.process_time()
    fn()
    return (time.process_time() - start) * 1e3


def one_preset(name: str, repeats: int, peak: float) -> dict:
    steps, (B, S, T) = setup(name)
    kernel, plain = steps["rnnkit kernel"], steps["plain PyTorch"]
    for _ in range(2):
        kernel(), plain()
    counter = FlopCounterMode(display=False)
    with counter:
        kernel()
    gflop = counter.get_total_flops() / 1e9
    times: dict[str, list[float]] = {"rnnkit kernel": [], "plain PyTorch": []}
    for _ in range(repeats):
        times["rnnkit kernel"].append(cpu_ms(kernel))
        times["plain PyTorch"].append(cpu_ms(plain))
    step = {row: statistics.median(t) for row, t in times.items()}
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(repeats):
            kernel()
        profiled = time.perf_counter() - start
    products = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in PRODUCTS)
    share = products / 1e6 / profiled  # the profiler counts µs; its own cost is not products
    products_ms = share * step["rnnkit kernel"]
    plain_ms = step["plain PyTorch"]
    return {
        "B": B,
        "S": S,
        "T": T,
        "gflop": round(gflop, 3),
        "step_ms": {row: round(v, 2) for row, v in step.items()},
        "kernel_vs_plain": round(step["rnnkit kernel"] / plain_ms, 3),
        "products_ms": round(products_ms, 2),
        "products_gflops": round(gflop / products_ms * 1e3, 1),
        "products_share_of_kernel_step": round(share, 3),
        "floor_vs_plain": {
            "products_only": round(products_ms / plain_ms, 3),
            "at_peak": round(gflop / peak * 1e3 / plain_ms, 3),
        },
    }


def main(argv: list[str] | None = None, presets: tuple[str, ...] = ("g2p", "translate")) -> dict:
    a = script_args(__doc__, argv)
    peak = peak_gflops()
    rows = {}
    for name in presets:
        r = rows[name] = one_preset(name, a.repeats, peak)
        print(
            f"{name}: {r['gflop']} GFLOP a step; kernel {r['step_ms']['rnnkit kernel']} ms, "
            f"plain {r['step_ms']['plain PyTorch']} ms ({r['kernel_vs_plain']}x); products "
            f"{r['products_ms']} ms at {r['products_gflops']} GFLOP/s (peak {peak:.0f}); "
            f"floors vs plain: products only {r['floor_vs_plain']['products_only']}x, "
            f"at peak {r['floor_vs_plain']['at_peak']}x"
        )
    result = {
        "torch": torch.__version__,
        "threads": 1,
        "repeats": a.repeats,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "peak_gflops": round(peak, 1),
        "presets": rows,
    }
    if a.json:
        write_json(a.json, result)
    return result


if __name__ == "__main__":
    main()
