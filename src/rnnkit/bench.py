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
import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import rnnkit
from rnnkit.config import atomic_write
from rnnkit.errors import UserError

VOCAB = 65
TRAIN, INFER, SAMPLE = "train", "infer", "sample"
TORCH, RNNKIT, CUSTOM = "torch.nn", "rnnkit", "custom loop"
TORCH_NO_ONEDNN = "torch.nn -oneDNN"
RNNKIT_TORCH_STEP = "rnnkit torch-step"


# ---- the reference row: an LSTM as users write it -----------------------------------------
class CustomLSTM(nn.Module):
    """A multi-layer LSTM written plainly: a Python loop over ``xs.unbind(0)``, ``F.linear`` per
    step, trained through autograd. torch.nn.LSTM's gate order, initialisation and interface:
    ``forward(xs (T, B, I), hx=None) -> (ys, (h_n, c_n))``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1) -> None:
        super().__init__()
        self.hidden_size, self.num_layers = hidden_size, num_layers
        H, bound = hidden_size, 1.0 / math.sqrt(hidden_size)
        self.weight_ih, self.weight_hh = nn.ParameterList(), nn.ParameterList()
        self.bias_ih, self.bias_hh = nn.ParameterList(), nn.ParameterList()
        for l in range(num_layers):
            width = input_size if l == 0 else H
            self.weight_ih.append(nn.Parameter(torch.empty(4 * H, width).uniform_(-bound, bound)))
            self.weight_hh.append(nn.Parameter(torch.empty(4 * H, H).uniform_(-bound, bound)))
            self.bias_ih.append(nn.Parameter(torch.empty(4 * H).uniform_(-bound, bound)))
            self.bias_hh.append(nn.Parameter(torch.empty(4 * H).uniform_(-bound, bound)))

    def forward(self, xs: Tensor, hx: tuple[Tensor, Tensor] | None = None):
        B, H = xs.shape[1], self.hidden_size
        hs, cs = [], []
        for l in range(self.num_layers):
            if hx is None:
                h = c = xs.new_zeros(B, H)
            else:
                h, c = hx[0][l], hx[1][l]
            ys = []
            for x in xs.unbind(0):
                gates = F.linear(x, self.weight_ih[l], self.bias_ih[l]) + F.linear(
                    h, self.weight_hh[l], self.bias_hh[l]
                )
                i, f, g, o = gates.chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                ys.append(h)
            xs = torch.stack(ys)
            hs.append(h)
            cs.append(c)
        return xs, (torch.stack(hs), torch.stack(cs))


class WithoutOneDNN(nn.Module):
    """Runs the wrapped module with oneDNN (mkldnn) switched off. On the CPU, torch.nn.LSTM goes
    through oneDNN's RNN primitive, whose set-up on every call dominates at T = 1, B = 1 (the
    sampling config); this row shows torch's native kernel for comparison."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args):
        before = torch.backends.mkldnn.enabled
        torch.backends.mkldnn.enabled = False
        try:
            return self.module(*args)
        finally:
            torch.backends.mkldnn.enabled = before


class WithStepBackend(nn.Module):
    """Runs an rnnkit layer with one backend of its one-step path (``rnnkit.layers.stepper``):
    the sampling rows show the default (numpy on the CPU) and the torch backend side by side."""

    def __init__(self, module: nn.Module, backend: str) -> None:
        super().__init__()
        self.module, self.backend = module, backend

    def forward(self, *args):
        from rnnkit.layers import stepper

        before = stepper.BACKEND
        stepper.set_step_backend(self.backend)
        try:
            return self.module(*args)
        finally:
            stepper.set_step_backend(before)


# ---- rows, configs, FLOPs -------------------------------------------------------------------
Builder = Callable[[int, int, int], nn.Module]  # (input_size, hidden_size, num_layers)
ROWS: dict[tuple[str, str], Builder] = {  # (cell, impl): builder, in table order
    ("lstm", TORCH): lambda I, H, L: nn.LSTM(I, H, L),
    ("lstm", RNNKIT): lambda I, H, L: rnnkit.LSTM(I, H, L),
    ("gru", TORCH): lambda I, H, L: nn.GRU(I, H, L),
    ("gru", RNNKIT): lambda I, H, L: rnnkit.GRU(I, H, L),
    ("rnn_tanh", TORCH): lambda I, H, L: nn.RNN(I, H, L),
    ("rnn_tanh", RNNKIT): lambda I, H, L: rnnkit.RNN(I, H, L),
    ("lstm_peephole", RNNKIT): lambda I, H, L: rnnkit.LSTM(I, H, L, peephole=True),
    ("lstm_layernorm", RNNKIT): lambda I, H, L: rnnkit.LSTM(I, H, L, layer_norm=True),
    ("minimal_gru", RNNKIT): lambda I, H, L: rnnkit.MinimalGRU(I, H, L),
    ("jordan", RNNKIT): lambda I, H, L: rnnkit.JordanRNN(I, H, L),
    ("gru_reset_before", RNNKIT): lambda I, H, L: rnnkit.GRU(I, H, L, reset_after=False),
    ("lstm", CUSTOM): lambda I, H, L: CustomLSTM(I, H, L),
    ("lstm", TORCH_NO_ONEDNN): lambda I, H, L: WithoutOneDNN(nn.LSTM(I, H, L)),
    ("lstm", RNNKIT_TORCH_STEP): lambda I, H, L: WithStepBackend(rnnkit.LSTM(I, H, L), "torch"),
}
TWINS = (("lstm", TORCH), ("lstm", RNNKIT), ("gru", TORCH), ("gru", RNNKIT),
         ("rnn_tanh", TORCH), ("rnn_tanh", RNNKIT))  # fmt: skip
