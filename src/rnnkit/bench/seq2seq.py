"""``rnnkit bench seq2seq``: one training step of the attention seq2seq presets, three ways.

The model of each preset (``rnnkit.tasks``' g2p, translate and dates ``default``: a GRU
encoder-decoder with Bahdanau attention) on a synthetic batch of its size, bucketed as the
task's batcher makes them: B sources of one length S (about the data's median, <eos> included),
targets of lengths drawn from [T/2, T]. A step is forward, the masked cross-entropy (label
smoothing as the preset), backward and AdamW's update. Rows:

- ``rnnkit kernel``: ``Seq2Seq`` with the teacher-forced decoder as one hand-derived Function
  (``rnnkit.kernels.attention_decoder``), what training runs;
- ``rnnkit step loop``: the same model, ``Decoder.use_kernel = False`` (the step loop under
  autograd, the reference);
- ``plain PyTorch``: the model as users write it from the PyTorch tutorials, the same sizes:
  ``nn.GRU`` encoder over a packed batch, a ``nn.GRUCell`` decoder stepped in Python with
  additive attention, the output layer once over all steps (``PlainSeq2Seq``).

The rows run in turn, round-robin, ``--repeats`` times after two warm-ups, one thread; the
figures are medians of the wall-clock and the process's CPU time (the steadier one on a shared
machine), and each row's ratio to the plain-PyTorch row.

    OMP_NUM_THREADS=1 rnnkit bench seq2seq [--presets g2p,translate,dates] [--repeats N]
        [--json FILE]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from rnnkit.bench.common import check_json_target, write_json
from rnnkit.errors import UserError

# preset: (source vocabulary, target vocabulary, B, S, T): vocabularies about the data's
# (letters and phones; the translate preset's max_vocab), S and T a typical bucketed batch's
SHAPES = {
    "g2p": (32, 72, 64, 9, 12),
    "translate": (5000, 5000, 64, 25, 36),
    "dates": (40, 16, 64, 20, 11),
}
ROWS = ("rnnkit kernel", "rnnkit step loop", "plain PyTorch")


class PlainSeq2Seq(nn.Module):
    """A GRU encoder-decoder with Bahdanau attention written with torch.nn's building blocks,
    as the PyTorch tutorials write it: the same equations and sizes as ``rnnkit.Seq2Seq`` with
    a bidirectional encoder, one decoder layer, ``context init`` and ``attention bahdanau``."""

    def __init__(self, V_src: int, V_tgt: int, E: int, H: int, layers: int, dropout: float):
        super().__init__()
        self.src_embedding = nn.Embedding(V_src, E, padding_idx=0)
        self.encoder = nn.GRU(E, H // 2, layers, bidirectional=True, dropout=dropout)
        self.bridge = nn.Linear(H, H)
        self.tgt_embedding = nn.Embedding(V_tgt, E, padding_idx=0)
        self.query, self.keys = nn.Linear(H, H, bias=False), nn.Linear(H, H)
        self.v = nn.Linear(H, 1, bias=False)
        self.cell = nn.GRUCell(E + H, H)
        self.combine, self.head = nn.Linear(2 * H, H), nn.Linear(H, V_tgt)
        self.drop = nn.Dropout(dropout)

    def forward(self, src: Tensor, lengths: Tensor, tgt_in: Tensor) -> Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(
            self.drop(self.src_embedding(src)), lengths.cpu(), enforce_sorted=False
        )
        out, h_n = self.encoder(packed)
        memory = nn.utils.rnn.pad_packed_sequence(out)[0].transpose(0, 1)  # (B, S, H)
        mask = torch.arange(memory.shape[1]) < lengths[:, None]
        keys = self.keys(memory)
        h = torch.tanh(self.bridge(torch.cat([h_n[-2], h_n[-1]], dim=-1)))
        outputs = []
        for y in self.drop(self.tgt_embedding(tgt_in)).unbind(0):
            e = self.v(torch.tanh(keys + self.query(h).unsqueeze(1))).squeeze(-1)
            alpha = torch.softmax(e.masked_fill(~mask, float("-inf")), dim=-1)
            c = torch.bmm(alpha.unsqueeze(1), memory).squeeze(1)
            h = self.cell(torch.cat([y, c], dim=-1), h)
            outputs.append(torch.tanh(self.combine(torch.cat([h, c], dim=-1))))
        return self.head(self.drop(torch.stack(outputs)))


def setup(name: str) -> tuple[dict[str, Callable[[], None]], tuple[int, int, int]]:
    """{row: one training step} for a preset's model and batch, and its (B, S, T)."""
    from rnnkit.data.pairs import make_batch
    from rnnkit.seq2seq import Seq2Seq, sequence_loss
    from rnnkit.tasks import get_task

    cfg = get_task(name).presets["default"]().model
    V_src, V_tgt, B, S, T = SHAPES[name]
    g = torch.Generator().manual_seed(1)
    sources = torch.randint(4, V_src, (B, S - 1), generator=g).tolist()
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    lengths[0] = T
    targets = [torch.randint(4, V_tgt, (int(n) - 1,), generator=g).tolist() for n in lengths]
    batch = make_batch(sources, targets, range(B))
    torch.manual_seed(0)
    model = Seq2Seq(V_src, V_tgt, cfg).train()
    E, H, L = cfg.embedding_size, cfg.hidden_size, cfg.encoder_layers
    plain = PlainSeq2Seq(V_src, V_tgt, E, H, L, cfg.dropout).train()
    optimizers = {m: torch.optim.AdamW(m.parameters(), 1e-3) for m in (model, plain)}

    def step(net: nn.Module, kernel: bool = True) -> None:
        if net is model:
            model.decoder.use_kernel = kernel
            logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in)
        else:
            logits = plain(batch.src, batch.src_lengths, batch.tgt_in)
        loss, n = sequence_loss(logits, batch.tgt_out, cfg.label_smoothing)
        optimizers[net].zero_grad(set_to_none=True)
        (loss / n).backward()
        optimizers[net].step()

    steps = {
        "rnnkit kernel": lambda: step(model, True),
        "rnnkit step loop": lambda: step(model, False),
        "plain PyTorch": lambda: step(plain),
    }
    return steps, (B, S, T)


