"""Batch-1 sampling of a character language model (2x512 LSTM, vocabulary 65, embedding 512, as
``rnnkit bench speed`` config S; and the same GRU), side by side in one process, one thread:

- ``compiled``: ``rnnkit.kernels.fused.lm_sampler`` (what ``rnnkit sample`` now runs): one C call
  per token, weights packed once on huge pages;
- ``compiled, 4 KiB pages``: the same without ``madvise(MADV_HUGEPAGE)``;
- ``compiled, bfloat16 weights``: the same with the packed matrices stored in bfloat16
  (``PackedLM(weights="bfloat16")``: half the bytes a token reads; another model, the float32
  one with those matrices rounded, so other tokens);
- ``previous compiled``: ``rnnkit.kernels.fused.sampler.LSTMSampler`` (LSTM only);
- ``generic loop``: ``rnnkit.decoding.sample_sequence`` on ``LanguageModel.step`` (what
  ``rnnkit sample`` ran before; rnnkit's one-step path);
- ``torch.nn stepping``: embedding → torch.nn.LSTM (GRU) with T = 1 → head → softmax →
  torch.multinomial per token, the same weights.

Each configuration runs in turn, round-robin, ``--repeats`` times, after one warm-up; the figure
is the median's characters per second of CPU time (time.process_time: the machine is shared with
other runs). Also measured in the same process: the read bandwidth of one core (``torch.sum``
over 12 MB, which fits the 32 MB L3, and over 512 MB), against which the bytes of weights a token
reads give the bound.

Then, with ``--threads N`` (default 2; 1 skips it), the step shared by a team of N threads
(``Stepper(threads=N)``) against the same at one thread, and torch.nn stepping with N intra-op
threads against one: these rows are characters per second of wall time (perf_counter; CPU time
would count every thread), so they need a quiet machine; also the read bandwidth of N threads
over 12 MB.

    python benchmarks/lm_sampler.py --json docs/lm_sampler.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from rnnkit.decoding import sample_sequence
from rnnkit.kernels import fused, set_backend
from rnnkit.kernels.fused import lm_sampler
from rnnkit.kernels.fused.sampler import LSTMSampler
from rnnkit.tasks.lm import LanguageModel, ModelConfig


def cpu_seconds(fn, clock=time.process_time) -> float:
    start = clock()
    fn()
    return clock() - start


def measure(configs: dict, repeats: int, clock=time.process_time) -> dict[str, float]:
    """Median seconds (of ``clock``) of each configuration, run round-robin after one warm-up
    each."""
    for fn in configs.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(repeats):
        for name, fn in configs.items():
            times[name].append(cpu_seconds(fn, clock))
    return {name: statistics.median(ts) for name, ts in times.items()}


def bandwidth(megabytes: int, repeats: int, threads: int = 1) -> float:
    """GB/s of ``threads`` cores reading ``megabytes`` of float32 with torch.sum (best of
    ``repeats``; wall time)."""
    x = torch.rand(megabytes * 2**20 // 4)
    torch.set_num_threads(threads)
    best = min(cpu_seconds(lambda: x.sum(), time.perf_counter) for _ in range(repeats))
    torch.set_num_threads(1)
    return round(x.numel() * 4 / best / 1e9, 1)


def twin(model: LanguageModel, cell: str) -> nn.Module:
    """torch.nn.LSTM / torch.nn.GRU holding the model's recurrent weights."""
    rnn = model.rnn
    out = (nn.LSTM if cell == "lstm" else nn.GRU)(rnn.input_size, rnn.hidden_size, rnn.num_layers)
    out.load_state_dict(rnn.state_dict())
    return out.eval()


