"""Property-based tests: invariances every recurrent layer must keep, over drawn sizes and cells."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

import rnnkit

D = torch.float64
FACTORIES = {
    "elman": lambda I, H: rnnkit.ElmanCell(I, H, nonlinearity="tanh"),
    "jordan": lambda I, H: rnnkit.JordanCell(I, H, output_nonlinearity="softmax"),
    "lstm": lambda I, H: rnnkit.LSTMCell(I, H),
    "lstm-peephole-ln": lambda I, H: rnnkit.LSTMCell(I, H, peephole=True, layer_norm=True),
    "gru": lambda I, H: rnnkit.GRUCell(I, H),
    "gru-before": lambda I, H: rnnkit.GRUCell(I, H, reset_after=False),
    "mingru": lambda I, H: rnnkit.MinimalGRUCell(I, H),
}


@st.composite
def problems(draw):
    T, B = draw(st.integers(1, 8)), draw(st.integers(1, 5))
    I, H = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    lengths = draw(st.lists(st.integers(0, T), min_size=B, max_size=B))
    name = draw(st.sampled_from(sorted(FACTORIES)))
    bidirectional = draw(st.booleans())
    use_kernel = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    torch.manual_seed(seed)
    cells = [FACTORIES[name](I, H).to(D) for _ in range(2 if bidirectional else 1)]
    layers = [rnnkit.Recurrent(c, use_kernel=use_kernel) for c in cells]
    layer = rnnkit.Bidirectional(*layers) if bidirectional else layers[0]
    xs = torch.randn(T, B, I, dtype=D)
    return layer, xs, torch.tensor(lengths, dtype=torch.long), cells[0]


def flat(state):
    if isinstance(state, tuple):
        return torch.cat([flat(s) for s in state], dim=-1)
    return state


cases = settings(max_examples=40, deadline=None)


@cases
@given(problems(), st.floats(-100, 100))
def test_padding_changes_nothing_real(problem, junk):
    layer, xs, lengths, _ = problem
    T = xs.shape[0]
    pad = torch.arange(T).unsqueeze(1) >= lengths.unsqueeze(0)  # (T, B)
    other = torch.where(pad.unsqueeze(-1), torch.full_like(xs, junk), xs)
    x1, x2 = xs.clone().requires_grad_(), other.clone().requires_grad_()
    (y1, s1), (y2, s2) = layer(x1, lengths=lengths), layer(x2, lengths=lengths)
    assert_close(y1, y2)
    assert_close(flat(s1), flat(s2))
    w = torch.randn_like(y1)
    g1, g2 = (
        torch.autograd.grad((y * w).sum() + flat(s).sum(), x)
        for y, s, x in ((y1, s1, x1), (y2, s2, x2))
    )
    assert_close(g1[0], g2[0])
    assert torch.all(g1[0][pad] == 0)  # and padding gets no gradient


@cases
@given(problems())
def test_batch_permutation_equivariance(problem):
    layer, xs, lengths, _ = problem
    perm = torch.randperm(xs.shape[1])
    ys, s = layer(xs, lengths=lengths)
    ys_p, s_p = layer(xs[:, perm], lengths=lengths[perm])
    assert_close(ys_p, ys[:, perm])
    assert_close(flat(s_p), flat(s)[perm])


@cases
@given(problems(), st.integers(1, 8))
def test_chunked_forward_equals_unchunked(problem, k):
    layer, xs, _, cell = problem
    layer = rnnkit.Recurrent(cell, use_kernel=getattr(layer, "use_kernel", True))
    ys, final = layer(xs)
    chunks, state = [], None
    for start in range(0, xs.shape[0], k):
        y, state = layer(xs[start : start + k], state)
        chunks.append(y)
    assert_close(torch.cat(chunks), ys)
    assert_close(flat(state), flat(final))


@cases
@given(problems())
def test_shapes(problem):
    layer, xs, lengths, cell = problem
    T, B, _ = xs.shape
    ys, state = layer(xs, lengths=lengths)
    D_ = 2 if isinstance(layer, rnnkit.Bidirectional) else 1
    assert ys.shape == (T, B, D_ * cell.output_size)
    for s in state if D_ == 2 else (state,):
        for part, size in zip(s if isinstance(s, tuple) else (s,), cell.state_sizes, strict=True):
            assert part.shape == (B, size)


@cases
@given(st.integers(0, 2**16), st.sampled_from(sorted(FACTORIES)))
def test_determinism_with_a_seed(seed, name):
    def once():
        torch.manual_seed(seed)
        layer = rnnkit.LSTM(3, 4, num_layers=2, dropout=0.3) if name == "lstm" else None
        layer = layer or rnnkit.Stacked([rnnkit.Recurrent(FACTORIES[name](3, 4))], dropout=0.3)
        xs = torch.randn(5, 2, 3)
        ys = layer(xs)[0]
        ys.sum().backward()
        return ys, [p.grad for p in layer.parameters()]

    (y1, g1), (y2, g2) = once(), once()
    assert torch.equal(y1, y2)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2, strict=True))