TABLE_ROWS = tuple(key for key in ROWS if key[1] not in (TORCH_NO_ONEDNN, RNNKIT_TORCH_STEP))
SAMPLE_ROWS = (("lstm", TORCH), ("lstm", TORCH_NO_ONEDNN), ("lstm", RNNKIT),
               ("lstm", RNNKIT_TORCH_STEP), *TWINS[2:], ("lstm", CUSTOM))  # fmt: skip

# multiply-adds per token of one layer's forward, as a multiple of H·(I+H) (jordan: see below)
GATES = {"rnn_tanh": 1, "lstm": 4, "lstm_peephole": 4, "lstm_layernorm": 4, "gru": 3,
         "gru_reset_before": 3, "minimal_gru": 2, "jordan": 1}  # fmt: skip


def layer_flops(cell: str, input_size: int, hidden_size: int) -> int:
    """Forward FLOPs per token of one layer: matrix products only, 2 per multiply-add.

    2·G·H·(I+H) with G gate blocks (rnn_tanh 1, gru 3, lstm 4, minimal_gru 2); the Jordan cell
    adds its output product W_hy (H×H, output size H): 2·H·(I+H) + 2·H·H."""
    I, H = input_size, hidden_size
    flops = 2 * GATES[cell] * H * (I + H)
    return flops + 2 * H * H if cell == "jordan" else flops


@dataclass(frozen=True)
class SpeedConfig:
    """One benchmark setting. ``input_size=None``: token ids through an embedding of width
    hidden_size; an int: random float inputs of that width. ``sample``: batch 1, T = characters
    generated per timed repeat. ``rows``: the (cell, impl) rows (default: all); ``infer``: also
    time forward-only for these rows."""

    name: str
    hidden_size: int
    num_layers: int
    T: int
    B: int
    vocab: int = VOCAB
    input_size: int | None = None
    sample: bool = False
    rows: tuple[tuple[str, str], ...] | None = None
    infer: bool = True

    @property
    def width(self) -> int:
        """The first recurrent layer's input width."""
        return self.hidden_size if self.input_size is None else self.input_size

    def describe(self) -> str:
        source = (
            f"vocab {self.vocab} → embedding {self.hidden_size}"
            if self.input_size is None
            else f"float inputs {self.input_size}"
        )
        shape = f"{source} → {self.num_layers}×{self.hidden_size} → linear {self.vocab}"
        if self.sample:
            return f"{shape}, batch 1, {self.T} chars per repeat"
        return f"{shape}, T {self.T}, B {self.B}"

    def row_keys(self) -> tuple[tuple[str, str], ...]:
        if self.rows is not None:
            return self.rows
        return SAMPLE_ROWS if self.sample else TABLE_ROWS

    def modes(self) -> tuple[str, ...]:
        if self.sample:
            return (SAMPLE,)
        return (TRAIN, INFER) if self.infer else (TRAIN,)


def forward_flops_per_token(cell: str, cfg: SpeedConfig) -> int:
    """Forward FLOPs per token: every recurrent layer plus the linear head (2·H·vocab)."""
    H = cfg.hidden_size
    layers = sum(layer_flops(cell, cfg.width if l == 0 else H, H) for l in range(cfg.num_layers))
    return layers + 2 * H * cfg.vocab


def flops_per_token(cell: str, cfg: SpeedConfig, mode: str) -> int:
    """Training counts 3× the forward matmul FLOPs; infer and sample 1×."""
    return forward_flops_per_token(cell, cfg) * (3 if mode == TRAIN else 1)


