"""One training step of the attention seq2seq presets: the decoder kernel against the step loop.

The model of each preset (``rnnkit.tasks``' g2p, translate and dates ``default``: GRU, Bahdanau
attention, dropout on) on a synthetic batch of its size, bucketed as the task's batcher makes
them: B sources of one length S (about the data's median, <eos> included), targets of lengths
drawn from [T/2, T]. A step is forward, the masked cross-entropy (label smoothing as the preset),
backward and AdamW's update. The same model runs with ``Decoder.use_kernel`` True (the
hand-derived kernel, ``rnnkit.kernels.attention_decoder``) and False (the step loop under
autograd), the repeats interleaved, one thread; medians of the wall-clock time and of the
process's CPU time (the steadier one on a shared machine) and the ratios kernel / loop.

    OMP_NUM_THREADS=1 python benchmarks/seq2seq_step.py [--json docs/seq2seq_step.json]
        [--repeats N] [--presets g2p,translate,dates] [--flops]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from rnnkit.bench.seq2seq import SHAPES
from rnnkit.bench.seq2seq import setup as bench_setup


def setup(name: str):
    """``step(kernel)``: one training step of the preset's model (``rnnkit bench seq2seq``'s
    setup), through the decoder kernel or the step loop; and (B, S, T)."""
    steps, shape = bench_setup(name)
    return (lambda kernel: steps["rnnkit kernel" if kernel else "rnnkit step loop"]()), shape


def measure(name: str, repeats: int) -> dict:
    step, (B, S, T) = setup(name)
    for _ in range(2):  # warm-up
        step(True)
        step(False)
    wall: dict[str, list[float]] = {"kernel": [], "loop": []}
    cpu: dict[str, list[float]] = {"kernel": [], "loop": []}
    for _ in range(repeats):
        for kind in ("kernel", "loop"):
            start, start_cpu = time.perf_counter(), time.process_time()
            step(kind == "kernel")
            wall[kind].append(time.perf_counter() - start)
            cpu[kind].append(time.process_time() - start_cpu)
    out = {"B": B, "S": S, "T": T}
    for clock, times in (("wall", wall), ("cpu", cpu)):
        kernel, loop = (statistics.median(times[k]) for k in ("kernel", "loop"))
        out[clock] = {"kernel_s": kernel, "loop_s": loop, "ratio": kernel / loop}
    return out


def flops(name: str) -> dict:
    """The matrix products' floating-point operations of one step of each path (torch's
    ``FlopCounterMode``: matmul-type ops only), GFLOP."""
    from torch.utils.flop_counter import FlopCounterMode

    step, _ = setup(name)
    out = {}
    for kind in ("kernel", "loop"):
        with FlopCounterMode(display=False) as counter:
            step(kind == "kernel")
        out[kind] = counter.get_total_flops() / 1e9
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--repeats", type=int, default=20, help="timed repeats per row and path")
    p.add_argument("--flops", action="store_true", help="count each step's GFLOP, no timing")
    p.add_argument("--presets", default=",".join(SHAPES), help="comma-separated preset names")
    a = p.parse_args(argv)
    if a.repeats < 1:
        p.error(f"--repeats: expected an integer >= 1, got {a.repeats}")
    names = a.presets.split(",")
    for name in names:
        if name not in SHAPES:
            p.error(f"--presets: expected names among {', '.join(SHAPES)}, got {name!r}")
    torch.set_num_threads(1)
    if a.flops:
        counts = {name: flops(name) for name in names}
        for name, c in counts.items():
            print(f"{name:10s} GFLOP a step: kernel {c['kernel']:.2f}  loop {c['loop']:.2f}")
        return counts
    results = {}
    for name in names:
        r = results[name] = measure(name, a.repeats)
        for clock in ("wall", "cpu"):
            c = r[clock]
            print(
                f"{name:10s} B {r['B']} S {r['S']} T {r['T']} {clock:4s}: kernel "
                f"{c['kernel_s'] * 1000:7.1f} ms  loop {c['loop_s'] * 1000:7.1f} ms  "
                f"ratio {c['ratio']:.2f}"
            )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(
                {"step": "forward + loss + backward + AdamW", "threads": 1, "presets": results},
                f,
                indent=1,
            )
    return results


if __name__ == "__main__":
    main()
