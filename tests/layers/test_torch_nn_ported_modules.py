"""PyTorch's ModuleInfo tests (pytorch/pytorch test/test_modules.py, driven by
torch/testing/_internal/common_modules.py's module_inputs_torch_nn_RNN_GRU / _LSTM and
module_error_inputs_torch_nn_RNN_GRU) and packed sequences through the layer
(test/nn/test_packed_sequence.py's packings), ported to rnnkit's twins of torch.nn.RNN / LSTM /
GRU with torch.nn as the reference. CUDA-only tests (test_cpu_gpu_parity, test_memory_format,
test_multiple_device_transfer) are not ported. The test_nn.py ports are in test_torch_nn_ported.py,
but for its two packed-sequence tests, which are here.
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


def module_inputs(mode):
    """common_modules.py's module_inputs_torch_nn_RNN_GRU (is_rnn for RNN) and
    module_inputs_torch_nn_LSTM (proj_size 0: see test_lstm_proj_size_inputs): per configuration
    the constructor kwargs of its two samples and their unbatched forward inputs' shapes."""
    cases = []
    lists = [("relu", "tanh")] if mode == "RNN" else [(None,)]
    for nl, bias, batch_first, bidirectional in product(*lists, *[(False, True)] * 3):
        kw = dict(num_layers=2, batch_first=batch_first, bias=bias, bidirectional=bidirectional)
        if nl is not None:
            kw["nonlinearity"] = nl
        nl_id = "" if nl is None else "-" + nl
        name = f"{mode}{nl_id}-bias{bias:d}-bf{batch_first:d}-bi{bidirectional:d}"
        cases.append(pytest.param(mode, kw, id=name))
    return cases


CONFIGS = module_inputs("RNN") + module_inputs("GRU") + module_inputs("LSTM")


def samples(mode, kw, dtype=D, requires_grad=False):
    """The two ModuleInputs of one configuration: (constructor args, forward args)."""
    L = 4 if kw["bidirectional"] else 2

    def make(*shape):
        return torch.randn(*shape, dtype=dtype).requires_grad_(requires_grad)

    if mode == "LSTM":  # hidden_size 3 for both; an input (2, 2), then (3, 2) with (h, c)
        return [((2, 3), (make(2, 2),)), ((2, 3), (make(3, 2), (make(L, 3), make(L, 3))))]
    return [((2, 2), (make(3, 2),)), ((2, 3), (make(3, 2), make(L, 3)))]


def twin(mode, *args, dtype=D, **kwargs):
    """(rnnkit layer, torch.nn layer) with the same weights, in ``dtype``."""
    ours_cls, theirs_cls = MODES[mode]
    theirs = theirs_cls(*args, **kwargs).to(dtype)
    ours = ours_cls(*args, **kwargs).to(dtype)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def no_batch_dim_reference(m, *args, batch_first):
    """common_modules.py's no_batch_dim_reference_rnn_gru / _lstm: the same input run as a batch
    of one, squeezed back."""
    inp, h = args[0], args[1] if len(args) == 2 else None
    if h is not None:
        h = tuple(t.unsqueeze(1) for t in h) if isinstance(h, tuple) else h.unsqueeze(1)
    batch_dim = 0 if batch_first else 1
    output, hn = m(inp.unsqueeze(batch_dim), h)
    hn = tuple(t.squeeze(1) for t in hn) if isinstance(hn, tuple) else hn.squeeze(1)
    return output.squeeze(batch_dim), hn


def leaves(out):
    return list(torch.utils._pytree.tree_leaves(out))


# ---- test_modules.py::TestModule --------------------------------------------------------------
@pytest.mark.parametrize("mode, kw", CONFIGS)
def test_forward(mode, kw):
    # ports test_modules.py::TestModule::test_forward (float32 and float64) with its
    # reference_fn (the unbatched input as a batch of one), and torch.nn on the same weights
    for dtype, tol in ((torch.float32, 1e-5), (D, 1e-10)):
        for size, args in samples(mode, kw, dtype):
            ours, theirs = twin(mode, *size, dtype=dtype, **kw)
            out = ours(*args)
            ref = no_batch_dim_reference(ours, *args, batch_first=kw["batch_first"])
            assert_close(leaves(out), leaves(ref), rtol=tol, atol=tol)
            assert_close(leaves(out), leaves(theirs(*args)), rtol=tol, atol=tol)


