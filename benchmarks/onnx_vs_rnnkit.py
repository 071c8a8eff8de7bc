"""onnxruntime against rnnkit, side by side in one process, on one thread each.

Two rows: a language model's sampling step (batch 1, the charlm default sizes: LSTM, E 128,
H 512, 2 layers, V 65; and the same with a GRU) and a tagger's forward pass (the pos default
sizes: word embeddings 100, a character BiLSTM 30 -> 50, a word-level BiLSTM 150, 45 tags; 32
sentences of 25 words). rnnkit runs in eval mode under ``torch.no_grad()`` (the sampling step
takes its one-step fast path; the tagger its kernels); onnxruntime runs the graphs that
``rnnkit export`` writes (the tagger's recurrent layers as Scan loops). Both are timed in
alternating rounds; the figure is the median time per call over the rounds.

    OMP_NUM_THREADS=1 python benchmarks/onnx_vs_rnnkit.py --json docs/onnx_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import onnxruntime as ort
import torch

from rnnkit.export import model_graphs
from rnnkit.tasks.lm import LanguageModel, ModelConfig
from rnnkit.tasks.tagger import TagBatch, Tagger, TaggerConfig


def session(graph) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(graph.proto.SerializeToString(), options)


def per_call(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def race(rnnkit_fn, onnx_fn, rounds: int, calls: int) -> dict:
    """Median seconds per call of each over ``rounds`` alternating rounds of ``calls`` calls."""
    rnnkit_fn(), onnx_fn()  # warm-up
    times: dict[str, list[float]] = {"rnnkit": [], "onnxruntime": []}
    for _ in range(rounds):
        times["rnnkit"].append(per_call(rnnkit_fn, calls))
        times["onnxruntime"].append(per_call(onnx_fn, calls))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "rnnkit_ms": med["rnnkit"] * 1e3,
        "onnxruntime_ms": med["onnxruntime"] * 1e3,
        "rnnkit_over_onnxruntime": med["rnnkit"] / med["onnxruntime"],
        "rounds": rounds,
        "calls_per_round": calls,
    }


def sampling_step(cell: str, rounds: int) -> dict:
    cfg = ModelConfig(cell=cell, embedding_size=128, hidden_size=512, num_layers=2)
    model = LanguageModel(65, cfg).eval()
    graph = model_graphs(model)[1]["step"]
    sess = session(graph)
    ids = torch.tensor([7])
    state = tuple(torch.randn(2, 1, 512) for _ in graph.inputs[1:])
    rnn_state = state if len(state) > 1 else state[0]
    feed = {
        "ids": ids.numpy(),
        **{n: s.numpy() for n, s in zip(graph.inputs[1:], state, strict=True)},
    }

    def rnnkit_step():
        with torch.no_grad():
            model.step(ids, rnn_state)

    row = race(rnnkit_step, lambda: sess.run(None, feed), rounds, calls=50)
    return {"row": f"sampling step, {cell.upper()} 2x512, batch 1", **row}


def tagger_forward(rounds: int) -> dict:
    cfg = TaggerConfig(cell="lstm", dropout=0.0)
    model = Tagger(20000, 100, 45, cfg).eval()
    graph = model_graphs(model)[1]["forward"]
    sess = session(graph)
    T, B, U, L = 25, 32, 400, 12
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    lengths[0] = T
    words = torch.randint(2, 20000, (T, B), generator=g)
    chars = torch.randint(2, 100, (L, U), generator=g)
    char_lengths = torch.randint(1, L + 1, (U,), generator=g)
    word_index = torch.randint(0, U, (T, B), generator=g)
    batch = TagBatch(words, lengths, chars, char_lengths, word_index, None, lengths)
    given = {
        "words": words,
        "lengths": lengths,
        "chars": chars,
        "char_lengths": char_lengths,
        "word_index": word_index,
    }
    feed = {k: v.numpy() for k, v in given.items() if k in graph.inputs}

    def rnnkit_forward():
        with torch.no_grad():
            model(batch)

    row = race(rnnkit_forward, lambda: sess.run(None, feed), rounds, calls=3)
    return {"row": f"tagger forward, BiLSTM 150, {B} x {T} words", **row}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="alternating timing rounds")
    parser.add_argument("--json", default=None, help="write the figures here")
    a = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = [sampling_step("lstm", a.rounds), sampling_step("gru", a.rounds)]
    rows.append(tagger_forward(a.rounds))
    print(f"{'':45} {'rnnkit ms':>10} {'onnxruntime ms':>15} {'rnnkit / ort':>13}")
    for r in rows:
        print(
            f"{r['row']:45} {r['rnnkit_ms']:10.3f} {r['onnxruntime_ms']:15.3f} "
            f"{r['rnnkit_over_onnxruntime']:13.2f}"
        )
    if a.json:
        result = {
            "rows": rows,
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "machine": platform.processor() or platform.machine(),
            "note": "both cores busy with other measurement runs: ratios hold, times do not",
        }
        Path(a.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
