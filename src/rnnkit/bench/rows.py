"""The rows and configs of ``rnnkit bench speed``: what each row builds, the work it times in
each mode, and its FLOPs (see ``rnnkit.bench.speed`` for what is measured and how)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import rnnkit
from rnnkit.bench.common import VOCAB
from rnnkit.bench.models import CustomLSTM, WithoutOneDNN, WithStepBackend

TRAIN, INFER, SAMPLE = "train", "infer", "sample"
TORCH, RNNKIT, CUSTOM = "torch.nn", "rnnkit", "custom loop"
TORCH_NO_ONEDNN = "torch.nn -oneDNN"
RNNKIT_TORCH_STEP = "rnnkit torch-step"


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
TWINS = (
    ("lstm", TORCH),
    ("lstm", RNNKIT),
    ("gru", TORCH),
    ("gru", RNNKIT),
    ("rnn_tanh", TORCH),
    ("rnn_tanh", RNNKIT),
)
TABLE_ROWS = tuple(key for key in ROWS if key[1] not in (TORCH_NO_ONEDNN, RNNKIT_TORCH_STEP))
SAMPLE_ROWS = (
    ("lstm", TORCH),
    ("lstm", TORCH_NO_ONEDNN),
    ("lstm", RNNKIT),
    ("lstm", RNNKIT_TORCH_STEP),
    *TWINS[2:],
    ("lstm", CUSTOM),
)

# multiply-adds per token of one layer's forward, as a multiple of H·(I+H) (jordan: see below)
GATES = {
    "rnn_tanh": 1,
    "lstm": 4,
    "lstm_peephole": 4,
    "lstm_layernorm": 4,
    "gru": 3,
    "gru_reset_before": 3,
    "minimal_gru": 2,
    "jordan": 1,
}


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
def workloads(cfg: SpeedConfig, cell: str, impl: str, seed: int) -> dict[str, Callable]:
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