def measure(name: str, repeats: int) -> dict:
    steps, (B, S, T) = setup(name)
    for _ in range(2):  # warm-up
        for fn in steps.values():
            fn()
    wall: dict[str, list[float]] = {row: [] for row in steps}
    cpu: dict[str, list[float]] = {row: [] for row in steps}
    for _ in range(repeats):
        for row, fn in steps.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[row].append(time.perf_counter() - start)
            cpu[row].append(time.process_time() - start_cpu)
    out: dict = {"B": B, "S": S, "T": T}
    for clock, times in (("wall", wall), ("cpu", cpu)):
        medians = {row: statistics.median(t) for row, t in times.items()}
        out[clock] = {
            row: {"seconds": m, "vs_plain": m / medians["plain PyTorch"]}
            for row, m in medians.items()
        }
    return out


def format_rows(results: dict) -> str:
    lines = ["| preset (B, S, T) | row | CPU ms a step | vs plain PyTorch |", "|---|---|---|---|"]
    for name, r in results.items():
        for row, c in r["cpu"].items():
            lines.append(
                f"| {name} ({r['B']}, {r['S']}, {r['T']}) | {row} | {c['seconds'] * 1000:.1f} | "
                f"{c['vs_plain']:.2f}x |"
            )
    return "\n".join(lines)


def main_seq2seq(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="rnnkit bench seq2seq", description=__doc__.splitlines()[0])
    p.add_argument("--presets", default=",".join(SHAPES), help="comma-separated preset names")
    p.add_argument("--repeats", type=int, default=20, help="timed repeats per row")
    p.add_argument("--json", default=None, help="write the results here")
    a = p.parse_args(argv)
    if a.repeats < 1:
        raise UserError(f"--repeats must be an integer >= 1, got {a.repeats}")
    names = [n for n in a.presets.split(",") if n]
    unknown = [n for n in names if n not in SHAPES]
    if unknown or not names:
        raise UserError(f"--presets takes some of {', '.join(SHAPES)}, got {a.presets!r}")
    if a.json:
        check_json_target(a.json)  # before minutes of timing, not after
    torch.set_num_threads(1)
    results = {name: measure(name, a.repeats) for name in names}
    print(format_rows(results))
    if a.json:
        record = {"step": "forward + loss + backward + AdamW", "threads": 1, "presets": results}
        write_json(a.json, record)
    return 0
