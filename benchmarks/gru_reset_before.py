"""The reset-before GRU's training step (``rnnkit.GRU(..., reset_after=False)``) at ``rnnkit
bench speed``'s configs, one thread, three ways side by side in one process, interleaved:

- ``compiled``: the compiled element-wise step, products packed by oneDNN where they apply;
- ``compiled-addmm``: the compiled step with oneDNN off (every product torch.addmm);
- ``torch``: the kernel's PyTorch ops (``set_backend("fused", "torch")``).

Medians, % of the same run's matmul peak (1024³ and 2048³ products), and torch / compiled.

    python benchmarks/gru_reset_before.py [--repeats 5] [--configs A,B,C] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

import torch

from rnnkit.bench.rows import CONFIGS, RNNKIT, TRAIN, flops_per_token, workloads
from rnnkit.bench.speed import _matmul
from rnnkit.denormals import flush_denormals
from rnnkit.kernels import set_backend

WAYS = {  # way: (the "fused" switch, the "onednn" switch)
    "compiled": ("compiled", "auto"),
    "compiled-addmm": ("compiled", "off"),
    "torch": ("torch", "auto"),
}
PEAK_SIZES = ((1024, 1024, 1024), (2048, 2048, 2048))


def measure(name: str, repeats: int) -> dict:
    cfg = CONFIGS[name]
    jobs = {}
    for way, (fused, onednn) in WAYS.items():
        work = workloads(cfg, "gru_reset_before", RNNKIT, 0)[TRAIN]

        def run(work=work, fused=fused, onednn=onednn) -> None:
            with set_backend("fused", fused), set_backend("onednn", onednn):
                work()

        jobs[way] = run
    jobs.update({size: _matmul(size, 0) for size in PEAK_SIZES})
    times: dict = {key: [] for key in jobs}
    keys, shuffler = list(jobs), random.Random(0)
    for round_ in range(repeats + 1):  # the first round is a warm-up
        shuffler.shuffle(keys)
        for key in keys:
            start = time.perf_counter()
            jobs[key]()
            if round_:
                times[key].append(time.perf_counter() - start)
    med = {key: statistics.median(ts) for key, ts in times.items()}
    peak = max(2 * M * K * N / med[(M, K, N)] / 1e9 for M, K, N in PEAK_SIZES)
    flops = flops_per_token("gru_reset_before", cfg, TRAIN) * cfg.T * cfg.B
    row = {
        way: {"ms": med[way] * 1e3, "pct_peak": 100 * flops / med[way] / 1e9 / peak} for way in WAYS
    }
    return {**row, "torch_over_compiled": med["torch"] / med["compiled"], "peak_gflops": peak}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (default: 5)")
    p.add_argument("--configs", default="A,B,C", help="a subset of A,B,C (default: all)")
    p.add_argument("--json", default=None, help="write the results here")
    a = p.parse_args(argv)
    names = a.configs.split(",")
    if a.repeats < 1 or not set(names) <= {"A", "B", "C"}:
        p.error(f"--repeats >= 1 and --configs within A,B,C, got {a.repeats}, {a.configs}")
    torch.set_num_threads(1)
    flush_denormals(True)  # as the trainer does
    out = {}
    for name in names:
        out[name] = measure(name, a.repeats)
        ways = ", ".join(
            f"{w} {r['ms']:.1f} ms ({r['pct_peak']:.1f}%)"
            for w, r in out[name].items()
            if w in WAYS
        )
        print(
            f"{name}: {ways}; torch / compiled {out[name]['torch_over_compiled']:.3f}", flush=True
        )
    if a.json:
        with open(a.json, "w") as f:
            f.write(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
