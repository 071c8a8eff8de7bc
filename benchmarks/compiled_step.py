"""The compiled inner step against the PyTorch ops it replaces, per cell, side by side in one
process, one thread: training tokens/s (forward + backward of one layer over a (T, B) batch) with
the "fused" backend "compiled" and "torch", and the torch.nn twin where one exists; and
forward-only tokens/s for the GRU against torch.nn.GRU; and batch-1 sampling chars/s of the
2x512 LSTM character model (vocab 65, embedding 512, as ``rnnkit bench speed`` config S): the
compiled sampler (``rnnkit.kernels.fused.sampler.LSTMSampler``, one call per token) against
stepping rnnkit.LSTM and torch.nn.LSTM one token at a time as the bench does (embedding, layer,
head, softmax, torch.multinomial).

Each configuration runs in turn, round-robin, ``--repeats`` times; the figure is the median's
tokens per second of CPU time (time.process_time: the machine was shared with other runs, so
CPU time, not wall time, is what the ratios are taken of). The plain LSTM runs rnnkit's own
kernel (backend "lstm" = "rnnkit"), the path a masked batch takes; unmasked float32 batches
otherwise run torch's fused op.

    OMP_NUM_THREADS=1 python benchmarks/compiled_step.py --json docs/compiled_step.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

import rnnkit
from rnnkit.cells import ElmanCell, GRUCell, JordanCell, LSTMCell, MinimalGRUCell
from rnnkit.kernels import fused, set_backend
from rnnkit.kernels.fused.sampler import LSTMSampler
from rnnkit.layers.recurrent import Recurrent

CELLS = {
    "GRU": (lambda I, H: GRUCell(I, H), lambda I, H: nn.GRU(I, H)),
    "Elman (tanh)": (lambda I, H: ElmanCell(I, H), lambda I, H: nn.RNN(I, H)),
    "MinimalGRU": (lambda I, H: MinimalGRUCell(I, H), None),
    "Jordan (O = H)": (lambda I, H: JordanCell(I, H), None),
    "LSTM": (lambda I, H: LSTMCell(I, H), lambda I, H: nn.LSTM(I, H)),
    "LSTM peephole": (lambda I, H: LSTMCell(I, H, peephole=True), None),
    "LSTM layer_norm": (lambda I, H: LSTMCell(I, H, layer_norm=True), None),
}


def cpu_seconds(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def train_step(layer: nn.Module, x: torch.Tensor, w: torch.Tensor):
    def step() -> None:
        ys, _ = layer(x)
        (ys * w).sum().backward()

    return step


def forward_step(layer: nn.Module, x: torch.Tensor):
    def step() -> None:
        with torch.no_grad():
            layer(x)

    return step


def with_backend(fn, value: str):
    def run() -> None:
        with set_backend("fused", value), set_backend("lstm", "rnnkit"):
            fn()

    return run


def measure(configs: dict, repeats: int) -> dict[str, float]:
    """Median CPU seconds of each configuration, run round-robin after one warm-up each."""
    for fn in configs.values():
        fn()
    times = {name: [] for name in configs}
    for _ in range(repeats):
        for name, fn in configs.items():
            times[name].append(cpu_seconds(fn))
    return {name: statistics.median(ts) for name, ts in times.items()}


def sampling(repeats: int, chars: int, V: int = 65, H: int = 512, L: int = 2) -> dict:
    """chars/s of CPU time sampling ``chars`` characters at batch 1, three ways."""
    torch.manual_seed(0)
    emb, head = nn.Embedding(V, H), nn.Linear(H, V)
    layers = {"rnnkit.LSTM": rnnkit.LSTM(H, H, num_layers=L), "torch.nn.LSTM": nn.LSTM(H, H, L)}
    gen = torch.Generator().manual_seed(0)

    def stepping(lstm: nn.Module):
        def run() -> None:
            with torch.no_grad():
                token, state = torch.zeros(1, 1, dtype=torch.long), None
                for _ in range(chars):
                    ys, state = lstm(emb(token), state)  # (1, 1, H): T = 1, B = 1
                    probs = head(ys[-1]).softmax(-1)
                    token = torch.multinomial(probs, 1, generator=gen)  # (1, 1)

        return run

    sampler = LSTMSampler(emb, layers["rnnkit.LSTM"], head)
    configs = {"compiled": lambda: sampler.sample([0], chars, generator=gen)}
    configs.update({name: stepping(lstm) for name, lstm in layers.items()})
    secs = measure(configs, repeats)
    row = {"cell": f"LSTM {L}x{H} sampler", "mode": "sample, batch 1"}
    row.update({f"{k}_chars_per_s": round(chars / s) for k, s in secs.items()})
    row["compiled_over_rnnkit"] = round(secs["rnnkit.LSTM"] / secs["compiled"], 2)
    row["compiled_over_torch_nn"] = round(secs["torch.nn.LSTM"] / secs["compiled"], 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=50)
    parser.add_argument("--B", type=int, default=64)
    parser.add_argument("--I", type=int, default=64)
    parser.add_argument("--H", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--chars", type=int, default=100, help="per sampling repeat")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    assert fused.available(), "the compiled step does not build here"
    T, B, I, H = args.T, args.B, args.I, args.H
    x = torch.randn(T, B, I)
    w = torch.randn(T, B, H)
    rows = []
    for name, (make_cell, make_twin) in CELLS.items():
        layer = Recurrent(make_cell(I, H))
        step = train_step(layer, x, w)
        configs = {"compiled": with_backend(step, "compiled"), "torch": with_backend(step, "torch")}
        if make_twin is not None:
            configs["torch.nn"] = train_step(make_twin(I, H), x, w)
        secs = measure(configs, args.repeats)
        row = {"cell": name, "mode": "train"}
        row.update({f"{k}_tokens_per_s": round(T * B / s) for k, s in secs.items()})
        row["compiled_over_torch_ops"] = round(secs["torch"] / secs["compiled"], 2)
        if make_twin is not None:
            row["compiled_over_torch_nn"] = round(secs["torch.nn"] / secs["compiled"], 2)
            row["torch_ops_over_torch_nn"] = round(secs["torch.nn"] / secs["torch"], 2)
        rows.append(row)
        print(row, flush=True)
    layer, twin = Recurrent(GRUCell(I, H)), nn.GRU(I, H)
    fwd = forward_step(layer, x)
    secs = measure(
        {
            "compiled": with_backend(fwd, "compiled"),
            "torch": with_backend(fwd, "torch"),
            "torch.nn": forward_step(twin, x),
        },
        args.repeats,
    )
    row = {"cell": "GRU", "mode": "forward only (no_grad)"}
    row.update({f"{k}_tokens_per_s": round(T * B / s) for k, s in secs.items()})
    row["compiled_over_torch_ops"] = round(secs["torch"] / secs["compiled"], 2)
    row["compiled_over_torch_nn"] = round(secs["torch.nn"] / secs["compiled"], 2)
    row["torch_ops_over_torch_nn"] = round(secs["torch.nn"] / secs["torch"], 2)
    rows.append(row)
    print(row, flush=True)
    rows.append(sampling(args.repeats, args.chars))
    print(rows[-1], flush=True)
    result = {
        "what": "tokens/s of CPU time, one layer, float32, one thread, median of repeats",
        "shape": {"T": T, "B": B, "I": I, "H": H},
        "repeats": args.repeats,
        "torch": torch.__version__,
        "note": "machine busy with other runs: ratios hold, absolute rates do not",
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
