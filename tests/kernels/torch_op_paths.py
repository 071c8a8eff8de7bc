"""Shared by the Elman and GRU tests of a layer that runs torch's own op in inference: the
layer's outputs each way, and which way each layer call took."""

from __future__ import annotations

import torch

from rnnkit.kernels.backends import set_backend


def inference_paths(module, switch: str, ours, theirs, x, h0) -> tuple[list, tuple, tuple, tuple]:
    """``ours(x, h0)`` under ``torch.no_grad()`` with the ``switch`` at "auto" (torch's op where
    ``module.use_torch_op`` says so), then at "rnnkit" (the hand kernel), and ``theirs(x, h0)``
    (the torch.nn twin): (what each call of ``use_torch_op`` answered, then the three outputs)."""
    taken = []
    op = module.use_torch_op

    def spy(*args):
        taken.append(op(*args))
        return taken[-1]

    module.use_torch_op = spy
    try:
        with torch.no_grad():
            via_op = ours(x, h0)
            with set_backend(switch, "rnnkit"):
                via_kernel = ours(x, h0)
            reference = theirs(x, h0)
    finally:
        module.use_torch_op = op
    return taken, via_op, via_kernel, reference


def assert_all_close(dtype, *outputs) -> None:
    """Each of ``outputs`` (tuples of tensors) equal to the first: float64 to 1e-12, float32 to
    1e-5."""
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    for other in outputs[1:]:
        for a, b in zip(outputs[0], other, strict=True):
            torch.testing.assert_close(a, b, **tol)
