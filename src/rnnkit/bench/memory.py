"""``rnnkit bench memory``: peak training memory over long sequences, against torch.nn.

Each row runs in a fresh Python process, so that one row's freed memory cannot hide another's
peak: build the model (vocab 65 → embedding H → L recurrent layers of width H → linear 65, as
config A of ``rnnkit bench speed``) and random token ids (T, B), warm up with one shorter
training step (2k + 20 steps, k = checkpoint_steps, so every code path has run), then time one
training step over the whole sequence (forward, cross-entropy, backward; no optimiser step,
whose state does not grow with T). Memory is the process's peak resident set during that step
(VmHWM, reset just before it) minus its resident set just before it (/proc/self/statm), i.e.
what the step added: activations saved for backward, gradients, workspace. ``per token·layer``
divides it by T·B·L.

Rows: torch.nn.LSTM and torch.nn.GRU; rnnkit's twins on their default path (the plain float32
LSTM runs torch's fused op), the LSTM on the hand-derived kernel, a peephole LSTM, and each with
``checkpoint_steps`` (recompute instead of store, ``rnnkit.layers.Stacked``: inside the kernels,
and for the LSTM and the GRU also by ``torch.utils.checkpoint``). ``memory ratio``
and ``time ratio`` compare a row with the twin it is measured against (torch.nn for rnnkit's
plain rows, the same rnnkit layer without checkpointing for the checkpointed rows).

Linux only (it reads /proc); runs the rows one after another, repeats interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

from rnnkit.argparse_config import parser_from_dataclasses
from rnnkit.bench.common import VOCAB, BenchParser, check_json_target, parse_args, write_json
from rnnkit.config import option
from rnnkit.errors import UserError

# name -> (layer family, options, the row it is compared with)
ROWS: dict[str, tuple[str, dict, str | None]] = {
    "torch.nn.LSTM": ("nn.LSTM", {}, None),
    "rnnkit.LSTM": ("LSTM", {}, "torch.nn.LSTM"),
    "rnnkit.LSTM hand kernel": ("LSTM", {"backend": "rnnkit"}, "torch.nn.LSTM"),
    "rnnkit.LSTM checkpointed": ("LSTM", {"checkpoint": True}, "rnnkit.LSTM"),
    "rnnkit.LSTM hand kernel checkpointed": (
        "LSTM",
        {"backend": "rnnkit", "checkpoint": True},
        "rnnkit.LSTM hand kernel",
    ),
    "rnnkit.LSTM utils.checkpoint": (
        "LSTM",
        {"checkpoint": True, "in_kernels": False},
        "rnnkit.LSTM",
    ),
    "rnnkit.LSTM peephole": ("LSTM", {"peephole": True}, "torch.nn.LSTM"),
    "rnnkit.LSTM peephole checkpointed": (
        "LSTM",
        {"peephole": True, "checkpoint": True},
        "rnnkit.LSTM peephole",
    ),
    "torch.nn.GRU": ("nn.GRU", {}, None),
    "rnnkit.GRU": ("GRU", {}, "torch.nn.GRU"),
    "rnnkit.GRU checkpointed": ("GRU", {"checkpoint": True}, "rnnkit.GRU"),
    "rnnkit.GRU utils.checkpoint": (
        "GRU",
        {"checkpoint": True, "in_kernels": False},
        "rnnkit.GRU",
    ),
}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> None:
    """Reset this process's peak resident set (VmHWM) where the kernel allows it (Linux >= 4.0);
    otherwise the peak so far stays, which the short warm-up keeps small."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_rss_bytes() -> int:
    """VmHWM, the peak resident set of this process's own address space. Not getrusage's
    ru_maxrss: after fork + exec it starts at the parent's resident set (Linux keeps the larger
    of the two), which would hide a child smaller than its parent."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure_row(row: str, T: int, B: int, H: int, L: int, k: int, threads: int) -> dict:
    """One row in this process: peak extra bytes and seconds of one training step."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from rnnkit.kernels.backends import set_backend
    from rnnkit.layers import torch_compat

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    family, options, _ = ROWS[row]
    options = dict(options)
    set_backend("lstm", options.pop("backend", "auto"))
    steps = k if options.pop("checkpoint", False) else 0
    in_kernels = options.pop("in_kernels", True)
    if family.startswith("nn."):
        rnn = getattr(nn, family[3:])(H, H, L)
    else:
        rnn = getattr(torch_compat, family)(H, H, L, checkpoint_steps=steps, **options)
        rnn._stack.recompute_in_kernels = in_kernels
    embed, head = nn.Embedding(VOCAB, H), nn.Linear(H, VOCAB)

    def train_step(length: int) -> None:
        ids = torch.randint(0, VOCAB, (length + 1, B))
        ys, _ = rnn(embed(ids[:-1]))
        F.cross_entropy(head(ys).flatten(0, 1), ids[1:].flatten()).backward()

    train_step(min(T, 2 * k + 20))  # warm-up: every code path (incl. two chunks) runs once
    for m in (rnn, embed, head):
        m.zero_grad(set_to_none=False)  # gradients allocated before, as in training
    _reset_peak()
    before = _rss_bytes()
    start = time.perf_counter()
    train_step(T)
    seconds = time.perf_counter() - start
    return {"peak_extra_bytes": max(0, _peak_rss_bytes() - before), "seconds": seconds}


