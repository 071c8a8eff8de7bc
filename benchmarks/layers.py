"""Speed of rnnkit's layers against torch.nn, side by side in one process.

Training step = forward + backward + Adam step on next-token prediction with a linear head.
For each cell: torch.nn's twin (where one exists), rnnkit through its hand-derived kernel, and
rnnkit's generic autograd path (the cell stepped under autograd, as a user-written cell runs).
Repeats are interleaved so that machine noise hits every row alike; medians and ratios to
torch.nn's twin (or to torch.nn.LSTM for cells without a twin) are reported.

    python benchmarks/layers.py [--quick] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn

import rnnkit

CONFIGS = {  # name: (input_size, hidden_size, num_layers, T, B)
    "small": (64, 128, 1, 50, 32),
    "medium": (128, 256, 2, 50, 32),
}
PLN = {"peephole": True, "layer_norm": True}
GENERIC_PLN = {**PLN, "use_kernel": False}
ROWS = [  # (cell, impl, constructor)
    ("lstm", "torch.nn", lambda I, H, L: nn.LSTM(I, H, L)),
    ("lstm", "rnnkit kernel", lambda I, H, L: rnnkit.LSTM(I, H, L)),
    ("lstm", "rnnkit generic", lambda I, H, L: rnnkit.LSTM(I, H, L, use_kernel=False)),
    ("gru", "torch.nn", lambda I, H, L: nn.GRU(I, H, L)),
    ("gru", "rnnkit kernel", lambda I, H, L: rnnkit.GRU(I, H, L)),
    ("gru", "rnnkit generic", lambda I, H, L: rnnkit.GRU(I, H, L, use_kernel=False)),
    ("rnn_tanh", "torch.nn", lambda I, H, L: nn.RNN(I, H, L)),
    ("rnn_tanh", "rnnkit kernel", lambda I, H, L: rnnkit.RNN(I, H, L)),
    ("rnn_tanh", "rnnkit generic", lambda I, H, L: rnnkit.RNN(I, H, L, use_kernel=False)),
    ("lstm_peephole_ln", "rnnkit kernel", lambda I, H, L: rnnkit.LSTM(I, H, L, **PLN)),
    ("lstm_peephole_ln", "rnnkit generic", lambda I, H, L: rnnkit.LSTM(I, H, L, **GENERIC_PLN)),
    ("gru_reset_before", "rnnkit kernel", lambda I, H, L: rnnkit.GRU(I, H, L, reset_after=False)),
    ("minimal_gru", "rnnkit kernel", lambda I, H, L: rnnkit.MinimalGRU(I, H, L)),
    ("jordan", "rnnkit kernel", lambda I, H, L: rnnkit.JordanRNN(I, H, L)),
]  # fmt: skip


def make_step(rnn: nn.Module, I: int, H: int, T: int, B: int):
    head = nn.Linear(H, I)
    params = list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    xs = torch.randn(T, B, I)
    targets = torch.randint(0, I, (T, B))

    def step():
        ys, _ = rnn(xs)
        loss = nn.functional.cross_entropy(head(ys).flatten(0, 1), targets.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def run(configs: dict, repeats: int, warmup: int) -> list[dict]:
    records = []
    for config, (I, H, L, T, B) in configs.items():
        torch.manual_seed(0)
        steps = {(cell, impl): make_step(make(I, H, L), I, H, T, B) for cell, impl, make in ROWS}
        times: dict = {key: [] for key in steps}
        for _ in range(warmup):
            for step in steps.values():
                step()
        for _ in range(repeats):  # interleaved: every row sees the same machine noise
            for key, step in steps.items():
                start = time.perf_counter()
                step()
                times[key].append(time.perf_counter() - start)
        for (cell, impl), ts in times.items():
            twin = (cell, "torch.nn") if (cell, "torch.nn") in times else ("lstm", "torch.nn")
            median, ref = statistics.median(ts), statistics.median(times[twin])
            records.append({
                "config": config, "cell": cell, "impl": impl, "mode": "train",
                "input_size": I, "hidden_size": H, "num_layers": L, "T": T, "B": B,
                "tokens_per_s": T * B / median, "min_tokens_per_s": T * B / max(ts),
                "max_tokens_per_s": T * B / min(ts), "ratio": ref / median,
                "ratio_to": f"{twin[0]} torch.nn", "repeats": repeats,
            })  # fmt: skip
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small config, few repeats")
    parser.add_argument("--json", help="write the records to this file")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    configs = {"small": CONFIGS["small"]} if args.quick else CONFIGS
    records = run(configs, repeats=5 if args.quick else 15, warmup=1 if args.quick else 3)
    print(f"torch {torch.__version__}, {args.threads} threads; training step, tokens/s (median)")
    print(f"{'config':8} {'cell':18} {'impl':15} {'tokens/s':>10} {'[min-max]':>17} {'ratio':>6}")
    for r in records:
        span = f"[{r['min_tokens_per_s']:.0f}-{r['max_tokens_per_s']:.0f}]"
        print(
            f"{r['config']:8} {r['cell']:18} {r['impl']:15} {r['tokens_per_s']:10.0f} "
            f"{span:>17} {r['ratio']:6.2f}  (vs {r['ratio_to']})"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"torch": torch.__version__, "threads": args.threads, "records": records},
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