CONFIGS = {
    "A": SpeedConfig("A", hidden_size=512, num_layers=2, T=100, B=32),
    "B": SpeedConfig("B", hidden_size=128, num_layers=1, T=100, B=32),
    "C": SpeedConfig("C", hidden_size=1024, num_layers=1, T=50, B=128, input_size=256),
    "S": SpeedConfig("S", hidden_size=512, num_layers=2, T=100, B=1, sample=True),
}
QUICK_CONFIGS = {
    "B": CONFIGS["B"],
    "A-short": SpeedConfig("A-short", hidden_size=512, num_layers=2, T=25, B=32),
    "S": SpeedConfig("S", hidden_size=512, num_layers=2, T=50, B=1, sample=True),
}
PEAK_SIZES = ((1024, 1024, 1024), (2048, 2048, 2048))  # (M, K, N): M×K @ K×N
FULL_REPEATS, QUICK_REPEATS = 5, 3
NOISY_SHARE = 0.1  # warn when other processes used more than this share of the CPUs


# ---- the timed work ------------------------------------------------------------------------
def _workloads(cfg: SpeedConfig, cell: str, impl: str, seed: int) -> dict[str, Callable]:
    """{mode: a function that does one timed unit of work} for one row of one config."""
    torch.manual_seed(seed)
    rnn = ROWS[(cell, impl)](cfg.width, cfg.hidden_size, cfg.num_layers)
    head = nn.Linear(cfg.hidden_size, cfg.vocab)
    embed = nn.Embedding(cfg.vocab, cfg.hidden_size) if cfg.input_size is None else None
    gen = torch.Generator().manual_seed(seed)
    work: dict[str, Callable] = {}
    if cfg.sample:

        def sample() -> None:
            with torch.no_grad():
                token, state = torch.zeros(1, 1, dtype=torch.long), None
                for _ in range(cfg.T):
                    ys, state = rnn(embed(token), state)  # (1, 1, H): T = 1, B = 1
                    probs = head(ys[-1]).softmax(-1)
                    token = torch.multinomial(probs, 1, generator=gen)  # (1, 1)

        work[SAMPLE] = sample
        return work

    if embed is None:
        inputs = torch.randn(cfg.T, cfg.B, cfg.width, generator=gen)
        targets = torch.randint(0, cfg.vocab, (cfg.T, cfg.B), generator=gen)
        modules = [rnn, head]
    else:
        ids = torch.randint(0, cfg.vocab, (cfg.T + 1, cfg.B), generator=gen)
        inputs, targets = ids[:-1], ids[1:]  # next-character prediction
        modules = [embed, rnn, head]
    params = [p for m in modules for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)

    def loss() -> Tensor:
        xs = inputs if embed is None else embed(inputs)
        ys, _ = rnn(xs)
        return F.cross_entropy(head(ys).flatten(0, 1), targets.flatten())

    def train() -> None:
        opt.zero_grad(set_to_none=True)
        loss().backward()
        opt.step()

    def infer() -> None:
        with torch.no_grad():
            loss()

    work[TRAIN] = train
    if cfg.infer:
        work[INFER] = infer
    return work


def _matmul(size: tuple[int, int, int], seed: int) -> Callable:
    M, K, N = size
    gen = torch.Generator().manual_seed(seed)
    a, b = torch.randn(M, K, generator=gen), torch.randn(K, N, generator=gen)
    out = torch.empty(M, N)
    return lambda: torch.mm(a, b, out=out)


