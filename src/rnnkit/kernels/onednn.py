"""A kernel's recurrent products through oneDNN with the weight packed once per sequence.

Every step of a hand-derived kernel multiplies the state by the same weight: W_hh h_{t-1} in the
forward recursion, δ W_hh in the backward one. ``torch.addmm`` repacks its operands on every
call; oneDNN's matrix product (``torch.ops.mkldnn._linear_pointwise``, the call torch's own
compiler emits for linear layers on the CPU) takes the weight reordered once into its blocked
layout for a given number of rows (``torch.ops.mkldnn._reorder_linear_weight``), and its float32
kernel is itself faster than the default one on some CPUs. Same function, float32 arithmetic
throughout: only the order of the additions differs.

``StepProduct(W, rows)`` computes x Wᵀ (+ b) for x of ``rows`` rows. It applies to float32
tensors on the CPU where oneDNN is present, the switch ``"onednn"`` is ``"auto"``
(``rnnkit.kernels.backends``) and a product has at least ``MIN_MACS`` multiply-adds (so that
small products, such as ``rnnkit bench speed``'s config B at 32 × 128 × 384, keep addmm: at
that size a packed call has little to save, and a first scratch measurement found none);
everywhere else, and if oneDNN refuses the weight, it is ``torch.addmm``, so float64 gradient
checks and other devices keep the plain product.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.kernels.backends import get_backend


def _available() -> bool:
    ops = torch.ops.mkldnn
    return (
        torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and hasattr(ops, "_linear_pointwise")
        and hasattr(ops, "_reorder_linear_weight")
    )


def _reorder(W: Tensor, rows: int) -> Tensor:
    """W (N, K) in oneDNN's blocked layout for products of ``rows`` rows."""
    return torch.ops.mkldnn._reorder_linear_weight(W, rows)


MIN_MACS = 2**24  # rows × N × K of one product


def applies(W: Tensor, rows: int, min_macs: int = MIN_MACS) -> bool:
    """Whether products of ``rows`` rows with the weight ``W`` go through oneDNN (see the
    module docstring; a kernel whose products gain less may ask for a larger ``min_macs``)."""
    return (
        rows * W.numel() >= min_macs
        and W.dtype == torch.float32
        and W.device.type == "cpu"
        and get_backend("onednn") == "auto"
        and _available()
    )


class StepProduct:
    """x ↦ x Wᵀ + b (b optional) for a fixed W (N, K) and inputs of ``rows`` rows, many times.

    ``into(x, out, add=None)`` writes x Wᵀ + b (+ ``add``) into ``out`` (rows, N).
    """

    def __init__(
        self, W: Tensor, rows: int, bias: Tensor | None = None, min_macs: int = MIN_MACS
    ) -> None:
        self.W, self.bias = W, bias
        self.packed = None
        if applies(W, rows, min_macs):
            try:
                self.packed = _reorder(W.detach().contiguous(), rows)
            except RuntimeError:  # a layout or build oneDNN does not take: the plain product
                self.packed = None
        self.W_t = W.t()

    def into(self, x: Tensor, out: Tensor, add: Tensor | None = None) -> Tensor:
        if self.packed is None:
            base = self.bias if add is None else add
            if base is None:
                return torch.mm(x, self.W_t, out=out)
            torch.addmm(base, x, self.W_t, out=out)
            if add is not None and self.bias is not None:
                out.add_(self.bias)
            return out
        y = torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        if add is None:
            return out.copy_(y)
        return torch.add(add, y, out=out)