def sampling(
    cell: str, repeats: int, chars: int, V: int, E: int, H: int, L: int, threads: int
) -> dict:
    torch.manual_seed(0)
    model = LanguageModel(V, ModelConfig(cell=cell, embedding_size=E, hidden_size=H, num_layers=L))
    model.eval()
    emb, head, rnn = model.embedding, model.head, model.rnn
    packed = lm_sampler.PackedLM(emb, rnn, head)
    small_pages = lm_sampler.PackedLM(emb, rnn, head, huge_pages=False)
    half = lm_sampler.PackedLM(emb, rnn, head, weights="bfloat16")
    torch_rnn = twin(model, cell)
    gen = torch.Generator().manual_seed(0)

    def torch_stepping(n: int = 1) -> None:
        torch.set_num_threads(n)
        with torch.no_grad():
            token, state = torch.zeros(1, 1, dtype=torch.long), None
            for _ in range(chars):
                ys, state = torch_rnn(emb(token), state)  # (1, 1, H): T = 1, B = 1
                probs = head(ys[-1]).softmax(-1)
                token = torch.multinomial(probs, 1, generator=gen)  # (1, 1)
        torch.set_num_threads(1)

    def generic() -> None:
        with set_backend("fused", "torch"):  # keeps rnnkit sample off the compiled sampler
            sample_sequence(model.step, None, [0], chars, generator=gen)

    configs = {
        "compiled": lambda: lm_sampler.sample(packed, [0], chars, generator=gen),
        "compiled, 4 KiB pages": lambda: lm_sampler.sample(small_pages, [0], chars, generator=gen),
        "compiled, bfloat16 weights": lambda: lm_sampler.sample(half, [0], chars, generator=gen),
    }
    if cell == "lstm":
        previous = LSTMSampler(emb, rnn, head)
        configs["previous compiled"] = lambda: previous.sample([0], chars, generator=gen)
    configs["generic loop"] = generic
    configs["torch.nn stepping"] = torch_stepping
    secs = measure(configs, repeats)
    G = 4 if cell == "lstm" else 3
    weight_bytes = 4 * G * H * (H + (L - 1) * 2 * H) + 4 * V * H  # table row, W_hh, layers, head
    row = {"model": f"{cell.upper()} {L}x{H}, V {V}, E {E}", "chars": chars, "repeats": repeats}
    row.update({f"{k} chars/s": round(chars / s) for k, s in secs.items()})
    for k in secs:
        if k != "compiled":
            row[f"compiled / {k}"] = round(secs[k] / secs["compiled"], 2)
    row["weight MB read per token"] = round(weight_bytes / 1e6, 2)
    row["compiled GB/s of weights"] = round(weight_bytes * chars / secs["compiled"] / 1e9, 1)
    if threads > 1:
        n = packed.team_size(threads)
        wall = {
            "compiled, 1 thread": lambda: lm_sampler.sample(packed, [0], chars, generator=gen),
            f"compiled, {n} threads": lambda: lm_sampler.sample(
                packed, [0], chars, generator=gen, threads=n
            ),
            f"compiled, bfloat16 weights, {n} threads": lambda: lm_sampler.sample(
                half, [0], chars, generator=gen, threads=n
            ),
            "torch.nn stepping, 1 thread": torch_stepping,
            f"torch.nn stepping, {n} threads": lambda: torch_stepping(n),
        }
        secs = measure(wall, repeats, time.perf_counter)
        row.update({f"{k} chars/s (wall)": round(chars / s) for k, s in secs.items()})
        team = secs[f"compiled, {n} threads"]
        others = (
            "compiled, 1 thread",
            f"torch.nn stepping, {n} threads",
            "torch.nn stepping, 1 thread",
        )
        for k in others:
            row[f"compiled, {n} threads / {k}"] = round(secs[k] / team, 2)
        row[f"compiled, {n} threads GB/s of weights"] = round(weight_bytes * chars / team / 1e9, 1)
        half_team = secs[f"compiled, bfloat16 weights, {n} threads"]
        for k in (f"torch.nn stepping, {n} threads", "torch.nn stepping, 1 thread"):
            row[f"compiled, bfloat16 weights, {n} threads / {k}"] = round(secs[k] / half_team, 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--chars", type=int, default=200, help="per sampling repeat")
    parser.add_argument("--threads", type=int, default=2, help="the team's rows (1: none)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    assert fused.available(), "the compiled step does not build here"
    record = {
        "threads": torch.get_num_threads(),
        "read GB/s, 12 MB (L3)": bandwidth(12, 20),
        "read GB/s, 512 MB (memory)": bandwidth(512, 5),
        f"read GB/s, 12 MB, {args.threads} threads": bandwidth(12, 20, args.threads),
        "rows": [
            sampling(cell, args.repeats, args.chars, V=65, E=512, H=512, L=2, threads=args.threads)
            for cell in ("lstm", "gru")
        ],
    }
    print(json.dumps(record, indent=1))
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
