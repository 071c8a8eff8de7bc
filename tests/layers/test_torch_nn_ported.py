"""PyTorch's own tests of torch.nn.RNN / LSTM / GRU (pytorch/pytorch test/test_nn.py), ported to
rnnkit's twins: torch.nn's class replaced by rnnkit's, and torch.nn as the reference wherever a
test compares two implementations (CUDA-vs-CPU tests compare rnnkit with torch.nn on the CPU).

Each test names the upstream test it ports. Where rnnkit differs from torch.nn on purpose (see the
README's compatibility section), the test asserts rnnkit's documented behaviour and says so.
The test_modules.py / common_modules.py ports and packed sequences (test_variable_sequence and
test_pack_sequence_batch_sizes_throw too) are in test_torch_nn_ported_modules.py.
"""

import io
from copy import deepcopy
from itertools import product

import pytest
import torch
import torch.nn.utils.rnn as rnn_utils
from torch import nn
from torch.autograd import gradcheck, gradgradcheck
from torch.testing import assert_close

import rnnkit

D = torch.float64
MODES = {"RNN": (rnnkit.RNN, nn.RNN), "GRU": (rnnkit.GRU, nn.GRU), "LSTM": (rnnkit.LSTM, nn.LSTM)}
CELLS = {
    "RNNCell": (rnnkit.ElmanCell, nn.RNNCell),
    "GRUCell": (rnnkit.GRUCell, nn.GRUCell),
    "LSTMCell": (rnnkit.LSTMCell, nn.LSTMCell),
}


def twin(mode, *args, dtype=D, **kwargs):
    """(rnnkit layer, torch.nn layer) with the same weights, in ``dtype``."""
    ours_cls, theirs_cls = MODES[mode]
    theirs = theirs_cls(*args, **kwargs).to(dtype)
    ours = ours_cls(*args, **kwargs).to(dtype)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def states(hn):
    return hn if isinstance(hn, tuple) else (hn,)


# ---- cells ------------------------------------------------------------------------------------
# rnnkit's cells keep torch's constructor and parameters but have rnnkit's contract:
# forward(x, state) -> (y, state), with the state required (documented difference).
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", ["RNNCell", "GRUCell"])
def test_RNN_cell(kind, bias):
    # ports test_nn.py::TestNN::test_RNN_cell (RNNCell and GRUCell, with and without bias),
    # with torch.nn's cell as the reference for every step and every gradient
    ours_cls, theirs_cls = CELLS[kind]
    theirs = theirs_cls(10, 20, bias=bias).double()
    ours = ours_cls(10, 20, bias=bias).double()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(3, 10, dtype=D)
    hx_ours = hx_theirs = torch.randn(3, 20, dtype=D)
    for _ in range(6):
        _, hx_ours = ours(x, hx_ours)
        hx_theirs = theirs(x, hx_theirs)
        assert_close(hx_ours, hx_theirs)
    hx_ours.sum().backward()
    hx_theirs.sum().backward()
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert_close(p.grad, q.grad)


@pytest.mark.parametrize("bias", [True, False])
def test_LSTM_cell(bias):
    # ports test_nn.py::TestNN::test_LSTM_cell (a smoke test upstream; here against torch.nn)
    theirs = nn.LSTMCell(10, 20, bias=bias).double()
    ours = rnnkit.LSTMCell(10, 20, bias=bias).double()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(3, 10, dtype=D)
    ho, co = ht, ct = torch.randn(3, 20, dtype=D), torch.randn(3, 20, dtype=D)
    for _ in range(6):
        _, (ho, co) = ours(x, (ho, co))
        ht, ct = theirs(x, (ht, ct))
    assert_close(ho, ht)
    assert_close(co, ct)
    (ho + co).sum().backward()
    (ht + ct).sum().backward()
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert_close(p.grad, q.grad)


