"""Small step costs quoted in the README, side by side in one process, one thread (medians),
denormals flushed to zero as the trainer does (``rnnkit.denormals``):

1. one training step (forward + backward) of each recurrent layer at the adding problem's size
   (T 200, B 50, I 2, H 128): torch.nn.LSTM / GRU against rnnkit's LSTM, GRU, MinimalGRU;
2. one training step of the g2p preset's model: Bahdanau attention (stepped decoder) against
   Luong attention without input feeding (the whole-sequence decoder);
3. beam search (width 5, B 64) on a Bahdanau decoder with ``select_rows`` against
   ``Seq2Seq.reorder_state``.

    python benchmarks/step_costs.py [--json OUT.json] [--repeats N] [--g2p-data FILE.dict]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import rnnkit
from rnnkit.config import apply_overrides
from rnnkit.decoding import beam_search
from rnnkit.denormals import flush_denormals
from rnnkit.seq2seq import Seq2Seq
from rnnkit.tasks import get_task
from rnnkit.tasks.seq2seq_config import Seq2SeqConfig


def median_seconds(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def layers(repeats: int) -> dict[str, float]:
    T, B, I, H = 200, 50, 2, 128
    x = torch.randn(T, B, I)
    makers = {
        "torch.nn.LSTM": lambda: torch.nn.LSTM(I, H),
        "rnnkit.LSTM": lambda: rnnkit.LSTM(I, H),
        "torch.nn.GRU": lambda: torch.nn.GRU(I, H),
        "rnnkit.GRU": lambda: rnnkit.GRU(I, H),
        "rnnkit.MinimalGRU": lambda: rnnkit.MinimalGRU(I, H),
    }
    out = {}
    for name, make in makers.items():
        layer = make()

        def step(layer=layer):
            y, _ = layer(x)
            y[-1].sum().backward()

        out[name] = median_seconds(step, repeats)
    return out


def g2p_steps(repeats: int, data: str | None = None) -> dict[str, float]:
    spec = get_task("g2p")
    variants = {
        "bahdanau": {},
        "luong-general, no input feeding": {
            "model.attention": "luong-general",
            "model.input_feeding": False,
        },
    }
    out = {}
    for name, overrides in variants.items():
        torch.manual_seed(0)
        cfg = apply_overrides(spec.presets["default"](), overrides)
        cfg.data.path = data or cfg.data.path
        task = spec.build(cfg, None)
        model = task.model.train()
        opt = torch.optim.AdamW(model.parameters(), 1e-3)
        task.start_epoch(0)
        position = iter(range(10**6))

        def step(task=task, model=model, opt=opt, position=position):
            loss, _ = task.loss(model, task.train_batch(next(position)))
            opt.zero_grad()
            loss.backward()
            opt.step()

        out[name] = median_seconds(step, repeats)
    return out


def beams(repeats: int) -> dict[str, float]:
    cfg = Seq2SeqConfig(attention="bahdanau", hidden_size=256, embedding_size=64)
    torch.manual_seed(0)
    model = Seq2Seq(40, 20, cfg).eval()
    B, S = 64, 30
    with torch.no_grad():
        state = model.encode(torch.randint(4, 40, (S, B)), torch.full((B,), S))
    out = {}
    for name, reorder in (("select_rows", None), ("Seq2Seq.reorder_state", model.reorder_state)):

        def run(reorder=reorder):
            beam_search(
                model.step, state, B, bos_id=2, eos_id=3, max_len=12, beam_width=5, reorder=reorder
            )

        out[name] = median_seconds(run, max(3, repeats // 4), warmup=1)
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--repeats", type=int, default=12, help="timed repeats per row")
    p.add_argument("--g2p-data", default=None, help="a CMUdict-format file (default: the preset's)")
    a = p.parse_args(argv)
    if a.repeats < 1:
        p.error(f"--repeats: expected an integer >= 1, got {a.repeats}")
    torch.set_num_threads(1)
    flush_denormals(True)  # as the trainer does: docs/speed.md#denormal-floats
    results = {
        "layers_train_step_s": layers(a.repeats),
        "g2p_train_step_s": g2p_steps(a.repeats, a.g2p_data),
        "beam_search_s": beams(a.repeats),
    }
    for section, rows in results.items():
        print(section)
        base = next(iter(rows.values()))
        for name, seconds in rows.items():
            print(f"  {name:34s} {seconds * 1000:8.1f} ms   ratio {seconds / base:.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
