"""Connectionist temporal classification: the loss, decoders, forced alignment, error rates.

``ctc_loss`` (torch's engine behind one-line checks), ``greedy_decode`` (best path),
``collapse``. Equations and contracts in each function; the guide is ``docs/ctc.md``.
"""

from rnnkit.ctc.decode import collapse, greedy_decode
from rnnkit.ctc.loss import ctc_loss

__all__ = ["collapse", "ctc_loss", "greedy_decode"]