def test_LSTM_cell_forward_input_size():
    # ports test_nn.py::TestNN::test_LSTM_cell_forward_input_size
    lstm = rnnkit.LSTMCell(10, 20)
    with pytest.raises(RuntimeError):
        lstm(torch.randn(3, 11), (torch.randn(3, 20), torch.randn(3, 20)))


def test_LSTM_cell_forward_hidden_size():
    # ports test_nn.py::TestNN::test_LSTM_cell_forward_hidden_size
    lstm = rnnkit.LSTMCell(10, 20)
    x, hx, cx = torch.randn(3, 10), torch.randn(3, 21), torch.randn(3, 20)
    with pytest.raises(RuntimeError):
        lstm(x, (hx, cx))
    with pytest.raises(RuntimeError):
        lstm(x, (cx, hx))


def test_RNN_cell_no_broadcasting():
    # ports test_nn.py::TestNN::test_RNN_cell_no_broadcasting. Documented difference: a cell
    # does not check shapes (it is the inner step of the time loop), so a state that broadcasts
    # (batch 1, or a cell state of width 1) is broadcast; the layers check shapes as torch does.
    cell = rnnkit.LSTMCell(10, 20)
    x, good = torch.randn(3, 10), torch.randn(3, 20)
    with pytest.raises(RuntimeError):  # h's width vs hidden_size
        cell(x, (torch.randn(3, 1), good))
    with pytest.raises(RuntimeError):  # the input's width vs input_size
        cell(torch.randn(3, 1), (good, good))
    for bad in (torch.randn(1, 20), torch.randn(3, 1)):
        y, _ = cell(x, (good, bad))  # c broadcasts: rnnkit's cell does not check
        assert y.shape == (3, 20)
    y, _ = cell(x, (torch.randn(1, 20), good))  # and so does a batch-1 h
    assert y.shape == (3, 20)
    layer = rnnkit.LSTM(10, 20)
    for h, c in [(torch.randn(1, 20), good), (good, torch.randn(1, 20)), (good, torch.randn(3, 1))]:
        with pytest.raises(RuntimeError):  # the layer refuses them all, as torch.nn.LSTM does
            layer(x[None], (h[None], c[None]))


# ---- argument and input checks -------------------------------------------------------------
@pytest.mark.parametrize("mode", list(MODES))
def test_rnn_args_check(mode):
    # ports test_nn.py::TestNN::test_rnn_args_check: every wrong input or hidden shape raises
    # RuntimeError (rnnkit's InputError is also a ValueError; its messages are its own)
    input_size, hidden_size, num_layers, batch_size, seq_len, bad = 3, 5, 2, 4, 6, 7
    good_input, good_hidden = (seq_len, batch_size, input_size), (num_layers, batch_size, 5)

    def update(shape, dim, size):
        shape = list(shape)
        shape[dim] = size
        return tuple(shape)

    def inputs(input_shape, hidden_shape):
        x, h = torch.randn(input_shape), torch.randn(hidden_shape)
        if mode != "LSTM":
            return [(x, h)]
        if hidden_shape == good_hidden:
            return [(x, (h, h))]
        ok = torch.randn(good_hidden)
        return [(x, (h, ok)), (x, (ok, h))]

    cases = [
        (update(good_input, 1, bad), good_hidden),  # input batch size
        (good_input, update(good_hidden, 1, bad)),  # hidden batch size
        (update(good_input, 2, bad), good_hidden),  # input size
        (good_input, update(good_hidden, 2, bad)),  # hidden size
        (good_input, update(good_hidden, 0, bad)),  # hidden[0]
    ]
    model = MODES[mode][0](input_size, hidden_size, num_layers)
    for input_shape, hidden_shape in cases:
        for x, h in inputs(input_shape, hidden_shape):
            with pytest.raises(RuntimeError):
                model(x, h)


