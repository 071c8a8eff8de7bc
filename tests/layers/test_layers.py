"""Recurrent, Bidirectional and Stacked against loops written by hand; a user's own cell."""

import pytest
import torch
from torch import Tensor, nn
from torch.testing import assert_close

import rnnkit
from rnnkit.layers import flip_sequences

D = torch.float64
CELLS = {
    "elman": lambda: rnnkit.ElmanCell(3, 4),
    "jordan": lambda: rnnkit.JordanCell(3, 4, output_size=2),
    "lstm": lambda: rnnkit.LSTMCell(3, 4, peephole=True),
    "gru": lambda: rnnkit.GRUCell(3, 4),
    "mingru": lambda: rnnkit.MinimalGRUCell(3, 4),
}


def by_hand(cell, xs, state, length):
    """The cell applied `length` times to one sequence xs (T, I)."""
    ys = []
    for t in range(length):
        y, state = cell(xs[t : t + 1], state)
        ys.append(y[0])
    return ys, state


@pytest.mark.parametrize("use_kernel", [True, False], ids=["kernel", "generic"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", list(CELLS))
def test_recurrent_equals_hand_loop(name, reverse, use_kernel):
    cell = CELLS[name]().to(D)
    layer = rnnkit.Recurrent(cell, use_kernel=use_kernel)
    xs = torch.randn(6, 3, 3, dtype=D)
    lengths = torch.tensor([6, 2, 4])
    ys, final = layer(xs, lengths=lengths, reverse=reverse)
    for b, L in enumerate(lengths.tolist()):
        seq = xs[:L, b]
        if reverse:
            seq = seq.flip(0)
        state = cell.init_state(1)
        ref_ys, ref_state = by_hand(cell, seq, state, L)
        if reverse:
            ref_ys = ref_ys[::-1]
        assert_close(ys[:L, b], torch.stack(ref_ys))
        assert torch.all(ys[L:, b] == 0)  # outputs past the end are zero
        for got, want in zip(
            *(s if isinstance(s, tuple) else (s,) for s in (final, ref_state)), strict=True
        ):
            assert_close(got[b], want[0])


def test_flip_sequences_reverses_only_the_valid_prefix():
    xs = torch.arange(5.0).view(5, 1, 1).expand(5, 2, 1)
    out = flip_sequences(xs, torch.tensor([5, 3]))
    assert out[:, 0, 0].tolist() == [4, 3, 2, 1, 0]
    assert out[:, 1, 0].tolist() == [2, 1, 0, 3, 4]
    assert_close(flip_sequences(out, torch.tensor([5, 3])), xs)  # its own inverse


def test_zero_length_sequence_keeps_its_initial_state():
    layer = rnnkit.Recurrent(rnnkit.GRUCell(3, 4))
    h0 = torch.randn(2, 4)
    ys, hT = layer(torch.randn(5, 2, 3), h0, lengths=torch.tensor([0, 5]))
    assert_close(hT[0], h0[0])
    assert torch.all(ys[:, 0] == 0)


def test_bidirectional_concatenates_and_rejects_one_module_twice():
    fwd, bwd = rnnkit.Recurrent(rnnkit.GRUCell(3, 4)), rnnkit.Recurrent(rnnkit.GRUCell(3, 5))
    bi = rnnkit.Bidirectional(fwd, bwd)
    xs = torch.randn(6, 2, 3)
    ys, (sf, sb) = bi(xs, lengths=torch.tensor([6, 3]))
    assert ys.shape == (6, 2, 9)
    assert_close(ys[..., :4], fwd(xs, lengths=torch.tensor([6, 3]))[0])
    assert_close(ys[..., 4:], bwd(xs, lengths=torch.tensor([6, 3]), reverse=True)[0])
    with pytest.raises(ValueError, match="two distinct layers"):
        rnnkit.Bidirectional(fwd, fwd)


def test_stacked_feeds_each_layer_the_one_below():
    l1, l2 = rnnkit.Recurrent(rnnkit.LSTMCell(3, 4)), rnnkit.Recurrent(rnnkit.GRUCell(4, 4))
    stack = rnnkit.Stacked([l1, l2])
    xs = torch.randn(5, 2, 3)
    ys, (s1, s2) = stack(xs)
    mid, ref1 = l1(xs)
    ref, ref2 = l2(mid)
    assert_close(ys, ref)
    assert_close(s2, ref2)
    with pytest.raises(ValueError, match="got 1 states for 2 layers"):
        stack(xs, [None])


def test_residual_keeps_padding_zero():
    stack = rnnkit.Stacked(
        [rnnkit.Recurrent(rnnkit.GRUCell(4, 4)) for _ in range(2)], residual=True
    )
    ys, _ = stack(torch.randn(5, 2, 4), lengths=torch.tensor([5, 2]))
    assert torch.all(ys[2:, 1] == 0)


class MultiplicativeCell(nn.Module):
    """A user's own cell (a multiplicative RNN, Sutskever et al. 2011): forward(x, state)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = self.output_size = hidden_size
        self.wx = nn.Linear(input_size, hidden_size)
        self.wm = nn.Linear(input_size, hidden_size, bias=False)
        self.wh = nn.Linear(hidden_size, hidden_size)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> Tensor:
        return torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)

    def forward(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        h = torch.tanh(self.wx(x) + self.wh(self.wm(x) * h))
        return h, h


def test_users_cell_runs_in_every_layer_and_trains():
    """Stacked, bidirectional, residual, variable lengths: the generic path learns a sum."""
    torch.manual_seed(0)
    layers = [
        rnnkit.Bidirectional(
            rnnkit.Recurrent(MultiplicativeCell(1, 8)), rnnkit.Recurrent(MultiplicativeCell(1, 8))
        ),
        rnnkit.Recurrent(MultiplicativeCell(16, 16)),
    ]
    model = nn.ModuleDict({"rnn": rnnkit.Stacked(layers, residual=True), "head": nn.Linear(16, 1)})
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    lengths = torch.randint(1, 9, (32,))
    xs = torch.rand(8, 32, 1) * rnnkit.layers.length_mask(lengths, 8, torch.float32)
    target = xs.sum(0)  # the sum of each sequence's real inputs

    def loss_now():
        ys, states = model["rnn"](xs, lengths=lengths)
        last = ys[lengths - 1, torch.arange(32)]
        return ((model["head"](last) - target) ** 2).mean()

    first = loss_now().item()
    for _ in range(150):
        opt.zero_grad()
        loss = loss_now()
        loss.backward()
        opt.step()
    assert loss_now().item() < 0.2 * first


@pytest.mark.parametrize(
    "cell, state",
    [
        (rnnkit.ElmanCell(3, 4), torch.zeros(1, 4)),  # a batch-1 state would broadcast over B
        (rnnkit.LSTMCell(3, 4), (torch.zeros(2, 4), torch.zeros(2, 1))),  # a width-1 c likewise
        (rnnkit.LSTMCell(3, 4), torch.zeros(2, 4)),  # one tensor where the LSTM has two
    ],
    ids=["batch-1", "width-1", "arity"],
)
def test_state_of_the_wrong_shape_is_refused(cell, state):
    with pytest.raises(ValueError, match=r"state must have shape"):
        rnnkit.Recurrent(cell)(torch.randn(5, 2, 3), state)
