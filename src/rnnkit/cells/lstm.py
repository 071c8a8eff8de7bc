"""The LSTM cell, with peephole connections and layer normalisation as options.

Hochreiter & Schmidhuber, "Long short-term memory", 1997; forget gate: Gers et al. 2000;
peepholes: Gers & Schmidhuber 2000; layer normalisation: Ba, Kiros & Hinton 2016 (eq. 20-22).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.cells.base import Cell, check_size

LN_EPS = 1e-5


def layer_norm(a: Tensor, gain: Tensor, bias: Tensor | None = None) -> Tensor:
    """(a - mean) / std over the last dimension, times ``gain`` (plus ``bias``)."""
    # gain.shape (= a.shape[-1:]): a constant in a traced graph, as ONNX's LayerNormalization needs
    return F.layer_norm(a, gain.shape, gain, bias, LN_EPS)


class LSTMCell(Cell):
    r"""One LSTM step. Gate order i, f, g, o as in ``torch.nn.LSTMCell`` (equal to it by default).

        i = σ(W_ii x + b_ii + W_hi h + b_hi [+ w_ci ⊙ c])
        f = σ(W_if x + b_if + W_hf h + b_hf [+ w_cf ⊙ c])
        g = tanh(W_ig x + b_ig + W_hg h + b_hg)
        c' = f ⊙ c + i ⊙ g
        o = σ(W_io x + b_io + W_ho h + b_ho [+ w_co ⊙ c'])
        h' = o ⊙ tanh(c')

    Options:
        peephole: the bracketed terms; diagonal weights weight_ci, weight_cf, weight_co (H,).
            The input and forget gates see c_{t-1}, the output gate sees c_t.
        layer_norm: Ba et al. (2016): the gate pre-activations are
            LN(W_ih x) ⊙ γ_ih + LN(W_hh h) ⊙ γ_hh + b_ih + b_hh, each LN over all 4H of them,
            and h' = o ⊙ tanh(LN(c') ⊙ γ_c + β_c). Gains weight_ln_ih (4H,), weight_ln_hh (4H,),
            weight_ln_c (H,) start at 1, bias_ln_c (H,) at 0; b_ih and b_hh are the β of the
            gate norms.
        forget_bias: if given, b_if = forget_bias and b_hf = 0 at initialisation
            (Jozefowicz et al. 2015 recommend 1.0); otherwise torch's uniform initialisation.

    Shapes: x (B, I); h, c (B, H). Returns (h', (h', c')).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        peephole: bool = False,
        layer_norm: bool = False,
        forget_bias: float | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        H = hidden_size
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = self.output_size = check_size("hidden_size", hidden_size)
        self.state_sizes = (H, H)
        if forget_bias is not None and not bias:
            raise ValueError("forget_bias needs bias=True")
        self.peephole, self.layer_norm, self.forget_bias = peephole, layer_norm, forget_bias
        self.weight_ih = nn.Parameter(torch.empty(4 * H, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(4 * H, H, **kw))
        self.bias_ih = nn.Parameter(torch.empty(4 * H, **kw)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(4 * H, **kw)) if bias else None
        if peephole:
            self.weight_ci = nn.Parameter(torch.empty(H, **kw))
            self.weight_cf = nn.Parameter(torch.empty(H, **kw))
            self.weight_co = nn.Parameter(torch.empty(H, **kw))
        if layer_norm:
            self.weight_ln_ih = nn.Parameter(torch.empty(4 * H, **kw))
            self.weight_ln_hh = nn.Parameter(torch.empty(4 * H, **kw))
            self.weight_ln_c = nn.Parameter(torch.empty(H, **kw))
            self.bias_ln_c = nn.Parameter(torch.empty(H, **kw))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        H = self.hidden_size
        if self.layer_norm:
            for gain in (self.weight_ln_ih, self.weight_ln_hh, self.weight_ln_c):
                nn.init.ones_(gain)
            nn.init.zeros_(self.bias_ln_c)
        if self.forget_bias is not None:
            with torch.no_grad():
                self.bias_ih[H : 2 * H] = self.forget_bias
                self.bias_hh[H : 2 * H] = 0.0

    def input_gates(self, x: Tensor) -> Tensor:
        """W_ih x + b_ih (or its layer-normalised form): for one step, or for all at once."""
        if self.layer_norm:
            xg = layer_norm(F.linear(x, self.weight_ih), self.weight_ln_ih)
            return xg if self.bias_ih is None else xg + self.bias_ih
        return F.linear(x, self.weight_ih, self.bias_ih)

    def forward(
        self, x: Tensor, state: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        h, c = state
        if self.layer_norm:
            hg = layer_norm(F.linear(h, self.weight_hh), self.weight_ln_hh)
            hg = hg if self.bias_hh is None else hg + self.bias_hh
        else:
            hg = F.linear(h, self.weight_hh, self.bias_hh)
        i, f, g, o = (self.input_gates(x) + hg).chunk(4, dim=-1)
        if self.peephole:
            i, f = i + self.weight_ci * c, f + self.weight_cf * c
        i, f, g = i.sigmoid(), f.sigmoid(), g.tanh()
        c = f * c + i * g
        if self.peephole:
            o = o + self.weight_co * c
        o = o.sigmoid()
        cn = layer_norm(c, self.weight_ln_c, self.bias_ln_c) if self.layer_norm else c
        h = o * cn.tanh()
        return h, (h, c)

    def extra_repr(self) -> str:
        opts = [f"{self.input_size}, {self.hidden_size}"]
        opts += [f"{k}=True" for k in ("peephole", "layer_norm") if getattr(self, k)]
        if self.forget_bias is not None:
            opts.append(f"forget_bias={self.forget_bias}")
        return ", ".join(opts)
