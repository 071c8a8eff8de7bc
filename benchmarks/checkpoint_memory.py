"""Checkpointing through time at T = 1000 (issue 17): ``rnnkit bench memory``'s rows for storing
everything, recomputing inside the kernels across the stack, and torch.utils.checkpoint chunks
through all layers (main's scheme), for the LSTM and the GRU. Each row runs in a fresh process
(``rnnkit.bench.memory``), one after another, and the JSON is rewritten after every row so that
a run cut short keeps what it measured; ratios against storing everything and against
torch.utils.checkpoint at the end.

``--time`` instead times them side by side in one process (the same weights, one training step
of each in turn, ``--repeats`` rounds, medians and ratios): no memory figures. It has a fourth
variant, "in kernels, top replayed": the kernels' recompute with the top layer run again like the
others, rather than rebuilt from its kept outputs (``set_backend("rebuild", "off")``).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/checkpoint_memory.py \\
        --T 1000 --k 32 --json docs/bench_checkpoint_T1000.json
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/checkpoint_memory.py --time \\
        --T 1000 --batch 8 --hidden 256 --k 32 --repeats 3 --json time.json
"""

from __future__ import annotations

import argparse
import json
import sys

from rnnkit.bench.memory import format_table, run_memory
from rnnkit.files import atomic_write

FAMILIES = ("LSTM", "GRU")


def rows_of(family: str) -> list[str]:
    base = f"rnnkit.{family}"
    return [base, f"{base} checkpointed", f"{base} utils.checkpoint"]


def with_ratios(records: list[dict]) -> list[dict]:
    """Each row's ratios to its twin (storing everything) and, for the rows recomputing inside
    the kernels, to the torch.utils.checkpoint row (``_vs_utils``)."""
    by_row = {r["row"]: r for r in records}
    for r in records:
        utils = r["row"].replace(" checkpointed", " utils.checkpoint")
        for key, name in (("", r["twin"]), ("_vs_utils", utils if utils != r["row"] else None)):
            other = by_row.get(name) if name else None
            if other:
                r[f"memory_ratio{key}"] = r["peak_extra_bytes"] / other["peak_extra_bytes"]
                r[f"time_ratio{key}"] = r["seconds"] / other["seconds"]
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--k", type=int, default=32, help="checkpoint_steps")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--time", action="store_true", help="time side by side instead")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of --time")
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    if args.time:
        records = [time_side_by_side(f, args) for f in args.families.split(",")]
        atomic_write(args.json, json.dumps({"threads": 1, "records": records}, indent=1) + "\n")
        print(json.dumps(records, indent=1))
        return 0
    records: list[dict] = []
    for family in args.families.split(","):
        for row in rows_of(family):
            print(f"{row} (T {args.T}, k {args.k})", file=sys.stderr, flush=True)
            shape = (args.T, args.batch, args.hidden, args.layers, args.k)
            records += run_memory([row], *shape, repeats=1, threads=1)
            with_ratios(records)
            text = json.dumps({"threads": 1, "records": records}, indent=1) + "\n"
            atomic_write(args.json, text)
    print(format_table(records))
    return 0


def time_side_by_side(family: str, args) -> dict:
    """Seconds of one training step (as ``rnnkit.bench.memory``'s) of the three variants in
    turn, ``args.repeats`` rounds: medians and ratios to storing everything."""
    import statistics
    import time

    import torch
    import torch.nn.functional as F
    from torch import nn

    from rnnkit.bench.common import VOCAB
    from rnnkit.kernels.backends import set_backend
    from rnnkit.layers import torch_compat

    torch.set_num_threads(1)
    T, B, H, L, k = args.T, args.batch, args.hidden, args.layers, args.k
    torch.manual_seed(0)
    embed, head = nn.Embedding(VOCAB, H), nn.Linear(H, VOCAB)
    variants, rebuilds = {}, {}
    for name, steps, in_kernels, rebuild in (
        ("stored", 0, True, True),
        ("in kernels", k, True, True),
        ("in kernels, top replayed", k, True, False),
        ("utils.checkpoint", k, False, True),
    ):
        torch.manual_seed(1)
        rnn = getattr(torch_compat, family)(H, H, L, checkpoint_steps=steps)
        rnn._stack.recompute_in_kernels = in_kernels
        variants[name], rebuilds[name] = rnn, rebuild
    ids = torch.randint(0, VOCAB, (T + 1, B))

    def step(rnn) -> float:
        rebuild = rebuilds[next(n for n, r in variants.items() if r is rnn)]
        set_backend("rebuild", "auto" if rebuild else "off")
        start = time.perf_counter()
        ys, _ = rnn(embed(ids[:-1]))
        F.cross_entropy(head(ys).flatten(0, 1), ids[1:].flatten()).backward()
        return time.perf_counter() - start

    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for rnn in variants.values():
        step(rnn)  # warm-up
    for r in range(args.repeats):
        for name, rnn in variants.items():
            print(f"{family} round {r + 1}/{args.repeats}: {name}", file=sys.stderr, flush=True)
            seconds[name].append(step(rnn))
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    return {
        "family": family,
        "T": T,
        "B": B,
        "hidden": H,
        "layers": L,
        "checkpoint_steps": k,
        "seconds": seconds,
        "median_seconds": medians,
        "time_ratio": {name: m / medians["stored"] for name, m in medians.items()},
    }


if __name__ == "__main__":
    sys.exit(main())
