"""``rnnkit bench speed``: tokens/s of rnnkit's layers against torch.nn, side by side.

What one row measures (tokens = time steps × batch rows):

- ``train``: forward + backward + Adam step of next-character prediction: token ids (vocab 65)
  → ``nn.Embedding`` of width hidden_size (so every recurrent layer's input is H wide) →
  recurrent layers → ``nn.Linear`` to 65 → cross-entropy, on random ids. Config C has no
  embedding: random float inputs of width 256 go straight into the recurrent layer.
- ``infer``: the same forward (logits and loss) under ``torch.no_grad``.
- ``sample``: batch 1, one token at a time under ``torch.no_grad`` with the state carried from
  call to call (the layer is called with T = 1 each step), softmax and ``torch.multinomial``
  choose the next token; tokens/s is characters generated per second.

Rows: ``torch.nn`` (torch.nn.LSTM / GRU / RNN(tanh)); ``rnnkit`` (the twins on their default
fast path: the hand-derived kernels, except the plain float32 LSTM on an unmasked batch, which
runs torch's fused op, see ``rnnkit.kernels.lstm.use_fused``) for the same three and, through
rnnkit only, the variants
lstm_peephole, lstm_layernorm, minimal_gru, jordan (output size H) and gru_reset_before; and
``custom loop``: an LSTM written the way users write one (a Python loop over ``x.unbind(0)``,
``F.linear`` per step, under autograd), the reference row. Sampling rows: the LSTM, GRU and RNN
twins, the custom loop, and ``torch.nn -oneDNN``, torch.nn.LSTM with oneDNN switched off (on the
CPU torch.nn.LSTM runs oneDNN's RNN primitive, whose per-call set-up dominates at T = B = 1),
and ``rnnkit torch-step``, rnnkit.LSTM's one-step path (``rnnkit.layers.stepper``) on its torch
backend instead of the default numpy one.
``ratio`` = median tokens/s over the median tokens/s of the torch.nn twin in the same config and
mode, or of torch.nn.LSTM for the variants (the custom loop's and -oneDNN's twin is
torch.nn.LSTM).

FLOPs are counted analytically, matrix products only (element-wise work, the embedding lookup,
layer norm and the Adam step are ignored), 2 FLOPs per multiply-add. Forward, per token and
layer with input width I (I = H past the first layer) and hidden width H:

    rnn_tanh 2·H(I+H)   lstm (and its variants, and the custom loop) 2·4H(I+H)
    gru (either reset convention) 2·3H(I+H)   minimal_gru 2·2H(I+H)   jordan 2·H(I+H) + 2·H·H

plus the head, 2·H·65. Training counts 3× the forward (forward, then the gradient with respect
to the inputs and to the weights, one product each); infer and sample 1×. GFLOP/s = FLOPs per
token × tokens/s. The matmul peak is measured in the same run, interleaved with the rows:
fp32 ``torch.mm`` of 1024³ and 2048³ and, per config, the input-projection shape
(B·T)×I @ I×4H; the peak is the best median GFLOP/s among them, and ``% peak`` = GFLOP/s / peak.

CPU modes: by default every row runs under the trainer's process modes (``cpu_modes``: denormals
flushed to zero on every thread, freed memory kept in the heap), as ``rnnkit train`` runs;
``--cpu-modes false`` measures the process as it comes.

Timing: per config, ``warmup`` untimed rounds, then ``repeats`` rounds in which every row (and
mode, and matmul) runs once, in a shuffled order, so machine noise hits all rows alike;
median and [min-max] over the rounds. Weights and inputs are seeded (``torch.manual_seed``).
Other processes' CPU use during each config's timed rounds (from /proc/stat, minus this
process's own) is reported; above 10% of the CPUs a warning says the numbers are unreliable.

Configs (``CONFIGS``): A vocab 65, embedding and hidden 512, 2 layers, T 100, B 32; B hidden 128,
1 layer, T 100, B 32; C float inputs 256, hidden 1024, 1 layer, T 50, B 128; S sampling, hidden
512, 2 layers, 100 characters per repeat; 5 repeats. ``--quick`` (``QUICK_CONFIGS``, 3 repeats,
about a minute on 2 quiet cores): B with every row; A-short = A with T 25, every row; S with 50
characters per repeat; config C is left out.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from rnnkit.argparse_config import parser_from_dataclasses
from rnnkit.bench.common import (
    BenchParser,
    check_json_target,
    cpu_seconds,
    others_share,
    parse_args,
    summary,
    write_json,
)
from rnnkit.bench.rows import (
    CONFIGS,
    CUSTOM,
    FULL_REPEATS,
    INFER,
    NOISY_SHARE,
    PEAK_SIZES,
    QUICK_CONFIGS,
    QUICK_REPEATS,
    RNNKIT,
    RNNKIT_TORCH_STEP,
    ROWS,
    SAMPLE,
    TORCH,
    TORCH_NO_ONEDNN,
    TRAIN,
    SpeedConfig,
    flops_per_token,
    workloads,
)
from rnnkit.config import option
from rnnkit.errors import UserError
from rnnkit.train.train_config import TrainConfig, cpu_modes


# ---- the timed work ------------------------------------------------------------------------
def _matmul(size: tuple[int, int, int], seed: int) -> Callable:
    M, K, N = size
    gen = torch.Generator().manual_seed(seed)
    a, b = torch.randn(M, K, generator=gen), torch.randn(K, N, generator=gen)
    out = torch.empty(M, N)
    return lambda: torch.mm(a, b, out=out)


def run_speed(
    configs: dict[str, SpeedConfig] | list[SpeedConfig],
    repeats: int,
    *,
    warmup: int = 1,
    peak_sizes: tuple[tuple[int, int, int], ...] = PEAK_SIZES,
    seed: int = 0,
    matmul_records: list[dict] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """Time every row of every config; one record per (config, row, mode), in table order.

    Per config: ``warmup`` untimed rounds, then ``repeats`` rounds, each running every row, mode
    and matmul once in a shuffled order. The matmul timings (1024³, 2048³ by default, and the
    config's (B·T)×I @ I×4H) are pooled per size over the whole run; the peak is the best
    median, appended to ``matmul_records`` (if given) one dict per size.
    """
    if repeats < 1 or warmup < 0:
        raise UserError(
            f"repeats must be at least 1 and warmup at least 0, got {repeats}, {warmup}"
        )
    configs = list(configs.values()) if isinstance(configs, dict) else list(configs)
    shuffler = random.Random(seed)
    timings: dict[tuple, list[float]] = {}  # (config, cell, impl, mode) -> seconds per round
    mm_times: dict[tuple[int, int, int], list[float]] = {}
    others: dict[str, float | None] = {}  # config -> share of the CPUs other processes used
    for cfg in configs:
        start = time.perf_counter()
        jobs: dict[tuple, Callable] = {}
        for cell, impl in cfg.row_keys():
            for mode, fn in workloads(cfg, cell, impl, seed).items():
                jobs[(cfg.name, cell, impl, mode)] = fn
        sizes = list(peak_sizes)
        if not cfg.sample:
            sizes.append((cfg.T * cfg.B, cfg.width, 4 * cfg.hidden_size))
        for size in dict.fromkeys(sizes):
            jobs[("matmul", size)] = _matmul(size, seed)
        keys = list(jobs)
        for round_ in range(warmup + repeats):
            if round_ == warmup:
                cpu_before, timed_start = cpu_seconds(), time.perf_counter()
            shuffler.shuffle(keys)
            for key in keys:
                t0 = time.perf_counter()
                jobs[key]()
                elapsed = time.perf_counter() - t0
                if round_ < warmup:
                    continue
                if key[0] == "matmul":
                    mm_times.setdefault(key[1], []).append(elapsed)
                else:
                    timings.setdefault(key, []).append(elapsed)
            if log is not None:
                kind = "warm-up" if round_ < warmup else "round"
                n = round_ + 1 if round_ < warmup else round_ + 1 - warmup
                total = warmup if round_ < warmup else repeats
                log(f"config {cfg.name}: {kind} {n}/{total} ({time.perf_counter() - start:.0f} s)")
        others[cfg.name] = others_share(
            cpu_before, cpu_seconds(), time.perf_counter() - timed_start
        )
        del jobs

    peaks = []
    for (M, K, N), ts in mm_times.items():
        med, lo, hi = summary(ts)
        flops = 2 * M * K * N
        peaks.append(
            {
                "size": f"{M}x{K}x{N}",
                "gflops": flops / med / 1e9,
                "min_gflops": flops / hi / 1e9,
                "max_gflops": flops / lo / 1e9,
                "repeats": len(ts),
            }
        )
    peak = max(p["gflops"] for p in peaks)
    if matmul_records is not None:
        matmul_records.extend(peaks)

    by_name = {cfg.name: cfg for cfg in configs}
    medians = {key: statistics.median(ts) for key, ts in timings.items()}
    records = []
    for cfg in configs:
        for mode in cfg.modes():
            for cell, impl in cfg.row_keys():
                key = (cfg.name, cell, impl, mode)
                if key not in timings:
                    continue
                med, lo, hi = summary(timings[key])
                tokens = cfg.T * cfg.B
                twin = (cell, TORCH) if (cell, TORCH) in ROWS else ("lstm", TORCH)
                twin_key = (cfg.name, *twin, mode)
                ratio = medians[twin_key] / med if twin_key in medians else None
                fpt = flops_per_token(cell, by_name[cfg.name], mode)
                gflops = fpt * tokens / med / 1e9
                records.append(
                    {
                        "config": cfg.name,
                        "cell": cell,
                        "impl": impl,
                        "mode": mode,
                        "tokens_per_s": tokens / med,
                        "min_tokens_per_s": tokens / hi,
                        "max_tokens_per_s": tokens / lo,
                        "ratio": ratio,
                        "ratio_to": f"{twin[0]} {twin[1]}",
                        "gflops": gflops,
                        "pct_peak": 100.0 * gflops / peak,
                        "peak_gflops": peak,
                        "flops_per_token": fpt,
                        "description": cfg.describe(),
                        "input_size": cfg.width,
                        "hidden_size": cfg.hidden_size,
                        "num_layers": cfg.num_layers,
                        "T": cfg.T,
                        "B": cfg.B,
                        "vocab": cfg.vocab,
                        "repeats": len(timings[key]),
                        "seconds": timings[key],
                        "others_cpu_share": others[cfg.name],
                    }
                )
    return records


# ---- reporting -------------------------------------------------------------------------------
MODE_TEXT = {
    TRAIN: "train (forward + backward + Adam)",
    INFER: "infer (forward, no_grad)",
    SAMPLE: "sample (one token per call, no_grad)",
}


def _int(x: float) -> str:
    return f"{x:,.0f}"


def format_table(records: list[dict]) -> str:
    """A table per (config, mode), rows in record order, then one summary line per mode."""
    lines: list[str] = []
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["config"], r["mode"]), []).append(r)
    for (config, mode), rows in groups.items():
        first = rows[0]
        unit = "chars/s" if mode == SAMPLE else "tokens/s"
        share = first.get("others_cpu_share")
        busy = "" if share is None else f"; other processes used {100 * share:.0f}% of the CPUs"
        lines += [
            f"config {config}, {MODE_TEXT.get(mode, mode)}: {first['description']}",
            f"  {first['repeats']} interleaved repeats{busy}",
            f"  {'cell':17} {'impl':16} {unit:>9} {'[min - max]':>21} {'ratio':>6} {'vs':7} "
            f"{'GFLOP/s':>7} {'% peak':>6}",
        ]
        for r in rows:
            span = f"[{_int(r['min_tokens_per_s'])} - {_int(r['max_tokens_per_s'])}]"
            ratio = "     -" if r["ratio"] is None else f"{r['ratio']:6.2f}"
            versus = "twin" if r["ratio_to"] == f"{r['cell']} {TORCH}" else "nn.LSTM"
            lines.append(
                f"  {r['cell']:17} {r['impl']:16} {_int(r['tokens_per_s']):>9} {span:>21} "
                f"{ratio} {versus:7} {r['gflops']:7.1f} {r['pct_peak']:5.1f}%"
            )
        lines.append("")
    if records:
        lines.append(
            f"matmul peak {records[0]['peak_gflops']:.1f} GFLOP/s (fp32, best median of the "
            "sizes timed in this run). ratio: median tokens/s over that of the torch.nn twin "
            "(vs nn.LSTM: of torch.nn.LSTM)."
        )
    lines += format_summary(records)
    noisy = sorted({r["config"] for r in records if (r.get("others_cpu_share") or 0) > NOISY_SHARE})
    if noisy:
        lines.append(
            f"warning: other processes used more than {100 * NOISY_SHARE:.0f}% of the CPUs "
            f"during config(s) {', '.join(noisy)}; their numbers are unreliable, run again on "
            "a quiet machine"
        )
    return "\n".join(lines)


def format_summary(records: list[dict]) -> list[str]:
    """One line per mode: rnnkit's ratios to its torch.nn twins, and the custom loop's."""
    lines = []
    for mode in (TRAIN, INFER, SAMPLE):
        parts = []
        for cell in ("lstm", "gru", "rnn_tanh"):
            ratios = [
                f"{r['config']} {r['ratio']:.2f}"
                for r in records
                if r["mode"] == mode and r["cell"] == cell and r["impl"] == RNNKIT
                if r["ratio"] is not None
            ]
            if ratios:
                parts.append(f"{cell} {', '.join(ratios)}")
        for impl in (CUSTOM, TORCH_NO_ONEDNN, RNNKIT_TORCH_STEP):
            others = [
                f"{r['config']} {r['ratio']:.2f}"
                for r in records
                if r["mode"] == mode and r["impl"] == impl and r["ratio"] is not None
            ]
            if others:
                parts.append(f"{impl}/torch.nn.LSTM {', '.join(others)}")
        if parts:
            lines.append(f"summary {mode}, rnnkit/torch.nn: " + "; ".join(parts))
    return lines


# ---- the command -----------------------------------------------------------------------------
@dataclass
class SpeedOptions:
    """The options of ``rnnkit bench speed``."""

    quick: bool = option(False, "a subset, fewer repeats (under 2 min)")
    json: str | None = option(None, "write every record to this JSON file")
    threads: int | None = option(None, "torch threads (default: torch's)")
    repeats: int | None = option(
        None, f"timed rounds per config (default: {FULL_REPEATS}, quick {QUICK_REPEATS})"
    )
    warmup: int = option(1, "untimed rounds first")
    configs: str | None = option(
        None,
        f"comma-separated subset of {','.join(CONFIGS)} (default: all; with --quick, of the "
        "quick set)",
    )
    cpu_modes: bool = option(
        True,
        "run under the trainer's CPU modes, as rnnkit train does (denormals flushed, freed "
        "memory kept; rnnkit.denormals, rnnkit.heap); false: as the process comes",
    )


def speed_parser() -> argparse.ArgumentParser:
    quick = "\n".join(f"  {n:8} {c.describe()}" for n, c in QUICK_CONFIGS.items())
    full = "\n".join(f"  {n:8} {c.describe()}" for n, c in CONFIGS.items())
    return parser_from_dataclasses(
        "rnnkit bench speed",
        SpeedOptions,
        description=(
            "Tokens/s of rnnkit's RNN layers against torch.nn's on this machine: training,\n"
            "inference and sampling, interleaved repeats, GFLOP/s and % of a matmul peak\n"
            "measured in the same run."
        ),
        epilog=f"""\
configs ({FULL_REPEATS} repeats; A, B, C: train and infer; S: sample):
{full}
--quick ({QUICK_REPEATS} repeats, about a minute on 2 quiet cores; no config C):
{quick}

rows: torch.nn and rnnkit for lstm, gru, rnn_tanh; rnnkit only for lstm_peephole,
lstm_layernorm, minimal_gru, jordan, gru_reset_before; the custom loop (a plain PyTorch
LSTM, a Python loop over time) as the reference. Sampling: the twins, the custom loop,
torch.nn.LSTM with oneDNN off, rnnkit's torch step backend. ratio: to the torch.nn twin,
or to torch.nn.LSTM.
Train = embedding -> layers -> linear -> cross-entropy, backward, Adam step. FLOPs:
matmuls only, training 3x the forward. Details: the docstring of rnnkit.bench.speed.""",
        parser_class=BenchParser,
        raw_text=True,
    )


def main_speed(
    argv: list[str],
    *,
    configs: dict[str, SpeedConfig] | None = None,
    peak_sizes: tuple[tuple[int, int, int], ...] = PEAK_SIZES,
) -> int:
    """``rnnkit bench speed [options]``; ``configs`` and ``peak_sizes`` replace the built-in
    ones (for tests)."""
    args = parse_args(speed_parser(), argv)
    if isinstance(args, int):  # --help
        return args
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    repeats = args.repeats
    if repeats is None:
        repeats = QUICK_REPEATS if args.quick else FULL_REPEATS
    if repeats < 1 or args.warmup < 0:
        raise UserError("--repeats must be at least 1 and --warmup at least 0")
    if args.json:
        check_json_target(args.json)
    chosen = dict(configs or (QUICK_CONFIGS if args.quick else CONFIGS))
    if args.configs:
        names = [n.strip() for n in args.configs.split(",") if n.strip()]
        unknown = [n for n in names if n not in chosen]
        if unknown:
            raise UserError(f"unknown config {unknown[0]!r}; configs: {', '.join(chosen)}")
        chosen = {n: chosen[n] for n in names}
    threads = torch.get_num_threads()
    print(
        f"torch {torch.__version__}, {threads} threads; configs {', '.join(chosen)}; "
        f"{repeats} repeats after {args.warmup} warm-up round(s)",
        flush=True,
    )
    start = time.perf_counter()
    matmul: list[dict] = []
    modes = cpu_modes(TrainConfig(), torch.device("cpu")) if args.cpu_modes else nullcontext()
    with modes:
        records = run_speed(
            chosen,
            repeats,
            warmup=args.warmup,
            peak_sizes=peak_sizes,
            matmul_records=matmul,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
    print()
    print(format_table(records))
    print("matmul: " + ", ".join(f"{m['size']} {m['gflops']:.1f}" for m in matmul) + " GFLOP/s")
    print(f"wall time {time.perf_counter() - start:.0f} s")
    if args.json:
        peak = max((m["gflops"] for m in matmul), default=None)
        write_json(
            args.json,
            {
                "torch": torch.__version__,
                "threads": threads,
                "cpu_modes": args.cpu_modes,
                "peak_gflops": peak,
                "matmul": matmul,
                "records": records,
            },
        )
        print(f"records written to {args.json}")
    return 0