def test_cudnn_forward_exception():
    # ports test_nn.py::TestNN::test_cudnn_forward_exception (it runs on the CPU too): wrong
    # hidden and input sizes raise RuntimeError. Documented difference: rnnkit's messages are
    # "hx must have shape ..." and "input has 3 features, expected input_size=10".
    rnns = [
        (rnnkit.LSTM(10, 20, batch_first=True), (torch.zeros(1, 2, 19), torch.zeros(1, 2, 19))),
        (rnnkit.GRU(10, 20, batch_first=True), torch.zeros(1, 2, 19)),
        (rnnkit.RNN(10, 20, batch_first=True), torch.zeros(1, 2, 19)),
    ]
    x_wrong, x_right = torch.randn(2, 3, 3), torch.randn(2, 3, 10)
    for rnn, hidden in rnns:
        with pytest.raises(RuntimeError, match="hx must have shape"):
            rnn(x_right, hidden)
        with pytest.raises(RuntimeError, match="expected input_size=10"):
            rnn(x_wrong)


@pytest.mark.parametrize("mode", list(MODES))
def test_rnn_check_device(mode):
    # ports test_nn.py::TestNN::test_rnn_check_device (multi-GPU upstream) with the meta device
    # as the second device: input, parameters and states on different devices are refused
    model = MODES[mode][0](3, 5, 2)
    model_meta = deepcopy(model).to("meta")
    x, h = torch.randn(6, 4, 3), torch.randn(2, 4, 5)
    with pytest.raises(RuntimeError, match="parameters are on cpu"):
        model(x.to("meta"))
    with pytest.raises(RuntimeError, match="parameters are on meta"):
        model_meta(x)
    hx = (h.to("meta"), h.to("meta")) if mode == "LSTM" else h.to("meta")
    with pytest.raises(RuntimeError, match="hx is torch.float32 on meta"):
        model(x, hx)


@pytest.mark.parametrize("mode", list(MODES))
def test_rnn_initial_hidden_state(mode):
    # ports test_nn.py::TestNN::test_rnn_initial_hidden_state
    rnn = MODES[mode][0](30, 20, 2)
    x, hidden = torch.randn(10, 32, 30), torch.zeros(2, 32, 20)
    if mode == "LSTM":
        hidden = (hidden, hidden)
    output1, hidden1 = rnn(x, hidden)
    output2, hidden2 = rnn(x)
    assert_close(output1, output2)
    assert_close(hidden1, hidden2)


@pytest.mark.parametrize("mode", ["RNN", "GRU"])
def test_projections_errors_on_gru_and_rnn(mode):
    # ports test_nn.py::TestNN::test_projections_errors_on_gru_and_rnn (torch's message)
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM"):
        MODES[mode][0](30, 20, 2, proj_size=10)


def test_projections_lstm_unsupported():
    # test_nn.py::TestNN::test_projections_lstm_args_check, _initial_hidden_state and
    # _check_device need LSTM projections. Documented difference: rnnkit.LSTM does not support
    # proj_size; any value but 0 is a ValueError that says so.
    for bidirectional in (False, True):
        with pytest.raises(ValueError, match="proj_size=10 is not supported"):
            rnnkit.LSTM(30, 20, 2, bidirectional=bidirectional, proj_size=10)
    assert rnnkit.LSTM(30, 20, proj_size=0).proj_size == 0
    assert rnnkit.GRU(30, 20).proj_size == rnnkit.RNN(30, 20).proj_size == 0  # as torch.nn's


# ---- rnnkit against torch.nn: the CPU-vs-cuDNN tests with torch.nn as the other side ---------
def make_noncontig(tensor):
    ndim = tensor.dim()
    return torch.stack([tensor.clone().zero_(), tensor], ndim).select(ndim, 1)