def test_lstm_proj_size_inputs():
    # test_modules.py's LSTM samples with proj_size=2 (module_inputs_torch_nn_LSTM). Documented
    # difference: rnnkit.LSTM does not support projections, and says so at construction.
    for bias, batch_first, bidirectional in product((False, True), repeat=3):
        kw = dict(num_layers=2, bias=bias, batch_first=batch_first, bidirectional=bidirectional)
        with pytest.raises(ValueError, match="proj_size=2 is not supported"):
            rnnkit.LSTM(2, 3, proj_size=2, **kw)


@pytest.mark.parametrize("mode, kw", CONFIGS)
def test_grad(mode, kw):
    # ports test_modules.py::TestModule::test_grad (_test_gradients_helper with gradcheck, in
    # its fast mode): the outputs' gradients with respect to the input, the initial state and
    # every parameter, float64
    size, args = samples(mode, kw, requires_grad=True)[1]  # the sample with an initial state
    m = MODES[mode][0](*size, **kw).double().train()
    flat_input, spec = torch.utils._pytree.tree_flatten(args)
    params = tuple(m.parameters())

    def fn(*flat_and_params):
        inputs = torch.utils._pytree.tree_unflatten(list(flat_and_params[: len(flat_input)]), spec)
        return tuple(leaves(m(*inputs)))

    assert gradcheck(fn, (*flat_input, *params), fast_mode=True, check_batched_grad=False)


GRADGRAD = [c for c in CONFIGS if c.values[1]["bias"] and not c.values[1]["batch_first"]]


@pytest.mark.parametrize("mode, kw", GRADGRAD)
def test_gradgrad(mode, kw):
    # ports test_modules.py::TestModule::test_gradgrad (gradgradcheck, fast mode) for the
    # configurations with bias and time-major input (a subset, to keep the file fast)
    size, args = samples(mode, kw, requires_grad=True)[1]
    m = MODES[mode][0](*size, **kw).double()
    flat_input, spec = torch.utils._pytree.tree_flatten(args)
    params = tuple(m.parameters())

    def fn(*flat_and_params):
        inputs = torch.utils._pytree.tree_unflatten(list(flat_and_params[: len(flat_input)]), spec)
        return tuple(leaves(m(*inputs)))

    assert gradgradcheck(fn, (*flat_input, *params), fast_mode=True, check_batched_grad=False)


@pytest.mark.parametrize(
    "mode, args, message",
    [
        (mode, args, message)
        for mode in MODES
        for args, message in [((10, 0, 1), "hidden_size"), ((10, 10, 0), "num_layers")]
    ],
)
def test_errors(mode, args, message):
    # ports test_modules.py::TestModule::test_errors with module_error_inputs_torch_nn_RNN_GRU
    # (used for LSTM too): ValueError at construction. Documented difference: torch says
    # "hidden_size must be greater than zero", rnnkit "hidden_size must be a positive integer".
    with pytest.raises(ValueError, match=f"{message} must be a positive integer, got 0"):
        MODES[mode][0](*args)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"bias": 0}, TypeError, "bias should be of type bool, got: int"),
        ({"bias": "yes"}, TypeError, "bias should be of type bool, got: str"),
        ({"batch_first": "False"}, TypeError, "batch_first should be of type bool, got: str"),
        ({"bidirectional": "False"}, TypeError, "bidirectional should be of type bool"),
        ({"hidden_size": 10.0}, TypeError, "hidden_size must be a positive integer, got float"),
        ({"input_size": 10.0}, TypeError, "input_size must be a positive integer, got float"),
        ({"num_layers": 2.0}, TypeError, "num_layers must be a positive integer, got float"),
        ({"input_size": 0}, ValueError, "input_size must be a positive integer, got 0"),
        ({"dropout": 1.5}, ValueError, r"dropout must be a number in \[0, 1\]"),
        ({"dropout": "0.5"}, ValueError, r"dropout must be a number in \[0, 1\]"),
        ({"dropout": True}, ValueError, r"dropout must be a number in \[0, 1\]"),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else None,
)
@pytest.mark.parametrize("mode", list(MODES))
def test_constructor_checks(mode, kwargs, error, message):
    # the argument checks of torch.nn.RNNBase.__init__ (torch/nn/modules/rnn.py), which
    # test_modules.py::test_errors relies on: the same exception types as torch; messages as
    # torch's for the booleans. Documented difference: torch does not check bidirectional (a
    # string "False" turns it on); rnnkit requires a bool.
    args = {"input_size": 10, "hidden_size": 20, "num_layers": 2, **kwargs}
    with pytest.raises(error, match=message):
        MODES[mode][0](**args)
    if "bidirectional" not in kwargs:  # torch agrees on the exception type
        with pytest.raises(error):
            MODES[mode][1](**args)


