"""How much bfloat16 matrix products would buy the seq2seq training step on this CPU: one
thread, side by side in one process.

1. The matrix products of the g2p preset's step (B 64, S 9, T 12, H 256; encoder 2 x 128 a
   direction) in float32 and in bfloat16 (operands cast beforehand, the cast not timed), and
   the same products with the casts timed (operands from float32, the result back to float32);
   also float32 with ``torch.backends.mkldnn.matmul.fp32_precision = "bf16"`` (what
   ``torch.set_float32_matmul_precision("medium")`` sets: products through oneDNN, which may
   round to bfloat16 where the CPU has AMX), with its largest error relative to float64 beside
   float32's own.
2. One training step of the plain-PyTorch g2p model of ``rnnkit bench seq2seq`` in float32 and
   under ``torch.autocast("cpu", dtype=torch.bfloat16)``, the way PyTorch users turn it on.
3. The share of rnnkit's own g2p step (the decoder kernel) spent in matrix products: the self
   CPU time of torch's matmul-type ops (mm, addmm, bmm, baddbmm, in place or not) over all
   ops' self time, in ``torch.profiler`` over ``--repeats`` steps.

Each row takes turns, round-robin, ``--repeats`` times; the figures are medians, ms.

    OMP_NUM_THREADS=1 python benchmarks/bf16_matmul.py --json docs/bf16_matmul.json
"""

from __future__ import annotations

import statistics
from contextlib import contextmanager

import torch

from rnnkit.bench.common import mean_ms, script_args, write_json

# (rows, inner, columns) of the step's products: the decoder's per-step recurrent and input
# products, the encoder's per-step product, the encoder's input product over S·B rows and a
# weight gradient over T·B rows
SHAPES = {
    "decoder step, W_hh h (64 x 256 x 768)": (64, 256, 768),
    "encoder step, W_hh h (64 x 128 x 384)": (64, 128, 384),
    "encoder input, 2nd layer (576 x 256 x 768)": (576, 256, 768),
    "weight gradient over T·B rows (768 x 768 x 256)": (768, 768, 256),
}


FPMATH = "float32, oneDNN's bf16 fpmath"


@contextmanager
def onednn_fpmath(on: bool):
    """float32 products through oneDNN with its bf16 fpmath mode inside the block if ``on``."""
    flags = torch.backends.mkldnn.matmul
    before = flags.fp32_precision
    flags.fp32_precision = "bf16" if on else before
    try:
        yield
    finally:
        flags.fp32_precision = before


def products(repeats: int, shapes: dict[str, tuple[int, int, int]]) -> list[dict]:
    rows = []
    for name, (m, k, n) in shapes.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        a16, b16 = a.bfloat16(), b.bfloat16()
        ops = {
            "float32": lambda a=a, b=b: torch.mm(a, b),
            "bfloat16": lambda a16=a16, b16=b16: torch.mm(a16, b16),
            "bfloat16 with casts": lambda a=a, b16=b16: torch.mm(a.bfloat16(), b16).float(),
        }
        ops[FPMATH] = ops["float32"]  # timed under the flag below
        ms: dict[str, list[float]] = {op: [] for op in ops}
        for fn in ops.values():
            mean_ms(fn, 5)
        for _ in range(repeats):
            for op, fn in ops.items():
                with onednn_fpmath(op.endswith("fpmath")):
                    ms[op].append(mean_ms(fn, 20))
        med = {op: statistics.median(v) for op, v in ms.items()}
        exact = a.double() @ b.double()
        errors = {}
        for op in ("float32", FPMATH):
            with onednn_fpmath(op.endswith("fpmath")):
                got = torch.mm(a, b).double()
            errors[op] = ((got - exact).abs().max() / exact.abs().max()).item()
        rows.append(
            {
                "product": name,
                "ms": {op: round(v, 4) for op, v in med.items()},
                "gflops": {op: round(2 * m * k * n / v / 1e6, 1) for op, v in med.items()},
                "float32_over_bfloat16": round(med["float32"] / med["bfloat16"], 2),
                "float32_over_bfloat16_with_casts": round(
                    med["float32"] / med["bfloat16 with casts"], 2
                ),
                "float32_over_onednn_fpmath": round(med["float32"] / med[FPMATH], 2),
                "max_relative_error": errors,
            }
        )
    return rows


def plain_step(repeats: int) -> dict:
    from rnnkit.bench.seq2seq import setup

    steps, _ = setup("g2p")
    step = steps["plain PyTorch"]

    def autocast_step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            step()

    ops = {"float32": step, "autocast bfloat16": autocast_step}
    ms: dict[str, list[float]] = {op: [] for op in ops}
    for fn in ops.values():
        mean_ms(fn, 2)
    for _ in range(repeats):
        for op, fn in ops.items():
            ms[op].append(mean_ms(fn, 3))
    med = {op: statistics.median(v) for op, v in ms.items()}
    return {
        "ms": {op: round(v, 2) for op, v in med.items()},
        "autocast_over_float32": round(med["autocast bfloat16"] / med["float32"], 3),
    }


MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm"}


def matmul_share(repeats: int) -> dict:
    from torch.profiler import ProfilerActivity, profile

    from rnnkit.bench.seq2seq import setup

    steps, _ = setup("g2p")
    step = steps["rnnkit kernel"]
    mean_ms(step, 2)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    products = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS)
    return {"steps": repeats, "matmul_share_of_self_cpu": round(products / total, 3)}


def main(argv: list[str] | None = None, shapes: dict | None = None, step: bool = True) -> dict:
    a = script_args(__doc__, argv)
    rows = products(a.repeats, shapes or SHAPES)
    for r in rows:
        err = r["max_relative_error"]
        print(
            f"{r['product']}: float32 {r['ms']['float32']:.3f} ms, bfloat16 "
            f"{r['ms']['bfloat16']:.3f} ms ({r['float32_over_bfloat16']:.2f}x; "
            f"{r['float32_over_bfloat16_with_casts']:.2f}x with the casts); float32 through "
            f"oneDNN's bf16 fpmath {r['float32_over_onednn_fpmath']:.2f}x, error "
            f"{err[FPMATH]:.1e} against {err['float32']:.1e}"
        )
    result = {
        "torch": torch.__version__,
        "threads": 1,
        "repeats": a.repeats,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "products": rows,
    }
    if step:
        result["plain_pytorch_g2p_step"] = plain_step(a.repeats)
        s = result["plain_pytorch_g2p_step"]
        print(
            f"plain PyTorch g2p step: float32 {s['ms']['float32']:.1f} ms, autocast bfloat16 "
            f"{s['ms']['autocast bfloat16']:.1f} ms ({s['autocast_over_float32']:.2f}x)"
        )
        result["rnnkit_g2p_step"] = matmul_share(a.repeats)
        share = result["rnnkit_g2p_step"]["matmul_share_of_self_cpu"]
        print(f"rnnkit's g2p step (decoder kernel): {share:.0%} of its CPU time in matrix products")
    if a.json:
        write_json(a.json, result)
    return result


if __name__ == "__main__":
    main()