def forward_backward(rnn, input_val, grad_output, hx_val, grad_hy):
    """test_nn.py's forward_backward helper of _test_RNN_cpu_vs_cudnn, without the device move."""
    is_lstm = rnn.mode == "LSTM"
    if isinstance(input_val, rnn_utils.PackedSequence):
        x = rnn_utils.PackedSequence(
            input_val.data.detach().clone().requires_grad_(True), input_val.batch_sizes
        )
        x_var = x.data
    else:
        x = x_var = input_val.clone().requires_grad_(True)
    if is_lstm:
        hx = (hx_val.clone().requires_grad_(True), hx_val.add(1).requires_grad_(True))
    else:
        hx = hx_val.clone().requires_grad_(True)
    output, hy = rnn(x, hx)
    if isinstance(output, rnn_utils.PackedSequence):
        output = output.data
    if is_lstm:
        torch.autograd.backward([output, hy[0], hy[1]], [grad_output, grad_hy, grad_hy + 1])
    else:
        torch.autograd.backward([output, hy], [grad_output, grad_hy])
    return {
        "output": output.detach(),
        "hy": (hy[0] if is_lstm else hy).detach(),
        "cy": hy[1].detach() if is_lstm else None,
        "grad_input": x_var.grad,
        "grad_hx": hx[0].grad if is_lstm else hx.grad,
        "grad_cx": hx[1].grad if is_lstm else None,
        "weight_grads": [p.grad for p in rnn.parameters()],
    }


def compare_with_torch(mode, dropout, bias, bidirectional, extra=None):
    input_size, hidden_size, num_layers, seq_length, batch = 10, 6, 2, 7, 6
    D2 = 2 if bidirectional else 1
    combos = product((True, False), repeat=4) if extra is None else [extra]
    for batch_first, contig, variable_len, lens_as_tensor in combos:
        shape = (batch, seq_length) if batch_first else (seq_length, batch)
        input_val = torch.randn(*shape, input_size, dtype=D)
        grad_output = torch.randn(*shape, hidden_size * D2, dtype=D)
        hx_val = torch.randn(num_layers * D2, batch, hidden_size, dtype=D)
        grad_hy = torch.randn(num_layers * D2, batch, hidden_size, dtype=D)
        if not contig:
            grad_output, grad_hy = make_noncontig(grad_output), make_noncontig(grad_hy)
            input_val, hx_val = make_noncontig(input_val), make_noncontig(hx_val)
        if variable_len:
            lengths = [7, 5, 5, 2, 1, 1]
            if lens_as_tensor:
                lengths = torch.tensor(lengths, dtype=torch.long)
            input_val = rnn_utils.pack_padded_sequence(input_val, lengths, batch_first=batch_first)
            grad_output = rnn_utils.pack_padded_sequence(
                grad_output, lengths, batch_first=batch_first
            ).data
        kw = dict(bias=bias, dropout=dropout, bidirectional=bidirectional, batch_first=batch_first)
        ours, theirs = twin(mode, input_size, hidden_size, num_layers, **kw)
        a = forward_backward(ours, input_val, grad_output, hx_val, grad_hy)
        b = forward_backward(theirs, input_val, grad_output, hx_val, grad_hy)
        for key in a:
            assert_close(a[key], b[key], rtol=1e-9, atol=1e-9, msg=key)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("mode", list(MODES))
def test_RNN_cpu_vs_torch_no_dropout(mode, bias, bidirectional):
    # ports test_nn.py::TestNN::test_RNN_cpu_vs_cudnn_no_dropout (_test_RNN_cpu_vs_cudnn with
    # dropout 0): outputs, final states and all gradients against torch.nn, over batch_first,
    # non-contiguous tensors, packed variable lengths and lengths as a list or a tensor
    compare_with_torch(mode, 0, bias, bidirectional)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_RNN_cpu_vs_torch_nonlinearity(nonlinearity):
    # ports the nonlinearity loop of test_nn.py::TestNN::_test_RNN_cpu_vs_cudnn
    ours, theirs = twin("RNN", 10, 6, 2, nonlinearity=nonlinearity)
    hx_val, x = torch.randn(2, 6, 6, dtype=D), torch.randn(7, 6, 10, dtype=D)
    grad_output, grad_hy = torch.randn(7, 6, 6, dtype=D), torch.randn(2, 6, 6, dtype=D)
    a = forward_backward(ours, x, grad_output, hx_val, grad_hy)
    b = forward_backward(theirs, x, grad_output, hx_val, grad_hy)
    for key in a:
        assert_close(a[key], b[key], msg=key)


