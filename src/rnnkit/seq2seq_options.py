"""The options of ``rnnkit.seq2seq``'s models: the cells, contexts and attention kinds they take,
the special token ids, and the check of an options object (``check_seq2seq_options``)."""

from __future__ import annotations

from typing import Any

from rnnkit.attention import ATTENTION
from rnnkit.cells import REGISTRY, cell_names

# the cells whose output is their hidden state (Jordan's is a projection of it)
CELLS = {name: REGISTRY[name].cls for name in cell_names(output_projection=False)}
CONTEXTS = ("none", "init", "input", "both")
ATTENTIONS = ("none", *ATTENTION)
PAD, UNK, BOS, EOS = 0, 1, 2, 3  # the special token ids of rnnkit.data.pairs vocabularies


def check_seq2seq_options(cfg: Any) -> None:
    """Refuse impossible options of ``Seq2Seq`` with a ``ValueError`` whose message starts with
    the option's name, e.g. "hidden_size must be >= 1, got 0" (the command line words it as
    the option: ``rnnkit.tasks.seq2seq_config.check_seq2seq_config``)."""
    for name, choices in (("cell", CELLS), ("attention", ATTENTIONS), ("context", CONTEXTS)):
        if getattr(cfg, name) not in choices:
            raise ValueError(
                f"{name} must be one of {', '.join(choices)}, got {getattr(cfg, name)!r}"
            )
    for name in ("embedding_size", "hidden_size", "encoder_layers", "decoder_layers"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    for name in ("encoder_size", "attention_size"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    for name in ("dropout", "label_smoothing"):
        if not 0 <= getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be in [0, 1), got {getattr(cfg, name)}")
    if cfg.attention == "none" and cfg.context == "none":
        raise ValueError(
            "context none with attention none leaves the decoder blind to the source: choose "
            "init, input or both"
        )
    after = [k for k, cls in ATTENTION.items() if not cls.queries_before_step]
    if not cfg.input_feeding and cfg.attention not in after:
        raise ValueError(
            f"input_feeding false applies to attention queried after the step "
            f"({', '.join(after)}), not attention {cfg.attention}"
        )
    D = 2 if cfg.bidirectional else 1
    if cfg.encoder_size == 0 and cfg.hidden_size % D:
        raise ValueError(
            f"hidden_size must be even for a bidirectional encoder with encoder_size 0, "
            f"got {cfg.hidden_size}"
        )
    memory = D * (cfg.encoder_size or cfg.hidden_size // D)
    if (
        cfg.attention != "none"
        and ATTENTION[cfg.attention].same_widths
        and memory != cfg.hidden_size
    ):
        raise ValueError(
            f"attention {cfg.attention} needs the memory width ({memory}) == hidden_size "
            f"({cfg.hidden_size}): set encoder_size 0"
        )
