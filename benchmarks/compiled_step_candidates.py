"""Candidates for the compiled inner step, measured on one case: the GRU (reset_after) step's
element-wise work, forward and backward, without the recurrent product, float32, one thread.

- ``torch``: the PyTorch ops of rnnkit.kernels.gru today (the baseline);
- ``ctypes``: plain C++ with a C ABI (src/rnnkit/kernels/fused/fused_step.cpp), g++ -O3
  -ffast-math -march=native, loaded with ctypes (what rnnkit ships);
- ``extension``: the same loops as a torch C++ extension (torch.utils.cpp_extension.load, pybind11,
  at::Tensor arguments; benchmarks/compiled_step_candidate_ext.cpp), same flags;
- ``numba``: the same loops as @njit(fastmath=True) functions on the tensors' numpy views.

Each build is fresh (a temporary cache), so its time is the first build's (wall clock). Per case:
the median over repeats of the CPU time of one forward + backward step, in microseconds (CPU
time, not wall time: the machine this ran on was shared with other long runs).

    OMP_NUM_THREADS=1 python benchmarks/compiled_step_candidates.py \
        --json docs/compiled_step_candidates.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from rnnkit.kernels import fused

HERE = Path(__file__).parent
CASES = [(64, 256), (64, 512), (128, 256), (128, 512)]


def torch_steps():
    def fwd(P, x, h, n, ho):
        H = h.shape[1]
        P[:, : 2 * H].add_(x[:, : 2 * H]).sigmoid_()
        r, z, p_n = P.split(H, dim=1)
        torch.addcmul(x[:, 2 * H :], r, p_n, out=n).tanh_()
        torch.lerp(n, h, z, out=ho)

    def bwd(dh, gy, gates, dP, g, carry):
        B, H = dh.shape
        torch.add(dh, gy, out=g)
        dP.view(B, 3, H).mul_(g.unsqueeze(1))
        torch.mul(g, gates[:, H : 2 * H], out=carry)

    return fwd, bwd


def ctypes_steps(tmp: str):
    os.environ["RNNKIT_CACHE"] = tmp
    start = time.perf_counter()
    ops = fused.step_ops(torch.zeros(1))
    built = time.perf_counter() - start
    assert ops is not None

    def fwd(P, x, h, n, ho):
        ops.gru_forward(P, x, h, n, ho, None)

    def bwd(dh, gy, gates, dP, g, carry):
        ops.gru_backward(dh, gy, gates, dP, g, carry, None)

    return fwd, bwd, built


def extension_steps(tmp: str):
    from torch.utils.cpp_extension import load

    start = time.perf_counter()
    ext = load(
        name="rnnkit_fused_candidate",
        sources=[str(HERE / "compiled_step_candidate_ext.cpp")],
        extra_cflags=["-O3", "-march=native", "-ffast-math", "-fopenmp-simd"],
        build_directory=tmp,
    )
    built = time.perf_counter() - start

    def fwd(P, x, h, n, ho):
        ext.gru_forward_step(P, x, h, n, ho, None)

    def bwd(dh, gy, gates, dP, g, carry):
        ext.gru_backward_step(dh, gy, gates, dP, g, carry, None)

    return fwd, bwd, built


def numba_steps():
    import numba

    @numba.njit(fastmath=True, cache=False)
    def nb_fwd(P, x, h, n, ho):
        B, H = h.shape
        for b in range(B):
            for j in range(H):
                r = 1.0 / (1.0 + math.exp(-(P[b, j] + x[b, j])))
                z = 1.0 / (1.0 + math.exp(-(P[b, H + j] + x[b, H + j])))
                nn = math.tanh(x[b, 2 * H + j] + r * P[b, 2 * H + j])
                P[b, j] = r
                P[b, H + j] = z
                n[b, j] = nn
                ho[b, j] = nn + z * (h[b, j] - nn)

    @numba.njit(fastmath=True, cache=False)
    def nb_bwd(dh, gy, gates, dP, g, carry):
        B, H = dh.shape
        for b in range(B):
            for j in range(H):
                gj = dh[b, j] + gy[b, j]
                g[b, j] = gj
                dP[b, j] *= gj
                dP[b, H + j] *= gj
                dP[b, 2 * H + j] *= gj
                carry[b, j] = gj * gates[b, H + j]

    def fwd(P, x, h, n, ho):
        nb_fwd(P.numpy(), x.numpy(), h.numpy(), n.numpy(), ho.numpy())

    def bwd(dh, gy, gates, dP, g, carry):
        nb_bwd(dh.numpy(), gy.numpy(), gates.numpy(), dP.numpy(), g.numpy(), carry.numpy())

    start = time.perf_counter()
    t = [torch.rand(2, 3) for _ in range(6)]
    h = torch.rand(2, 1)
    fwd(t[0], t[1], h, h.clone(), h.clone())  # compiles
    bwd(h, h.clone(), t[2], t[3], h.clone(), h.clone())
    return fwd, bwd, time.perf_counter() - start


def time_step(fwd, bwd, B: int, H: int, repeats: int, steps: int) -> float:
    """Median over repeats of the CPU time (this process's) of one forward + backward step, in
    microseconds, less that of the two buffer resets each step does (so that no value grows
    without bound over the steps)."""
    g = torch.Generator().manual_seed(0)
    P0, x = torch.randn(B, 3 * H, generator=g), torch.randn(B, 3 * H, generator=g)
    h, gy, dh = (torch.randn(B, H, generator=g) for _ in range(3))
    P, n, ho, dP, G, carry = P0.clone(), h.clone(), h.clone(), P0.clone(), h.clone(), h.clone()
    times, resets = [], []
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(steps):
            P.copy_(P0)
            dP.copy_(P0)
            fwd(P, x, h, n, ho)
            bwd(dh, gy, P, dP, G, carry)
        times.append((time.process_time() - start) / steps * 1e6)
        start = time.process_time()
        for _ in range(steps):
            P.copy_(P0)
            dP.copy_(P0)
        resets.append((time.process_time() - start) / steps * 1e6)
    return statistics.median(times) - statistics.median(resets)


def check_equal(steps, B=8, H=16) -> float:
    """Largest difference from the torch ops on one random step (float32)."""
    g = torch.Generator().manual_seed(1)
    P0, x = torch.randn(B, 3 * H, generator=g), torch.randn(B, 3 * H, generator=g)
    h, gy, dh = (torch.randn(B, H, generator=g) for _ in range(3))
    outs = []
    for fwd, bwd in steps:
        P, n, ho, dP, G, carry = P0.clone(), h.clone(), h.clone(), P0.clone(), h.clone(), h.clone()
        fwd(P, x, h, n, ho)
        bwd(dh, gy, P, dP, G, carry)
        outs.append(torch.cat([t.flatten() for t in (P, n, ho, dP, carry)]))
    return max((o - outs[0]).abs().max().item() for o in outs[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    candidates = {"torch": (*torch_steps(), 0.0)}
    with tempfile.TemporaryDirectory() as tmp:
        candidates["ctypes"] = ctypes_steps(tmp)
        try:
            candidates["extension"] = extension_steps(tmp)
        except Exception as error:  # noqa: BLE001 (reported, not fatal)
            print(f"extension: {error}")
        try:
            candidates["numba"] = numba_steps()
        except ImportError:
            print("numba: not installed (pip install numba)")
        rows = []
        for name, (fwd, bwd, built) in candidates.items():
            row = {"candidate": name, "first_build_s": round(built, 2)}
            row["max_abs_diff_vs_torch"] = check_equal([candidates["torch"][:2], (fwd, bwd)])
            for B, H in CASES:
                row[f"B{B}_H{H}_us"] = round(time_step(fwd, bwd, B, H, args.repeats, args.steps), 2)
            rows.append(row)
            print(row, flush=True)
    base = rows[0]
    for row in rows:
        for B, H in CASES:
            key = f"B{B}_H{H}_us"
            row[f"B{B}_H{H}_speedup"] = round(base[key] / row[key], 2)
    result = {
        "what": "GRU (reset_after) step element-wise work, forward + backward, float32, 1 thread",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "timer": "time.process_time (CPU time of this process), median of repeats",
        "note": "machine busy with other runs: ratios hold, absolute times do not",
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