@pytest.mark.parametrize("mode", list(MODES))
def test_RNN_cpu_vs_torch_with_dropout(mode):
    # ports test_nn.py::TestNN::test_RNN_cpu_vs_cudnn_with_dropout: "because of dropout
    # randomness, can only compare dropout=0 and dropout=1": with dropout 1 the lower layer's
    # outputs are all dropped, in rnnkit as in torch, so the two agree exactly
    for bias, bidirectional in product((True, False), repeat=2):
        for extra in [(False, True, False, False), (True, False, True, True)]:
            compare_with_torch(mode, 1, bias, bidirectional, extra)


@pytest.mark.parametrize("mode", ["GRU", "LSTM"])
@pytest.mark.parametrize("bias", [True, False])
def test_rnn_fused(mode, bias):
    # ports test_nn.py::TestNN::test_rnn_fused (CUDA's fused cells vs the CPU upstream): float32,
    # rnnkit against torch.nn, tolerance 5e-5 as upstream
    ours, theirs = twin(mode, 10, 6, 2, bias=bias, dtype=torch.float32)
    x = torch.randn(7, 6, 10)
    grad_output, hx_val, grad_hy = torch.randn(7, 6, 6), torch.randn(2, 6, 6), torch.randn(2, 6, 6)
    a = forward_backward(ours, x, grad_output, hx_val, grad_hy)
    b = forward_backward(theirs, x, grad_output, hx_val, grad_hy)
    for key in a:
        assert_close(a[key], b[key], rtol=0, atol=5e-5, msg=key)


@pytest.mark.parametrize("mode", list(MODES))
def test_cudnn_weight_tying(mode):
    # ports test_nn.py::TestNN::test_cudnn_weight_tying on the CPU against torch.nn: one
    # Parameter under two names (bias_ih_l0 and bias_ih_l0_reverse), a step of SGD, and the
    # outputs still agree
    ours, theirs = twin(mode, 10, 20, batch_first=True, bidirectional=True)
    x, h = torch.randn(5, 4, 10, dtype=D), torch.randn(2, 5, 20, dtype=D)
    hx = (h, torch.randn(2, 5, 20, dtype=D)) if mode == "LSTM" else h
    outs = []
    for rnn in (ours, theirs):
        rnn.bias_ih_l0_reverse = rnn.bias_ih_l0
        opt = torch.optim.SGD(rnn.parameters(), lr=0.1)
        opt.zero_grad()
        rnn(x, hx)[0].sum().backward()
        opt.step()
        outs.append(rnn(x, hx)[0])
    assert len(list(ours.parameters())) == len(list(theirs.parameters()))
    assert_close(ours.bias_ih_l0, ours.bias_ih_l0_reverse)
    assert_close(*outs)