def _child(row: str, T: int, B: int, H: int, L: int, k: int, threads: int) -> dict:
    args = [sys.executable, "-m", "rnnkit.bench.memory", "--child", row]
    args += [str(v) for v in (T, B, H, L, k, threads)]
    # glibc serves large blocks from the heap once the mmap threshold has adapted, and keeps
    # freed heap memory resident; a fixed threshold makes every large tensor its own mapping,
    # returned on free, so the resident set follows the bytes actually alive.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"memory row {row!r} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_memory(
    rows: list[str], T: int, B: int, H: int, L: int, k: int, repeats: int, threads: int, log=None
) -> list[dict]:
    """Every row ``repeats`` times, interleaved; medians; ratios to each row's twin."""
    samples: dict[str, list[dict]] = {row: [] for row in rows}
    for r in range(repeats):
        for row in rows:
            if log:
                log(f"repeat {r + 1}/{repeats}: {row} (T {T})")
            samples[row].append(_child(row, T, B, H, L, k, threads))
    records = []
    for row in rows:
        peak = statistics.median(s["peak_extra_bytes"] for s in samples[row])
        seconds = statistics.median(s["seconds"] for s in samples[row])
        records.append(
            {
                "row": row,
                "T": T,
                "B": B,
                "hidden": H,
                "layers": L,
                "checkpoint_steps": k if ROWS[row][1].get("checkpoint") else 0,
                "peak_extra_bytes": int(peak),
                "bytes_per_token_layer": peak / (T * B * L),
                "seconds": seconds,
                "tokens_per_s": T * B / seconds,
                "twin": ROWS[row][2],
            }
        )
    by_row = {rec["row"]: rec for rec in records}
    for rec in records:
        twin = by_row.get(rec["twin"]) if rec["twin"] else None
        rec["memory_ratio"] = rec["peak_extra_bytes"] / twin["peak_extra_bytes"] if twin else None
        rec["time_ratio"] = rec["seconds"] / twin["seconds"] if twin else None
    return records


def format_table(records: list[dict]) -> str:
    r0 = records[0]
    lines = [
        f"peak training memory: T {r0['T']}, batch {r0['B']}, {r0['layers']}x{r0['hidden']}, "
        f"vocab {VOCAB}; one step (forward + backward) in a fresh process",
        f"  {'row':36} {'peak extra':>11} {'per token·layer':>16} {'seconds':>8} "
        f"{'memory ratio':>13} {'time ratio':>11}  vs",
    ]
    for r in records:
        mem = "" if r["memory_ratio"] is None else f"{r['memory_ratio']:.2f}"
        tim = "" if r["time_ratio"] is None else f"{r['time_ratio']:.2f}"
        lines.append(
            f"  {r['row']:36} {r['peak_extra_bytes'] / 2**30:9.2f} GB "
            f"{r['bytes_per_token_layer'] / 1024:13.1f} KB {r['seconds']:8.1f} {mem:>13} "
            f"{tim:>11}  {r['twin'] or ''}"
        )
    k = max(r["checkpoint_steps"] for r in records)
    if k:
        lines.append(f"checkpointed rows recompute chunks of {k} steps (checkpoint_steps={k})")
    return "\n".join(lines)


@dataclass
class MemoryOptions:
    """The options of ``rnnkit bench memory``."""

    T: int = option(5000, "sequence length")
    batch: int = option(32, "batch size")
    hidden: int = option(512, "hidden size")
    layers: int = option(2, "stacked layers")
    checkpoint_steps: int = option(100, "chunk of the checkpointed rows")
    repeats: int = option(1, "interleaved repeats")
    rows: str | None = option(None, f"comma-separated subset of: {', '.join(ROWS)}")
    quick: bool = option(False, "T 1000, LSTM rows only (a minute)")
    threads: int | None = option(None, "torch threads (default: torch's)")
    json: str | None = option(None, "write the records to this JSON file")


def memory_parser() -> argparse.ArgumentParser:
    return parser_from_dataclasses(
        "rnnkit bench memory",
        MemoryOptions,
        description="Peak training memory of one step over a long sequence, each row in a fresh"
        " process: torch.nn against rnnkit, and rnnkit with checkpointing through time.",
        parser_class=BenchParser,
    )


def main_memory(argv: list[str]) -> int:
    import torch

    args = parse_args(memory_parser(), argv)
    if isinstance(args, int):  # --help
        return args
    if not sys.platform.startswith("linux"):
        raise UserError("bench memory reads /proc and runs on Linux only")
    for name in ("T", "batch", "hidden", "layers", "checkpoint_steps", "repeats"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if args.json:
        check_json_target(args.json)
    rows = list(ROWS)
    T = args.T
    if args.quick:
        rows = [r for r in rows if "LSTM" in r and "peephole" not in r]
        T = min(T, 1000)
    if args.rows:
        rows = [r.strip() for r in args.rows.split(",") if r.strip()]
        unknown = [r for r in rows if r not in ROWS]
        if unknown:
            raise UserError(f"unknown row {unknown[0]!r}; rows: {', '.join(ROWS)}")
    threads = args.threads or torch.get_num_threads()
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    records = run_memory(
        rows,
        T,
        args.batch,
        args.hidden,
        args.layers,
        args.checkpoint_steps,
        args.repeats,
        threads,
        log,
    )
    print(format_table(records))
    if args.json:
        write_json(args.json, {"torch": torch.__version__, "threads": threads, "records": records})
        print(f"records written to {args.json}")
    return 0


if __name__ == "__main__" and len(sys.argv) == 9 and sys.argv[1] == "--child":
    row, *numbers = sys.argv[2:]
    print(json.dumps(measure_row(row, *(int(n) for n in numbers))))
