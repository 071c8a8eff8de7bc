"""rnnkit.RNN / LSTM / GRU against torch.nn on the same weights: outputs, states, all gradients."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from torch.testing import assert_close

import rnnkit

PAIRS = {
    "lstm": (rnnkit.LSTM, nn.LSTM, {}),
    "gru": (rnnkit.GRU, nn.GRU, {}),
    "rnn_tanh": (rnnkit.RNN, nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (rnnkit.RNN, nn.RNN, {"nonlinearity": "relu"}),
}
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def make_pair(kind, dtype, use_kernel, **kw):
    ours_cls, theirs_cls, extra = PAIRS[kind]
    theirs = theirs_cls(3, 4, **extra, **kw).to(dtype)
    ours = ours_cls(3, 4, **extra, **kw, use_kernel=use_kernel).to(dtype)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def run(model, x, hx):
    y, hn = model(x, hx)
    hn = hn if isinstance(hn, tuple) else (hn,)
    return y, hn


def random_hx(kind, L, B, dtype):
    h = torch.randn(L, B, 4, dtype=dtype, requires_grad=True)
    if kind == "lstm":
        return (h, torch.randn(L, B, 4, dtype=dtype, requires_grad=True))
    return h


def compare(ours, theirs, x, hx, tol):
    y1, h1 = run(ours, x, hx)
    y2, h2 = run(theirs, x, hx)
    y1d = y1.data if isinstance(y1, nn.utils.rnn.PackedSequence) else y1
    y2d = y2.data if isinstance(y2, nn.utils.rnn.PackedSequence) else y2
    assert_close(y1d, y2d, rtol=tol, atol=tol)
    for a, b in zip(h1, h2, strict=True):
        assert_close(a, b, rtol=tol, atol=tol)
    weights = [torch.randn_like(t) for t in (y1d, *h1)]
    leaves = [x.data if isinstance(x, nn.utils.rnn.PackedSequence) else x]
    leaves += list(hx) if isinstance(hx, tuple) else [hx]

    def backward(outs, model):
        loss = sum((o * w).sum() for o, w in zip(outs, weights, strict=True))
        return torch.autograd.grad(loss, leaves + list(model.parameters()))

    for a, b in zip(backward([y1d, *h1], ours), backward([y2d, *h2], theirs), strict=True):
        assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("use_kernel", [True, False], ids=["kernel", "generic"])
@pytest.mark.parametrize("kind", list(PAIRS))
@pytest.mark.parametrize(
    "num_layers, bidirectional, batch_first, bias",
    [
        (1, False, False, True),
        (2, True, False, True),
        (2, False, True, False),
        (1, True, True, True),
    ],
)
def test_equals_torch(kind, use_kernel, dtype, num_layers, bidirectional, batch_first, bias):
    kw = dict(
        num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias
    )
    ours, theirs = make_pair(kind, dtype, use_kernel, **kw)
    B, T = 5, 7
    x = torch.randn(*((B, T) if batch_first else (T, B)), 3, dtype=dtype, requires_grad=True)
    hx = random_hx(kind, num_layers * (2 if bidirectional else 1), B, dtype)
    compare(ours, theirs, x, hx, TOL[dtype])


@pytest.mark.parametrize("use_kernel", [True, False], ids=["kernel", "generic"])
@pytest.mark.parametrize("kind", list(PAIRS))
def test_packed_sequence_equals_torch(kind, use_kernel):
    ours, theirs = make_pair(kind, torch.float64, use_kernel, num_layers=2, bidirectional=True)
    x = torch.randn(6, 4, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([3, 6, 1, 4])
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    hx = random_hx(kind, 4, 4, torch.float64)
    compare(ours, theirs, packed, hx, 1e-10)
    # enforce_sorted=True packing too
    packed = pack_padded_sequence(x, torch.tensor([6, 4, 3, 1]))
    compare(ours, theirs, packed, hx, 1e-10)


@pytest.mark.parametrize("kind", list(PAIRS))
def test_lengths_argument_equals_packed(kind):
    ours, theirs = make_pair(kind, torch.float64, True, num_layers=2, bidirectional=True)
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    lengths = torch.tensor([3, 6, 1, 4])
    y, hn = ours(x, lengths=lengths)
    yp, hnp = theirs(pack_padded_sequence(x, lengths, enforce_sorted=False))
    y_ref, _ = nn.utils.rnn.pad_packed_sequence(yp)
    assert_close(y, y_ref)  # padding positions are zero in both
    for a, b in zip(*(h if isinstance(h, tuple) else (h,) for h in (hn, hnp)), strict=True):
        assert_close(a, b)


@pytest.mark.parametrize("kind", list(PAIRS))
def test_unbatched_input(kind):
    ours, theirs = make_pair(kind, torch.float64, True, num_layers=2)
    x = torch.randn(5, 3, dtype=torch.float64)
    y1, h1 = run(ours, x, None)
    y2, h2 = run(theirs, x, None)
    assert_close(y1, y2)
    for a, b in zip(h1, h2, strict=True):
        assert_close(a, b)


@pytest.mark.parametrize("kind", list(PAIRS))
def test_state_dict_round_trip_both_ways(kind):
    ours_cls, theirs_cls, extra = PAIRS[kind]
    theirs = theirs_cls(3, 4, num_layers=2, bidirectional=True, **extra)
    ours = ours_cls(3, 4, num_layers=2, bidirectional=True, **extra)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [k for k, _ in ours.named_parameters()] == [k for k, _ in theirs.named_parameters()]
    for k, v in ours.state_dict().items():
        assert v.shape == theirs.state_dict()[k].shape, k
    theirs.load_state_dict(ours.state_dict())  # ours -> theirs
    x = torch.randn(5, 2, 3)
    assert_close(ours(x)[0], theirs(x)[0], rtol=1e-5, atol=1e-5)


def test_assign_load_and_dtype_move_reach_the_cells():
    theirs = nn.LSTM(3, 4, num_layers=2).double()
    ours = rnnkit.LSTM(3, 4, num_layers=2)
    ours.load_state_dict(theirs.state_dict(), assign=True)  # replaces the Parameter objects
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    assert_close(ours(x)[0], theirs(x)[0])
    ours = rnnkit.LSTM(3, 4).double()
    assert ours(x)[0].dtype == torch.float64


def test_dropout_between_layers():
    ours = rnnkit.LSTM(3, 8, num_layers=3, dropout=0.5)
    theirs = nn.LSTM(3, 8, num_layers=3, dropout=0.5)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(5, 2, 3)
    ours.eval(), theirs.eval()
    assert_close(ours(x)[0], theirs(x)[0])  # no dropout at evaluation
    ours.train()
    torch.manual_seed(3)
    a = ours(x)[0]
    torch.manual_seed(3)
    b = ours(x)[0]
    assert_close(a, b)  # seeded, deterministic
    assert (a - ours.eval()(x)[0]).abs().max() > 1e-3  # and it does drop in training
    one = rnnkit.LSTM(3, 8, num_layers=1, dropout=0.5)  # never after the last layer
    assert_close(one.train()(x)[0], one.eval()(x)[0])


def test_all_weights_and_flatten_parameters():
    ours = rnnkit.GRU(3, 4, num_layers=2, bidirectional=True)
    ours.flatten_parameters()
    theirs = nn.GRU(3, 4, num_layers=2, bidirectional=True)
    assert [[w.shape for w in g] for g in ours.all_weights] == [
        [w.shape for w in g] for g in theirs.all_weights
    ]


@pytest.mark.parametrize("cls", [rnnkit.MinimalGRU, rnnkit.JordanRNN])
def test_twin_interface_for_cells_without_torch_twin(cls):
    layer = cls(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    x = torch.randn(2, 5, 3)
    y, hn = layer(x)
    assert y.shape == (2, 5, 8) and hn.shape == (4, 2, 4)
    y2, _ = layer(x, hn)
    assert y2.shape == y.shape
    names = [k for k, _ in layer.named_parameters()]
    assert "weight_ih_l1_reverse" in names
    recurrent = "yh" if cls is rnnkit.JordanRNN else "hh"  # Jordan's state is the output y
    assert names[:4] == [
        "weight_ih_l0",
        f"weight_{recurrent}_l0",
        "bias_ih_l0",
        f"bias_{recurrent}_l0",
    ]


def test_jordan_layer_output_size():
    layer = rnnkit.JordanRNN(3, 6, num_layers=2, output_size=2, output_nonlinearity="softmax")
    y, hn = layer(torch.randn(5, 4, 3))
    assert y.shape == (5, 4, 2) and hn.shape == (2, 4, 2)
    assert_close(y.sum(-1), torch.ones(5, 4))


def test_extra_options_reach_the_cells():
    lstm = rnnkit.LSTM(3, 4, num_layers=2, peephole=True, layer_norm=True, forget_bias=1.0)
    names = {k for k, _ in lstm.named_parameters()}
    assert {"weight_ci_l1", "weight_ln_c_l0", "bias_ln_c_l1"} <= names
    assert torch.all(lstm.bias_ih_l1[4:8] == 1.0)
    gru = rnnkit.GRU(3, 4, reset_after=False)
    ref = rnnkit.GRU(3, 4)
    ref.load_state_dict(gru.state_dict())
    x = torch.randn(5, 2, 3)
    assert (gru(x)[0] - ref(x)[0]).abs().max() > 1e-4
    for nl in ("sigmoid", "identity"):
        y, _ = rnnkit.RNN(3, 4, nonlinearity=nl)(x)
        assert y.shape == (5, 2, 4)
    assert "peephole=True" in repr(lstm)


def test_residual_connections():
    layer = rnnkit.GRU(4, 4, num_layers=3, residual=True)
    plain = rnnkit.GRU(4, 4, num_layers=3)
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(5, 2, 4)
    y, _ = layer(x)
    # by hand: each layer's output plus its input
    h = x
    for l in range(3):
        one = nn.GRU(4, 4)
        one.load_state_dict(
            {
                k.replace(f"_l{l}", "_l0"): v
                for k, v in plain.state_dict().items()
                if k.endswith(f"_l{l}")
            }
        )
        h = one(h)[0] + h
    assert_close(y, h)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: rnnkit.LSTM(3, 4, proj_size=2), "proj_size=2 is not supported"),
        (lambda: rnnkit.LSTM(3, 4, num_layers=0), "num_layers must be a positive integer"),
        (lambda: rnnkit.LSTM(3, 4, dropout=1.5), "dropout must be a number in"),
        (lambda: rnnkit.RNN(3, 4, nonlinearity="gelu"), "nonlinearity must be one of"),
        (lambda: rnnkit.LSTM(3, 4)(torch.randn(5, 2, 7)), "expected input_size=3"),
        (lambda: rnnkit.LSTM(3, 4)(torch.randn(5, 3)[None, None]), "3-D"),
        (
            lambda: rnnkit.GRU(3, 4)(torch.randn(5, 2, 3), torch.zeros(2, 2, 4)),
            r"hx must have shape \(1, 2, 4\)",
        ),
        (lambda: rnnkit.LSTM(3, 4)(torch.randn(5, 2, 3), torch.zeros(1, 2, 4)), "hx must hold 2"),
        (
            lambda: rnnkit.GRU(3, 4)(torch.randn(5, 2, 3), lengths=torch.tensor([6, 2])),
            r"lengths must lie in \[0, 5\]",
        ),
        (
            lambda: rnnkit.GRU(3, 4)(torch.randn(5, 2, 3), lengths=torch.tensor([5])),
            "lengths has 1 entries",
        ),
        (
            lambda: rnnkit.GRU(3, 4)(torch.randn(5, 2, 3), lengths=torch.tensor([5.0, 1.0])),
            "1-D integer",
        ),
    ],
)
def test_bad_input_gives_one_line_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("kind", list(PAIRS))
@pytest.mark.parametrize("T", [5, 1])  # T = 1 without autograd is the one-step path
def test_dtype_mismatch_is_one_line_error(kind, T):
    ours, _ = make_pair(kind, torch.float64, True)
    x32 = torch.randn(T, 2, 3)
    message = "input dtype torch.float32 does not match the parameters' dtype torch.float64"
    with torch.no_grad(), pytest.raises(ValueError, match=message) as error:
        ours(x32)
    assert isinstance(error.value, RuntimeError)  # torch.nn raises either, depending on the case
    x = x32.double()
    hx = random_hx(kind, 1, 2, torch.float32)
    with torch.no_grad(), pytest.raises(RuntimeError, match="hx is torch.float32 on cpu but"):
        ours(x, hx)
