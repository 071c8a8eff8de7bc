"""Choosing the next token and scoring sequences, one step at a time with carried state.

- ``choose``: the policies (``Greedy``, ``Sample``: temperature, top-k, top-p) and the filters.
- ``loop``: the one choose-and-feed-back loop (``generate``; ``generate_steps`` yields each
  step), its forms for language models (``sample_batch``, ``sample_sequence``; one token at a
  time ``sample_sequence_steps``) and encoder-decoders (``decode_batch``), and
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
    generate_steps,
    sample_batch,
    sample_sequence,
    sample_sequence_steps,
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
    "generate_steps",
    "length_penalty",
    "policy",
    "sample_batch",
    "sample_sequence",
    "sample_sequence_steps",
    "select_rows",
    "sequence_log_prob",
]
