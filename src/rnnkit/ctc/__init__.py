"""Connectionist temporal classification: the loss, decoders, forced alignment, error rates.

``ctc_loss`` (torch's engine behind one-line checks); ``greedy_decode`` (best path) and
``beam_search`` (prefix beam search with language-model shallow fusion, ``CharLM`` stepping a
trained character LM); ``forced_align`` (Viterbi); ``cer``, ``wer``, ``edit_distance``,
``edit_alignment`` and ``error_breakdown`` (where the errors are).
Equations and contracts in each function; the guide is ``docs/ctc.md``.
"""

from rnnkit.ctc.align import forced_align
from rnnkit.ctc.decode import beam_search, collapse, greedy_decode
from rnnkit.ctc.lm import CharLM
from rnnkit.ctc.loss import ctc_loss, required_frames
from rnnkit.ctc.metrics import (
    cer,
    edit_alignment,
    edit_distance,
    edit_distances,
    error_breakdown,
    wer,
)

__all__ = [
    "CharLM",
    "beam_search",
    "cer",
    "collapse",
    "ctc_loss",
    "edit_alignment",
    "edit_distance",
    "edit_distances",
    "error_breakdown",
    "forced_align",
    "greedy_decode",
    "required_frames",
    "wer",
]
