"""The command line's options of the sequence-to-sequence model (``--model.KEY``), for the dates,
g2p and translate tasks: the dataclass, its choices derived from the library's lists, and the
check that words the library's errors as the option they came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rnnkit.config import option
from rnnkit.errors import UserError
from rnnkit.seq2seq import ATTENTIONS, CELLS, CONTEXTS, check_seq2seq_options

Cell = Literal[tuple(CELLS)]  # type: ignore[valid-type]
Attention = Literal[ATTENTIONS]  # type: ignore[valid-type]
Context = Literal[CONTEXTS]  # type: ignore[valid-type]


@dataclass
class Seq2SeqConfig:
    cell: Cell = option("gru", "the recurrent cell")
    embedding_size: int = option(64, "E, the source and target embedding widths")
    hidden_size: int = option(128, "H, the decoder's width (and the memory's: see encoder_size)")
    encoder_size: int = option(0, "the encoder's width per direction (0: H / directions)")
    encoder_layers: int = option(1, "stacked encoder layers")
    decoder_layers: int = option(1, "stacked decoder layers")
    bidirectional: bool = option(True, "a bidirectional encoder")
    attention: Attention = option(
        "bahdanau", "attention over the encoder outputs (none: a fixed context)"
    )
    context: Context = option(
        "init", "the encoder summary as initial decoder state, as input every step, or both"
    )
    attention_size: int = option(0, "A, Bahdanau's scoring width (0: H)")
    input_feeding: bool = option(
        True,
        "luong attention: feed h̃_{t-1} into the next step (Luong et al. 2015); false: "
        "teacher-forced training runs the decoder as a whole sequence (faster)",
    )
    dropout: float = option(0.0, "dropout on embeddings, between layers and before the output")
    label_smoothing: float = option(
        0.0,
        "training loss: the share ε of each target's probability spread evenly over the "
        "vocabulary (Szegedy et al. 2016); the validation loss is the plain cross-entropy",
    )


def check_seq2seq_config(cfg: Seq2SeqConfig) -> None:
    """The library's check (``rnnkit.seq2seq.check_seq2seq_options``), its error worded as the
    option: "option 'model.hidden_size' must be >= 1, got 0"."""
    try:
        check_seq2seq_options(cfg)
    except ValueError as e:
        name, _, rest = str(e).partition(" ")
        raise UserError(f"option 'model.{name}' {rest}") from None
