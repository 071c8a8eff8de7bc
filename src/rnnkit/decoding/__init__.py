"""Choosing the next token and scoring sequences, one step at a time with carried state.

- ``choose``: the policies (``Greedy``, ``Sample``: temperature, top-k, top-p) and the filters.
- ``loop``: the one choose-and-feed-back loop (``generate``), its forms for language models
  (``sample_batch``, ``sample_sequence``) and encoder-decoders (``decode_batch``), and
  ``sequence_log_prob``.
- ``beam``: beam search.

Every name is importable from ``rnnkit.decoding`` itself.
"""

from rnnkit.decoding.beam import beam_search, length_penalty, select_rows
from rnnkit.decoding.choose import (
    TOP_P_TOLERANCE,
    Choose,
    Greedy,
    Sample,
    check_sampling_options,
    choose_next,
    filter_logits,
    policy,
)
from rnnkit.decoding.loop import (
    StepFn,
    decode_batch,
    generate,
    sample_batch,
    sample_sequence,
    sequence_log_prob,
)

__all__ = [
    "TOP_P_TOLERANCE",
    "Choose",
    "Greedy",
    "Sample",
    "StepFn",
    "beam_search",
    "check_sampling_options",
    "choose_next",
    "decode_batch",
    "filter_logits",
    "generate",
    "length_penalty",
    "policy",
    "sample_batch",
    "sample_sequence",
    "select_rows",
    "sequence_log_prob",
]