@pytest.mark.parametrize("mode", list(MODES))
def test_cudnn_weight_format(mode):
    # ports test_nn.py::TestNN::test_cudnn_weight_format on the CPU: a weight given new storage
    # (set_) gives the same outputs and gradients, and still shares that storage
    rnn = MODES[mode][0](10, 20, batch_first=True).double()
    x = torch.randn(5, 4, 10, dtype=D, requires_grad=True)
    hx = torch.randn(1, 5, 20, dtype=D, requires_grad=True)
    all_vars = [x, hx, *rnn.parameters()]
    if mode == "LSTM":
        cx = torch.randn(1, 5, 20, dtype=D, requires_grad=True)
        all_vars[2:2] = [cx]
        hx = (hx, cx)
    output = rnn(x, hx)
    output[0].sum().backward()
    grads = [v.grad.clone() for v in all_vars]
    for v in all_vars:
        v.grad = None
    weight = all_vars[4]
    weight_data = weight.data.clone()
    with torch.no_grad():
        weight.set_(weight_data)
    for _ in range(2):
        output2 = rnn(x, hx)
        output2[0].sum().backward()
        assert_close(output2[0], output[0])
        assert_close([v.grad for v in all_vars], grads)
        for v in all_vars:
            v.grad = None
    weight_data[:] = 4
    assert_close(weight_data, all_vars[4].data)


def test_RNN_cudnn_weight_norm():
    # ports test_nn.py::TestNN::test_RNN_cudnn_weight_norm on the CPU: weight norm leaves the
    # outputs as they were, and so does removing it (the weight_hr_l0 half needs proj_size)
    m = rnnkit.LSTM(10, 6, 2)
    x = torch.randn(7, 6, 10)
    expected = m(x)[0]
    with pytest.warns(FutureWarning, match="weight_norm"):  # torch deprecates the old API
        m = torch.nn.utils.weight_norm(m, name="weight_hh_l0")
    assert_close(m(x)[0], expected)
    m = torch.nn.utils.remove_weight_norm(m, name="weight_hh_l0")
    assert_close(m(x)[0], expected)
    torch.nn.utils.parametrizations.weight_norm(m, name="weight_ih_l1")  # the current API
    assert_close(m(x)[0], expected)


def test_rnn_weight_norm():
    # ports test_nn.py::TestNN::test_rnn_weight_norm: weight norm turns one parameter into a
    # computed tensor (rnnkit has no _flat_weights: checked through named_parameters), removing
    # it restores the Parameter and drops the _g and _v components
    name = "weight_ih_l0"
    layer = rnnkit.LSTM(32, 32)
    with pytest.warns(FutureWarning, match="weight_norm"):
        layer = torch.nn.utils.weight_norm(layer, name=name)
    params = dict(layer.named_parameters())
    assert name not in params and {name + "_g", name + "_v"} <= set(params)
    assert not isinstance(getattr(layer, name), nn.Parameter)
    layer(torch.randn(2, 3, 32))[0].sum().backward()
    assert params[name + "_g"].grad is not None  # the cells compute with the computed weight
    layer = torch.nn.utils.remove_weight_norm(layer, name=name)
    params = dict(layer.named_parameters())
    assert isinstance(layer._parameters[name], nn.Parameter)
    assert name in params and name + "_g" not in params and name + "_v" not in params
    assert len(params) == 4


def test_partial_flat_weights():
    # ports test_nn.py::TestNN::test_partial_flat_weights on the CPU: delete a weight, move the
    # layer, put the weight back, and the outputs are those of the original layer
    m = rnnkit.LSTM(10, 6, 2)
    x = torch.randn(3, 2, 10)
    expected = m(x)[0]
    weight = m.weight_hh_l0
    del m.weight_hh_l0
    assert not hasattr(m, "weight_hh_l0")
    m.double().float()
    m.weight_hh_l0 = weight
    assert_close(m(x)[0], expected)


