"""Connectionist temporal classification: the loss, decoders, forced alignment, error rates.

``ctc_loss`` (torch's engine behind one-line checks), ``greedy_decode`` (best path),
``beam_search`` (prefix beam search, language-model fusion), ``collapse``. Equations and
contracts in each function; the guide is ``docs/ctc.md``.
"""

from rnnkit.ctc.decode import beam_search, collapse, greedy_decode
from rnnkit.ctc.loss import ctc_loss

__all__ = ["beam_search", "collapse", "ctc_loss", "greedy_decode"]
