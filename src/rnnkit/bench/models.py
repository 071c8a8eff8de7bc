"""The layers ``rnnkit bench speed`` times beside rnnkit's own: an LSTM written the way users
write one (the reference row), and wrappers that run a layer with one backend switched."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CustomLSTM(nn.Module):
    """A multi-layer LSTM written plainly: a Python loop over ``xs.unbind(0)``, ``F.linear`` per
    step, trained through autograd. torch.nn.LSTM's gate order, initialisation and interface:
    ``forward(xs (T, B, I), hx=None) -> (ys, (h_n, c_n))``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1) -> None:
        super().__init__()
        self.hidden_size, self.num_layers = hidden_size, num_layers
        H, bound = hidden_size, 1.0 / math.sqrt(hidden_size)
        self.weight_ih, self.weight_hh = nn.ParameterList(), nn.ParameterList()
        self.bias_ih, self.bias_hh = nn.ParameterList(), nn.ParameterList()
        for l in range(num_layers):
            width = input_size if l == 0 else H
            self.weight_ih.append(nn.Parameter(torch.empty(4 * H, width).uniform_(-bound, bound)))
            self.weight_hh.append(nn.Parameter(torch.empty(4 * H, H).uniform_(-bound, bound)))
            self.bias_ih.append(nn.Parameter(torch.empty(4 * H).uniform_(-bound, bound)))
            self.bias_hh.append(nn.Parameter(torch.empty(4 * H).uniform_(-bound, bound)))

    def forward(self, xs: Tensor, hx: tuple[Tensor, Tensor] | None = None):
        B, H = xs.shape[1], self.hidden_size
        hs, cs = [], []
        for l in range(self.num_layers):
            if hx is None:
                h = c = xs.new_zeros(B, H)
            else:
                h, c = hx[0][l], hx[1][l]
            ys = []
            for x in xs.unbind(0):
                gates = F.linear(x, self.weight_ih[l], self.bias_ih[l]) + F.linear(
                    h, self.weight_hh[l], self.bias_hh[l]
                )
                i, f, g, o = gates.chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                ys.append(h)
            xs = torch.stack(ys)
            hs.append(h)
            cs.append(c)
        return xs, (torch.stack(hs), torch.stack(cs))


class WithoutOneDNN(nn.Module):
    """Runs the wrapped module with oneDNN (mkldnn) switched off. On the CPU, torch.nn.LSTM goes
    through oneDNN's RNN primitive, whose set-up on every call dominates at T = 1, B = 1 (the
    sampling config); this row shows torch's native kernel for comparison."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args):
        before = torch.backends.mkldnn.enabled
        torch.backends.mkldnn.enabled = False
        try:
            return self.module(*args)
        finally:
            torch.backends.mkldnn.enabled = before


class WithStepBackend(nn.Module):
    """Runs an rnnkit layer with one backend of its one-step path (``rnnkit.layers.stepper``):
    the sampling rows show the default (numpy on the CPU) and the torch backend side by side."""

    def __init__(self, module: nn.Module, backend: str) -> None:
        super().__init__()
        self.module, self.backend = module, backend

    def forward(self, *args):
        from rnnkit.kernels.backends import set_backend

        with set_backend("step", self.backend):
            return self.module(*args)