@pytest.mark.parametrize("mode", list(MODES))
def test_repr(mode):
    # ports test_modules.py::TestModule::test_repr; the repr is torch's (documented difference:
    # rnnkit.RNN's also names its nonlinearity)
    kw = dict(num_layers=2, bias=False, batch_first=True, dropout=0.5, bidirectional=True)
    ours, theirs = twin(mode, 10, 20, **kw)
    str(ours)
    expected = repr(theirs)
    if mode == "RNN":
        expected = expected[:-1] + ", nonlinearity='tanh')"
    assert repr(ours) == expected


@pytest.mark.parametrize("mode", list(MODES))
def test_pickle(mode):
    # ports test_modules.py::TestModule::test_pickle (torch.save of the module, torch.load) and
    # saving and loading its state_dict both ways with torch.nn
    m = MODES[mode][0](2, 3, num_layers=2, bidirectional=True).double()
    x = torch.randn(4, 2, 2, dtype=D)
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    copy = torch.load(buf, weights_only=False)
    assert_close(leaves(copy(x)), leaves(m(x)))
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    theirs = MODES[mode][1](2, 3, num_layers=2, bidirectional=True).double()
    theirs.load_state_dict(torch.load(buf))
    assert_close(leaves(theirs(x)), leaves(m(x)))