def _cpu_seconds() -> tuple[float, float] | None:
    """(CPU-seconds all processes have used on this machine, CPU-seconds this process has used),
    from /proc/stat and os.times(); None where /proc/stat is missing (not Linux)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


def _others_share(before, after, seconds: float) -> float | None:
    """The share of all CPUs that other processes used between two ``_cpu_seconds`` readings."""
    if before is None or after is None or seconds <= 0:
        return None
    others = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, others / (seconds * (os.cpu_count() or 1)))


def _summary(times: list[float]) -> tuple[float, float, float]:
    """(median, min, max) of a list of durations."""
    return statistics.median(times), min(times), max(times)


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
            for mode, fn in _workloads(cfg, cell, impl, seed).items():
                jobs[(cfg.name, cell, impl, mode)] = fn
        sizes = list(peak_sizes)
        if not cfg.sample:
            sizes.append((cfg.T * cfg.B, cfg.width, 4 * cfg.hidden_size))
        for size in dict.fromkeys(sizes):
            jobs[("matmul", size)] = _matmul(size, seed)
        keys = list(jobs)
        for round_ in range(warmup + repeats):
            if round_ == warmup:
                cpu_before, timed_start = _cpu_seconds(), time.perf_counter()
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
        others[cfg.name] = _others_share(
            cpu_before, _cpu_seconds(), time.perf_counter() - timed_start
        )
        del jobs

    peaks = []
    for (M, K, N), ts in mm_times.items():
        med, lo, hi = _summary(ts)
        flops = 2 * M * K * N
        peaks.append({
            "size": f"{M}x{K}x{N}", "gflops": flops / med / 1e9, "min_gflops": flops / hi / 1e9,
            "max_gflops": flops / lo / 1e9, "repeats": len(ts),
        })  # fmt: skip
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
                med, lo, hi = _summary(timings[key])
                tokens = cfg.T * cfg.B
                twin = (cell, TORCH) if (cell, TORCH) in ROWS else ("lstm", TORCH)
                twin_key = (cfg.name, *twin, mode)
                ratio = medians[twin_key] / med if twin_key in medians else None
                fpt = flops_per_token(cell, by_name[cfg.name], mode)
                gflops = fpt * tokens / med / 1e9
                records.append({
                    "config": cfg.name, "cell": cell, "impl": impl, "mode": mode,
                    "tokens_per_s": tokens / med, "min_tokens_per_s": tokens / hi,
                    "max_tokens_per_s": tokens / lo, "ratio": ratio,
                    "ratio_to": f"{twin[0]} {twin[1]}", "gflops": gflops,
                    "pct_peak": 100.0 * gflops / peak, "peak_gflops": peak,
                    "flops_per_token": fpt, "description": cfg.describe(),
                    "input_size": cfg.width, "hidden_size": cfg.hidden_size,
                    "num_layers": cfg.num_layers, "T": cfg.T, "B": cfg.B, "vocab": cfg.vocab,
                    "repeats": len(timings[key]), "seconds": timings[key],
                    "others_cpu_share": others[cfg.name],
                })  # fmt: skip
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


def write_json(path: Path, records: list[dict], matmul: list[dict], threads: int) -> None:
    peak = max((m["gflops"] for m in matmul), default=None)
    payload = {
        "torch": torch.__version__, "threads": threads, "peak_gflops": peak,
        "matmul": matmul, "records": records,
    }  # fmt: skip
    text = json.dumps(payload, indent=1) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))  # UserError naming the file


# ---- the command -----------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # a one-line UserError instead of usage + exit
        raise UserError(f"{message} (see rnnkit bench speed --help)")


def _config_list() -> str:
    return "\n".join(f"  {name}: {cfg.describe()}" for name, cfg in CONFIGS.items())


def speed_parser() -> argparse.ArgumentParser:
    quick = "\n".join(f"  {n:8} {c.describe()}" for n, c in QUICK_CONFIGS.items())
    full = "\n".join(f"  {n:8} {c.describe()}" for n, c in CONFIGS.items())
    p = _Parser(
        prog="rnnkit bench speed",
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
matmuls only, training 3x the forward. Details: the docstring of rnnkit.bench.""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="a subset, fewer repeats (under 2 min)")
    p.add_argument("--json", metavar="PATH", help="write every record to this JSON file")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument(
        "--repeats", type=int, default=None,
        help=f"timed rounds per config (default: {FULL_REPEATS}, quick {QUICK_REPEATS})",
    )  # fmt: skip
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default: 1)")
    p.add_argument(
        "--configs", default=None,
        help=f"comma-separated subset of {','.join(CONFIGS)} (default: all; with --quick, "
        "of the quick set)",
    )  # fmt: skip
    return p


def main_speed(
    argv: list[str],
    *,
    configs: dict[str, SpeedConfig] | None = None,
    peak_sizes: tuple[tuple[int, int, int], ...] = PEAK_SIZES,
) -> int:
    """``rnnkit bench speed [options]``; ``configs`` and ``peak_sizes`` replace the built-in
    ones (for tests)."""
    try:
        args = speed_parser().parse_args(argv)
    except SystemExit as stop:  # --help
        return int(stop.code or 0)
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    repeats = args.repeats
    if repeats is None:
        repeats = QUICK_REPEATS if args.quick else FULL_REPEATS
    if repeats < 1 or args.warmup < 0:
        raise UserError("--repeats must be at least 1 and --warmup at least 0")
    if args.json:  # refused now, not after minutes of measuring
        from rnnkit.plots import check_writable

        check_writable(args.json, "--json")
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
    records = run_speed(
        chosen, repeats, warmup=args.warmup, peak_sizes=peak_sizes, matmul_records=matmul,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )  # fmt: skip
    print()
    print(format_table(records))
    print("matmul: " + ", ".join(f"{m['size']} {m['gflops']:.1f}" for m in matmul) + " GFLOP/s")
    print(f"wall time {time.perf_counter() - start:.0f} s")
    if args.json:
        write_json(Path(args.json), records, matmul, threads)
        print(f"records written to {args.json}")
    return 0


def main_memory(argv: list[str]) -> int:
    from rnnkit.bench_memory import main_memory as run

    return run(argv)


BENCHMARKS = {
    "speed": (main_speed, "tokens/s of rnnkit's layers against torch.nn"),
    "memory": (main_memory, "peak training memory over long sequences, and checkpointing"),
}