# ---- dropout ----------------------------------------------------------------------------------
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("p", [0, 0.276, 0.731, 1])
def test_RNN_dropout(p, train):
    # ports test_nn.py::TestNN::test_RNN_dropout (float64, as upstream): dropout sits between
    # the layers; with p = 1 in training the lower layer's outputs are all dropped
    rnn = rnnkit.RNN(10, 1000, 2, bias=False, dropout=p, nonlinearity="relu").double()
    rnn.train(train)
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1"):
            getattr(rnn, name).fill_(1)
    x, hx = torch.ones(1, 1, 10, dtype=D), torch.zeros(2, 1, 1000, dtype=D)
    output, hy = rnn(x, hx)
    assert output.min() == output.max()
    output_val = output[0, 0, 0].item()
    if p == 0 or not train:
        assert output_val == 10000
    elif p == 1:
        assert output_val == 0
    else:
        assert 8000 < output_val < 12000
        denorm_mod = (output_val * (1 - p)) % 10
        assert min(denorm_mod, 10 - denorm_mod) < 1e-2
    assert hy[0].min() == hy[0].max() and hy[1].min() == hy[1].max()
    assert hy[0, 0, 0].item() == 10
    assert hy[1, 0, 0].item() == output_val


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("p", [0, 0.1234])
def test_RNN_dropout_state(p, train):
    # ports test_nn.py::TestNN::test_RNN_dropout_state: a pickled and reloaded layer keeps its
    # dropout; in training each call draws new masks
    rnn = rnnkit.RNN(100, 100, 2, bias=False, dropout=p, nonlinearity="relu")
    rnn.train(train)
    x, hx = torch.rand(1, 1, 100), torch.rand(2, 1, 100)
    output1, hy1 = rnn(x, hx)
    output2, hy2 = rnn(x, hx)
    buf = io.BytesIO()
    torch.save(rnn, buf)
    buf.seek(0)
    rnn2 = torch.load(buf, weights_only=False)  # legacy whole-module pickle, as upstream
    rnn2.flatten_parameters()
    output3, hy3 = rnn2(x, hx)
    assert rnn2.dropout == p
    if p == 0 or not train:
        assert_close(output1, output2)
        assert_close(output1, output3)
        assert_close(hy1, hy2)
        assert_close(hy1, hy3)
    else:
        assert not torch.equal(output1, output2) and not torch.equal(output1, output3)
        assert not torch.equal(hy1, hy2) and not torch.equal(hy1, hy3)


@pytest.mark.parametrize("train", [True, False])
def test_RNN_change_dropout(train):
    # ports test_nn.py::TestNN::test_RNN_change_dropout: dropout set after construction counts
    rnn = rnnkit.RNN(100, 100, 2, dropout=0, nonlinearity="relu").double()
    x = torch.rand(3, 2, 100, dtype=D)
    rnn.train(train)
    prev_output = None
    for p in (0, 0.5, 0, 0.7, 0.2, 1, 0.2, 0):
        rnn.dropout = p
        output1, hy1 = rnn(x)
        output2, hy2 = rnn(x)
        if p == 0 or p == 1 or not train:
            assert_close(output1, output2)
            assert_close(hy1, hy2)
        else:
            assert not torch.equal(output1, output2)
            assert not torch.equal(hy1, hy2)
        if prev_output is not None:
            if not train:
                assert_close(output1, prev_output)
                assert_close(output2, prev_output)
            else:
                assert not torch.equal(output1, prev_output)
                assert not torch.equal(output2, prev_output)
        prev_output = output1


def test_change_dropout_is_checked():
    # rnnkit's own addition to test_RNN_change_dropout: a value set later is checked as the
    # constructor checks it
    rnn = rnnkit.GRU(4, 4, 2)
    for bad in (-0.1, 1.5, "0.5", True, None):
        with pytest.raises(ValueError, match="dropout must be a number in"):
            rnn.dropout = bad
    assert rnn.dropout == 0.0
    rnn.dropout = 1
    assert rnn.dropout == 1.0 and "dropout=1.0" in repr(rnn)


# ---- edge cases -------------------------------------------------------------------------------
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("mode", list(MODES))
def test_error_RNN_seq_len_zero(mode, bidirectional):
    # ports test_nn.py::TestNN::test_error_RNN_seq_len_zero (torch's exception type and message)
    rnn = MODES[mode][0](5, 6, bidirectional=bidirectional)
    with pytest.raises(RuntimeError, match="Expected sequence length to be larger than 0 in RNN"):
        rnn(torch.ones(0, 10, 5))
    rnn_bf = MODES[mode][0](5, 6, bidirectional=bidirectional, batch_first=True)
    with pytest.raises(RuntimeError, match="Expected sequence length to be larger than 0"):
        rnn_bf(torch.ones(10, 0, 5))


