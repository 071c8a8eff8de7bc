"""Inference over a padded batch with lengths: rnnkit.GRU / LSTM layer by layer through the
kernels (the "packed" backend "off"), as one packed call (``rnnkit.layers.packed``, the
default), and torch.nn.GRU / LSTM on a packed batch, side by side in one process, one thread,
forward only under ``torch.no_grad``; lengths uniform in [T/2, T], one sequence of T.

Each variant runs in turn, round-robin, ``--repeats`` times (each the median of 10 calls after
a warm-up); the figure is the median, in ms a call, and the ratio to torch.nn's.

    OMP_NUM_THREADS=1 python benchmarks/packed_inference.py --json docs/packed_inference.json
"""

from __future__ import annotations

import statistics

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit
from rnnkit.bench.common import mean_ms, script_args, write_json
from rnnkit.kernels.backends import set_backend

# (T, B, input, hidden, layers, bidirectional): the g2p, dates and translate encoders' shapes
CONFIGS = [(9, 64, 64, 128, 2, True), (20, 64, 64, 128, 1, True), (25, 64, 256, 256, 2, True)]


def one_config(kind: str, T: int, B: int, I: int, H: int, L: int, bi: bool, repeats: int) -> dict:
    theirs = (nn.GRU if kind == "gru" else nn.LSTM)(I, H, L, bidirectional=bi).eval()
    ours = (rnnkit.GRU if kind == "gru" else rnnkit.LSTM)(I, H, L, bidirectional=bi)
    ours.load_state_dict(theirs.state_dict())
    ours.eval()
    x = torch.randn(T, B, I)
    lengths = torch.randint(T // 2, T + 1, (B,))
    lengths[0] = T

    def torch_nn():
        y, _ = theirs(pack_padded_sequence(x, lengths, enforce_sorted=False))
        return pad_packed_sequence(y, total_length=T)[0]

    def rnnkit_with(backend: str):
        def call():
            with set_backend("packed", backend):
                return ours(x, lengths=lengths)[0]

        return call

    variants = {
        "rnnkit layer by layer": rnnkit_with("off"),
        "rnnkit packed call": rnnkit_with("auto"),
        "torch.nn packed": torch_nn,
    }
    ms: dict[str, list[float]] = {n: [] for n in variants}
    with torch.no_grad():
        ref = torch_nn()
        for fn in variants.values():  # warm-up, and the same outputs
            torch.testing.assert_close(fn(), ref, rtol=1e-4, atol=1e-5)
        for _ in range(repeats):
            for name, fn in variants.items():
                ms[name].append(mean_ms(fn, 10))
    medians = {n: statistics.median(v) for n, v in ms.items()}
    base = medians["torch.nn packed"]
    row = {"cell": kind, "T": T, "B": B, "input": I, "hidden": H, "layers": L, "bidirectional": bi}
    row["ms"] = {n: round(v, 3) for n, v in medians.items()}
    row["speed_vs_torch"] = {n: round(base / v, 2) for n, v in medians.items()}
    return row


def main(argv: list[str] | None = None, configs: list[tuple] | None = None) -> dict:
    a = script_args(__doc__, argv)
    rows = []
    for kind in ("gru", "lstm"):
        for T, B, I, H, L, bi in configs or CONFIGS:
            row = one_config(kind, T, B, I, H, L, bi, a.repeats)
            rows.append(row)
            speeds = ", ".join(f"{n} {s}x" for n, s in row["speed_vs_torch"].items())
            print(f"{kind} T{T} B{B} H{H} L{L}{' bi' if bi else ''}: {speeds}")
    result = {"threads": 1, "repeats": a.repeats, "rows": rows}
    if a.json:
        write_json(a.json, result)
    return result


if __name__ == "__main__":
    main()