@pytest.mark.parametrize("mode", list(MODES))
def test_non_contiguous_tensors(mode):
    # ports test_modules.py::TestModule::test_non_contiguous_tensors: non-contiguous input,
    # state, output gradients and parameters give the contiguous results (torch.nn's)
    def noncontig(t):
        return torch.stack([torch.zeros_like(t), t], t.dim()).select(t.dim(), 1)

    ours, theirs = twin(mode, 3, 4, num_layers=2, bidirectional=True)
    x = torch.randn(5, 2, 3, dtype=D)
    hx = [torch.randn(4, 2, 4, dtype=D) for _ in range(2 if mode == "LSTM" else 1)]
    with torch.no_grad():
        for p in ours.parameters():
            p.data = noncontig(p.data)
    assert not ours.weight_hh_l0.is_contiguous()
    results = []
    for model, make in ((theirs, torch.clone), (ours, noncontig)):
        xi = make(x).requires_grad_()
        hs = [make(h).requires_grad_() for h in hx]
        assert make is torch.clone or not (xi.is_contiguous() or hs[0].is_contiguous())
        outs = leaves(model(xi, tuple(hs) if mode == "LSTM" else hs[0]))
        torch.autograd.backward(outs, [make(torch.ones_like(o)) for o in outs])
        results.append(
            [*outs, xi.grad, *(h.grad for h in hs), *(p.grad for p in model.parameters())]
        )
    assert_close(results[0], results[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", list(MODES))
def test_factory_kwargs(mode, dtype):
    # ports test_modules.py::TestModule::test_factory_kwargs: device and dtype reach every
    # parameter (and the meta device builds no storage)
    m = MODES[mode][0](2, 3, num_layers=2, bidirectional=True, device="cpu", dtype=dtype)
    for name, p in m.named_parameters():
        assert str(p.device) == "cpu" and p.dtype == dtype, name
    m = MODES[mode][0](2, 3, device="meta", dtype=dtype)
    assert all(p.is_meta and p.dtype == dtype for p in m.parameters())


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("mode", list(MODES))
def test_if_train_and_eval_modes_differ(mode, training):
    # ports test_modules.py::TestModule::test_if_train_and_eval_modes_differ: torch's ModuleInfo
    # says train_and_eval_differ=True for RNN/GRU/LSTM, so reading `training` in forward is
    # allowed; without the attribute, forward either runs or fails naming 'training'
    for size, args in samples(mode, {"bidirectional": False}):
        m = MODES[mode][0](*size, num_layers=2).double().train(training)
        delattr(m, "training")
        try:
            m(*args)
        except AttributeError as e:
            assert "'training'" in str(e)


# ---- packed sequences through the layer -------------------------------------------------------
@pytest.mark.parametrize("mode", list(MODES))
def test_forward_packed_sequence(mode):
    # ports the with_packed_sequence=True samples of module_inputs_torch_nn_RNN_GRU (packed
    # batches (5, 2, 2) with lengths [5, 3] and (5, 5, 2) with [5, 3, 3, 2, 2]) for every
    # configuration, against torch.nn
    for param in module_inputs(mode):
        kw = param.values[1]
        for shape, lengths in (((5, 2, 2), [5, 3]), ((5, 5, 2), [5, 3, 3, 2, 2])):
            ours, theirs = twin(mode, 2, 2 if mode != "LSTM" else 3, **kw)
            packed = rnn_utils.pack_padded_sequence(torch.randn(*shape, dtype=D), lengths)
            a, b = ours(packed), theirs(packed)
            assert_close(a[0].data, b[0].data)
            assert torch.equal(a[0].batch_sizes, b[0].batch_sizes)
            assert_close(leaves(a[1]), leaves(b[1]))


@pytest.mark.parametrize("enforce_sorted", [True, False])
@pytest.mark.parametrize("mode", list(MODES))
def test_pack_sequence_through_layer(mode, enforce_sorted):
    # test/nn/test_packed_sequence.py::test_pack_sequence's packings (sorted, and unsorted with
    # enforce_sorted=False) through the layer, with an initial state in the caller's batch
    # order: outputs, states and gradients equal torch.nn's
    a, b, c = (torch.randn(n, 3, dtype=D, requires_grad=True) for n in (3, 2, 1))
    seqs = [a, b, c] if enforce_sorted else [b, c, a]
    packed = rnn_utils.pack_sequence(seqs, enforce_sorted=enforce_sorted)
    if not enforce_sorted:
        assert packed.sorted_indices.tolist() == [2, 0, 1]
    ours, theirs = twin(mode, 3, 4, num_layers=2, bidirectional=True)
    h0 = tuple(torch.randn(4, 3, 4, dtype=D) for _ in range(2))
    hx = h0 if mode == "LSTM" else h0[0]
    results = []
    for model in (ours, theirs):
        out, hn = model(packed, hx)
        outs = [out.data, *leaves(hn)]
        grads = torch.autograd.grad(
            sum((o * torch.arange(o.numel()).view_as(o)).sum() for o in outs),
            seqs,
            retain_graph=True,
        )
        results.append([*outs, *grads])
        assert torch.equal(out.batch_sizes, packed.batch_sizes)
    assert_close(results[0], results[1])
    unpacked, lengths = rnn_utils.pad_packed_sequence(ours(packed)[0])
    assert lengths.tolist() == [len(s) for s in seqs]


@pytest.mark.parametrize("batch_first", [True, False])
def test_total_length(batch_first):
    # test/nn/test_packed_sequence.py::test_total_length on the layer's packed output: padding
    # to total_length after the layer, batch-first or not, as for torch.nn's output
    ours, theirs = twin("GRU", 3, 4, batch_first=batch_first)
    seqs = [torch.randn(n, 3, dtype=D) for n in (6, 4, 1)]
    packed = rnn_utils.pack_sequence(seqs)
    for total_length in (6, 7, 14):
        a = rnn_utils.pad_packed_sequence(ours(packed)[0], batch_first, total_length=total_length)
        b = rnn_utils.pad_packed_sequence(theirs(packed)[0], batch_first, total_length=total_length)
        assert_close(a, b)
        assert a[0].shape[1 if batch_first else 0] == total_length
    with pytest.raises(ValueError, match="Expected total_length to be at least"):
        rnn_utils.pad_packed_sequence(ours(packed)[0], batch_first, total_length=5)


def test_type_casts():
    # test/nn/test_packed_sequence.py::test_type_casts through the layer: a packed batch cast
    # with .float() / .double() runs through a layer of that dtype; a mismatch is refused
    seqs = [torch.randn(n, 3) for n in (4, 2)]
    packed = rnn_utils.pack_sequence(seqs)
    for cast, dtype in (("float", torch.float32), ("double", torch.float64)):
        out, hn = rnnkit.LSTM(3, 4).to(dtype)(getattr(packed, cast)())
        assert out.data.dtype == dtype and hn[0].dtype == dtype
    with pytest.raises(RuntimeError, match="input dtype torch.float64 does not match"):
        rnnkit.LSTM(3, 4)(packed.double())


def test_pack_sequence_batch_sizes_throw():
    # ports test_nn.py::TestNN::test_pack_sequence_batch_sizes_throw
    m = rnnkit.LSTM(3, 4, bidirectional=True, num_layers=2).to("meta")
    a = torch.rand(5, 3, device="meta")
    b = torch.tensor([1, 1, 1, 1, 1], device="meta")
    with pytest.raises(ValueError, match="batch_sizes should always be on CPU"):
        m(rnn_utils.PackedSequence(a, b))


@pytest.mark.parametrize(
    "enforce_sorted, lengths",
    [
        (True, [5]),
        (False, [5]),
        (True, [10, 10, 6, 2, 2, 1, 1]),
        (False, [10, 10, 6, 2, 2, 1, 1]),
        (False, [2, 1, 3, 2, 10, 5, 3]),
    ],
)
def test_variable_sequence(enforce_sorted, lengths):
    # ports test_nn.py::TestNNDeviceType::test_variable_sequence (_test_variable_sequence,
    # float64, proj_size 0; proj_size 2 is not supported): a packed batch through the layer
    # equals each sequence run alone, forward and backward, and torch.nn's result
    for use_default_hiddens in (True, False):
        max_length = max(lengths)
        x_leaf = torch.randn(max_length, len(lengths), 3, dtype=D, requires_grad=True)
        lstm, reference = twin("LSTM", 3, 4, bidirectional=True, num_layers=2)
        lstm2 = deepcopy(lstm)
        hidden0 = None
        if not use_default_hiddens:
            hidden0 = tuple(torch.randn(4, len(lengths), 4, dtype=D) for _ in range(2))
        seq_outs, seq_hiddens = [], []
        for i, n in enumerate(lengths):
            hidden_i = None if hidden0 is None else tuple(h[:, i : i + 1] for h in hidden0)
            out, hid = lstm2(x_leaf[:n, i : i + 1], hidden_i)
            seq_outs.append(torch.cat([out, out.new_zeros(max_length - n, 1, 8)]))
            seq_hiddens.append(hid)
        seq_out = torch.cat(seq_outs, 1)
        seq_hidden = tuple(torch.cat(hids, 1) for hids in zip(*seq_hiddens, strict=True))
        packed = rnn_utils.pack_padded_sequence(x_leaf, lengths, enforce_sorted=enforce_sorted)
        packed_out, packed_hidden = lstm(packed, hidden0)
        unpacked, unpacked_len = rnn_utils.pad_packed_sequence(packed_out)
        assert_close(packed_hidden, seq_hidden)
        assert_close(unpacked, seq_out)
        assert unpacked_len.tolist() == lengths
        ref_out, ref_hidden = reference(packed, hidden0)
        assert_close(packed_out.data, ref_out.data)
        assert_close(packed_hidden, ref_hidden)
        seq_out.sum().backward()
        grad_x = x_leaf.grad.clone()
        x_leaf.grad.zero_()
        unpacked.sum().backward()
        assert_close(x_leaf.grad, grad_x)
        for p1, p2 in zip(lstm.parameters(), lstm2.parameters(), strict=True):
            assert_close(p1.grad, p2.grad)