@pytest.mark.parametrize("mode", list(MODES))
def test_RNN_input_size_zero(mode):
    # ports test_nn.py::TestNN::test_RNN_input_size_zero (a batch of size 0 runs, backward too)
    rnn = MODES[mode][0](input_size=3, hidden_size=4)
    outs = rnn(torch.zeros(5, 0, 3))
    assert outs[0].shape == (5, 0, 4)
    assert all(s.shape == (1, 0, 4) for s in states(outs[1]))
    outs[0].sum().backward()


def test_RNN_nonlinearity():
    # ports test_nn.py::TestNNDeviceType::test_RNN_nonlinearity (plus torch's read-only mode)
    rnn = rnnkit.RNN(1, 10)
    assert rnn.nonlinearity == "tanh" and rnn.mode == "RNN_TANH"
    rnn = rnnkit.RNN(1, 10, nonlinearity="relu")
    assert rnn.nonlinearity == "relu" and rnn.mode == "RNN_RELU"
    # documented difference: rnnkit's message lists its four nonlinearities
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        rnnkit.RNN(1, 10, nonlinearity="garbage")
    assert (rnnkit.LSTM(1, 2).mode, rnnkit.GRU(1, 2).mode) == ("LSTM", "GRU")
    with pytest.raises(AttributeError):
        rnn.nonlinearity = "tanh"  # read-only: the cells were built with it


def test_RNN_nonlinearity_passed_as_arg():
    # ports test_nn.py::TestNNDeviceType::test_RNN_nonlinearity_passed_as_arg
    rnn = rnnkit.RNN(2, 3, 1, "relu")
    assert rnn.nonlinearity == "relu"
    ours, theirs = twin("RNN", 2, 3, 1, "relu")
    x = torch.randn(4, 2, 2, dtype=D)
    assert_close(ours(x)[0], theirs(x)[0])


# ---- gradients --------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", list(MODES))
def test_rnn_retain_variables(mode):
    # ports test_nn.py::TestNNDeviceType::test_rnn_retain_variables (float64): backward through
    # the same graph five times gives the same gradients each time
    rnn = MODES[mode][0](10, 20, num_layers=2).double()
    x = torch.randn(5, 6, 10, dtype=D, requires_grad=True)
    output = rnn(x)
    output[0].sum().backward(retain_graph=True)
    grads = [x.grad.clone()] + [p.grad.clone() for p in rnn.parameters()]
    for _ in range(4):
        rnn.zero_grad()
        x.grad.zero_()
        output[0].sum().backward(retain_graph=True)
        assert_close([x.grad] + [p.grad for p in rnn.parameters()], grads)


def flatten_out(mod, inp):
    out = mod(inp)
    return tuple(t if isinstance(t, torch.Tensor) else tt for t in out for tt in t)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("mode, hsize", [("LSTM", 4), ("GRU", 3)])
def test_grad_and_gradgrad(mode, hsize, bias):
    # ports test_nn.py::TestNNDeviceType::test_LSTM_grad_and_gradgrad and
    # test_GRU_grad_and_gradgrad (_test_rnn_mod): gradcheck and gradgradcheck of the outputs
    # and final states with respect to the input, float64
    inp = torch.rand(1, 3, hsize, dtype=D, requires_grad=True)
    mod = MODES[mode][0](hsize, hsize, bias=bias).double()

    def fn(x):
        return flatten_out(mod, x)

    assert gradcheck(fn, (inp,), check_batched_grad=False)
    assert gradgradcheck(fn, (inp,), check_batched_grad=False)
