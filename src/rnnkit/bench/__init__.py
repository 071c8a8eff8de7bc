"""``rnnkit bench``: speed and memory of rnnkit's layers side by side with torch.nn's.

Tooling, not library: nothing in rnnkit imports it but the command line.

- ``rnnkit.bench.speed``: ``rnnkit bench speed``, tokens/s (``rows``: what each row times;
  ``models``: the reference LSTM and backend switches);
- ``rnnkit.bench.memory``: ``rnnkit bench memory``, peak training memory, each row in a fresh
  process;
- ``rnnkit.bench.seq2seq``: ``rnnkit bench seq2seq``, the attention seq2seq presets' training
  step: the decoder kernel, the step loop and a plain-PyTorch model;
- ``rnnkit.bench.common``: what both share (parser, JSON records, CPU share of others).
"""

from __future__ import annotations

from rnnkit.bench.models import CustomLSTM, WithoutOneDNN, WithStepBackend
from rnnkit.bench.rows import (
    CONFIGS,
    CUSTOM,
    FULL_REPEATS,
    GATES,
    INFER,
    NOISY_SHARE,
    PEAK_SIZES,
    QUICK_CONFIGS,
    QUICK_REPEATS,
    RNNKIT,
    RNNKIT_TORCH_STEP,
    ROWS,
    SAMPLE,
    SAMPLE_ROWS,
    TABLE_ROWS,
    TORCH,
    TORCH_NO_ONEDNN,
    TRAIN,
    TWINS,
    VOCAB,
    SpeedConfig,
    flops_per_token,
    forward_flops_per_token,
    layer_flops,
)
from rnnkit.bench.speed import (
    format_summary,
    format_table,
    main_speed,
    run_speed,
    speed_parser,
)


def main_memory(argv: list[str]) -> int:
    """``rnnkit bench memory [options]`` (``rnnkit.bench.memory``, imported on use)."""
    from rnnkit.bench.memory import main_memory as run

    return run(argv)


def main_seq2seq(argv: list[str]) -> int:
    """``rnnkit bench seq2seq [options]`` (``rnnkit.bench.seq2seq``, imported on use)."""
    from rnnkit.bench.seq2seq import main_seq2seq as run

    return run(argv)


BENCHMARKS = {
    "speed": (main_speed, "tokens/s of rnnkit's layers against torch.nn"),
    "memory": (main_memory, "peak training memory over long sequences, and checkpointing"),
    "seq2seq": (main_seq2seq, "a seq2seq preset's training step: kernel, step loop, plain PyTorch"),
}

__all__ = [
    "BENCHMARKS",
    "CONFIGS",
    "CUSTOM",
    "FULL_REPEATS",
    "GATES",
    "INFER",
    "NOISY_SHARE",
    "PEAK_SIZES",
    "QUICK_CONFIGS",
    "QUICK_REPEATS",
    "RNNKIT",
    "RNNKIT_TORCH_STEP",
    "ROWS",
    "SAMPLE",
    "SAMPLE_ROWS",
    "TABLE_ROWS",
    "TORCH",
    "TORCH_NO_ONEDNN",
    "TRAIN",
    "TWINS",
    "VOCAB",
    "CustomLSTM",
    "SpeedConfig",
    "WithStepBackend",
    "WithoutOneDNN",
    "flops_per_token",
    "format_summary",
    "format_table",
    "forward_flops_per_token",
    "layer_flops",
    "main_memory",
    "main_seq2seq",
    "main_speed",
    "run_speed",
    "speed_parser",
]
