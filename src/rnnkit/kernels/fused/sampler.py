"""The batch-1 sampling step of a character model in one compiled call per token.

Model: token → embedding row → a stacked plain LSTM (torch.nn.LSTM's parameter names and
function: ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``; rnnkit.LSTM
and torch.nn.LSTM both qualify) → linear head → softmax(logits / temperature) → the next token,
drawn by inverse CDF from a uniform u: the k with Σ_{j<k} p_j ≤ u < Σ_{j≤k} p_j. One call of
``lstm_sample_f32`` in fused_step.cpp does all of it: per layer one matrix-vector product with
[W_ih | W_hh] (concatenated once, here) and the gate arithmetic, then the head and the softmax.

float32 on the CPU only. The weights are copied when the sampler is made: make a new one after
the model changes.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor, nn

from rnnkit.kernels import fused


class LSTMSampler:
    """``LSTMSampler(embedding, lstm, head)``: ``step(token, u)`` feeds one token and returns the
    next one; ``sample(prime, length)`` continues a prompt. The state (h, c) of every layer is
    carried between calls; ``reset()`` zeroes it. ``probs`` holds the last step's p (V,)."""

    def __init__(self, embedding: nn.Embedding, lstm: nn.Module, head: nn.Linear) -> None:
        lib = fused.library()
        if lib is None:
            raise RuntimeError("LSTMSampler needs the compiled step, which does not build here")
        for option in ("bidirectional", "peephole", "layer_norm", "proj_size"):
            if getattr(lstm, option, False):
                raise ValueError(f"lstm must be a plain one-direction LSTM, got {option} set")
        L, H = lstm.num_layers, lstm.hidden_size
        with torch.no_grad():
            self.emb = embedding.weight.detach().float().contiguous()  # (V_in, E)
            self.W = []  # per layer (4H, I_l + H): [W_ih | W_hh]
            self.b = []  # per layer (4H,): b_ih + b_hh, or None
            for k in range(L):
                w_ih, w_hh = getattr(lstm, f"weight_ih_l{k}"), getattr(lstm, f"weight_hh_l{k}")
                self.W.append(torch.cat([w_ih, w_hh], 1).float().contiguous())
                b_ih = getattr(lstm, f"bias_ih_l{k}", None)
                self.b.append(
                    None if b_ih is None else (b_ih + getattr(lstm, f"bias_hh_l{k}")).float()
                )
            self.Wo = head.weight.detach().float().contiguous()  # (V, H)
            self.bo = None if head.bias is None else head.bias.detach().float().contiguous()
        self.L, self.H, self.E = L, H, self.emb.shape[1]
        self.V = self.Wo.shape[0]
        self.h, self.c = torch.zeros(L, H), torch.zeros(L, H)
        self.probs = torch.zeros(self.V)
        self._scratch = torch.zeros(4 * H + max(self.E, H) + H)  # z, then [x; h]
        ptrs = ctypes.c_void_p * L
        self._W = ptrs(*(w.data_ptr() for w in self.W))
        self._b = ptrs(*(None if b is None else b.data_ptr() for b in self.b))
        self._fn = lib.lstm_sample_f32
        i64, p = ctypes.c_int64, ctypes.c_void_p
        self._fn.argtypes = [i64, i64, i64, i64, p, p, p, p, p, p, p, ctypes.c_double, i64]
        self._fn.argtypes += [ctypes.c_double, p, p]
        self._fn.restype = i64
        self._args = (L, H, self.V, self.E, self.emb.data_ptr(), self._W, self._b)
        self._tail = (self.Wo.data_ptr(), None if self.bo is None else self.bo.data_ptr())

    def reset(self) -> None:
        """Zero every layer's h and c."""
        self.h.zero_()
        self.c.zero_()

    def step(self, token: int, u: float, temperature: float = 1.0) -> int:
        """Feed ``token``; return the next token drawn with the uniform ``u`` in [0, 1)."""
        if not 0 <= token < self.emb.shape[0]:
            raise ValueError(f"token must be in [0, {self.emb.shape[0]}), got {token}")
        return self._fn(
            *self._args, self.h.data_ptr(), self.c.data_ptr(), *self._tail, temperature, token,
            u, self.probs.data_ptr(), self._scratch.data_ptr(),
        )  # fmt: skip

    def sample(
        self,
        prime: list[int],
        length: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> list[int]:
        """Continue ``prime`` (at least one token) by ``length`` tokens from the carried state."""
        if not prime:
            raise ValueError("prime must hold at least one token, got none")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        us: Tensor = torch.rand(len(prime) + length, generator=generator, dtype=torch.float64)
        u = us.tolist()
        for k, token in enumerate(prime):
            nxt = self.step(token, u[k], temperature)
        out = []
        for k in range(length):
            out.append(nxt)
            if k < length - 1:
                nxt = self.step(nxt, u[len(prime) + k], temperature)
        return out
