"""Each cell, one step, against an independent reference: torch.nn's cells or the equations."""

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import rnnkit
from reference import gru_reset_before_step, jordan_loop, lstm_step, minimal_gru_step

D = torch.float64


def grads(outputs, inputs):
    total = sum((o * torch.randn_like(o)).sum() for o in outputs)
    return torch.autograd.grad(total, inputs)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda: rnnkit.ElmanCell(3, 4), lambda: nn.RNNCell(3, 4)),
        (
            lambda: rnnkit.ElmanCell(3, 4, nonlinearity="relu"),
            lambda: nn.RNNCell(3, 4, nonlinearity="relu"),
        ),
        (lambda: rnnkit.ElmanCell(3, 4, bias=False), lambda: nn.RNNCell(3, 4, bias=False)),
        (lambda: rnnkit.LSTMCell(3, 4), lambda: nn.LSTMCell(3, 4)),
        (lambda: rnnkit.LSTMCell(3, 4, bias=False), lambda: nn.LSTMCell(3, 4, bias=False)),
        (lambda: rnnkit.GRUCell(3, 4), lambda: nn.GRUCell(3, 4)),
        (lambda: rnnkit.GRUCell(3, 4, bias=False), lambda: nn.GRUCell(3, 4, bias=False)),
    ],
)
def test_cell_equals_torch_two_steps(ours, theirs):
    ours, theirs = ours().to(D), theirs().to(D)
    assert ours.load_state_dict(theirs.state_dict()) is not None
    x1, x2 = torch.randn(2, 5, 3, dtype=D).unbind(0)
    is_lstm = isinstance(theirs, nn.LSTMCell)
    s0 = ours.init_state(5)
    s0 = tuple(s.requires_grad_() for s in s0) if is_lstm else s0.requires_grad_()
    y1, s1 = ours(x1, s0)
    y2, s2 = ours(x2, s1)
    r1 = theirs(x1, s0)
    r2 = theirs(x2, r1)
    ref_y2 = r2[0] if is_lstm else r2
    assert_close(y2, ref_y2, rtol=0, atol=1e-12)
    if is_lstm:
        assert_close(s2[1], r2[1], rtol=0, atol=1e-12)
    ps = list(ours.parameters())
    s0s = list(s0) if is_lstm else [s0]
    torch.manual_seed(1)
    g_ours = grads([y2], ps + s0s)
    torch.manual_seed(1)
    g_ref = grads([ref_y2], list(theirs.parameters()) + s0s)
    for a, b in zip(g_ours, g_ref, strict=True):
        assert_close(a, b, rtol=0, atol=1e-12)


def test_minimal_gru_equals_lecture_equations():
    cell = rnnkit.MinimalGRUCell(3, 4).to(D)
    x, c = torch.randn(5, 3, dtype=D), torch.randn(5, 4, dtype=D)
    Wu_x, Wc_x = cell.weight_ih.chunk(2)
    Wu_c, Wc_c = cell.weight_hh.chunk(2)
    bu = cell.bias_ih[:4] + cell.bias_hh[:4]
    bc = cell.bias_ih[4:] + cell.bias_hh[4:]
    W_u, W_c = torch.cat([Wu_c, Wu_x], 1), torch.cat([Wc_c, Wc_x], 1)  # W [c_{t-1}, x_t]
    y, c1 = cell(x, c)
    assert_close(c1, minimal_gru_step(x, c, W_u, bu, W_c, bc))
    assert y is c1


def test_gru_reset_before_equals_cho_equations():
    cell = rnnkit.GRUCell(3, 4, reset_after=False).to(D)
    x, h = torch.randn(5, 3, dtype=D), torch.randn(5, 4, dtype=D)
    ref = gru_reset_before_step(x, h, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    assert_close(cell(x, h)[0], ref)
    # and it is a different function from torch's reset-after GRU on the same weights
    after = rnnkit.GRUCell(3, 4).to(D)
    after.load_state_dict(cell.state_dict())
    assert (after(x, h)[0] - ref).abs().max() > 1e-3


@pytest.mark.parametrize("peephole, layer_norm", [(True, False), (False, True), (True, True)])
def test_lstm_options_equal_equations(peephole, layer_norm):
    cell = rnnkit.LSTMCell(3, 4, peephole=peephole, layer_norm=layer_norm).to(D)
    with torch.no_grad():  # move the layer-norm gains off their initial 1 and 0
        for p in cell.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x, h, c = torch.randn(5, 3, dtype=D), torch.randn(5, 4, dtype=D), torch.randn(5, 4, dtype=D)
    y, (h1, c1) = cell(x, (h, c))
    rh, rc = lstm_step(x, h, c, dict(cell.named_parameters()), peephole, layer_norm)
    assert_close(h1, rh)
    assert_close(c1, rc)
    assert y is h1


@pytest.mark.parametrize("g", ["identity", "tanh", "sigmoid", "softmax"])
def test_jordan_equals_naive_loop(g):
    cell = rnnkit.JordanCell(3, 5, output_size=4, output_nonlinearity=g).to(D)
    xs, y0 = torch.randn(6, 2, 3, dtype=D), torch.randn(2, 4, dtype=D)
    acts = {"identity": lambda a: a, "tanh": torch.tanh, "sigmoid": torch.sigmoid}
    acts["softmax"] = lambda a: torch.softmax(a, -1)
    p = dict(cell.named_parameters())
    ref_ys, ref_y = jordan_loop(
        xs, y0, p["weight_ih"], p["bias_ih"], p["weight_yh"], p["bias_yh"], p["weight_hy"],
        p["bias_hy"], torch.tanh, acts[g],
    )  # fmt: skip
    ys, y = rnnkit.Recurrent(cell, use_kernel=False)(xs, y0)
    assert_close(ys, ref_ys)
    assert_close(y, ref_y)
    if g == "softmax":
        assert_close(ys.sum(-1), torch.ones(6, 2, dtype=D))


def test_parameter_layouts():
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.named_parameters()}  # noqa: E731
    assert shapes(rnnkit.LSTMCell(3, 4, peephole=True, layer_norm=True)) == {
        "weight_ih": (16, 3), "weight_hh": (16, 4), "bias_ih": (16,), "bias_hh": (16,),
        "weight_ci": (4,), "weight_cf": (4,), "weight_co": (4,),
        "weight_ln_ih": (16,), "weight_ln_hh": (16,), "weight_ln_c": (4,), "bias_ln_c": (4,),
    }  # fmt: skip
    assert shapes(rnnkit.GRUCell(3, 4)) == {
        "weight_ih": (12, 3),
        "weight_hh": (12, 4),
        "bias_ih": (12,),
        "bias_hh": (12,),
    }
    assert shapes(rnnkit.MinimalGRUCell(3, 4, bias=False)) == {
        "weight_ih": (8, 3),
        "weight_hh": (8, 4),
    }
    assert shapes(rnnkit.JordanCell(3, 4, output_size=2)) == {
        "weight_ih": (4, 3), "weight_yh": (4, 2), "bias_ih": (4,), "bias_yh": (4,),
        "weight_hy": (2, 4), "bias_hy": (2,),
    }  # fmt: skip
    assert shapes(rnnkit.ElmanCell(3, 4)) == {
        "weight_ih": (4, 3),
        "weight_hh": (4, 4),
        "bias_ih": (4,),
        "bias_hh": (4,),
    }


def test_initialisation():
    cell = rnnkit.LSTMCell(3, 16, forget_bias=1.0, layer_norm=True)
    assert torch.all(cell.bias_ih[16:32] == 1.0) and torch.all(cell.bias_hh[16:32] == 0.0)
    assert torch.all(cell.weight_ln_ih == 1) and torch.all(cell.bias_ln_c == 0)
    bound = 1 / 16**0.5  # torch's U(-1/sqrt(H), 1/sqrt(H))
    assert cell.weight_hh.abs().max() <= bound and cell.weight_hh.abs().max() > 0.8 * bound


def test_init_state_shapes_and_dtype():
    h, c = rnnkit.LSTMCell(3, 4).to(D).init_state(7)
    assert h.shape == c.shape == (7, 4) and h.dtype == D
    assert rnnkit.JordanCell(3, 4, output_size=2).init_state(5).shape == (5, 2)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: rnnkit.ElmanCell(3, 4, nonlinearity="softsign"), "nonlinearity must be one of"),
        (lambda: rnnkit.ElmanCell(0, 4), "input_size must be a positive integer"),
        (lambda: rnnkit.LSTMCell(3, 4, bias=False, forget_bias=1.0), "forget_bias needs bias"),
        (lambda: rnnkit.JordanCell(3, 4, output_nonlinearity="relu"), "output_nonlinearity"),
    ],
)
def test_bad_arguments_raise_one_line_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "make",
    [
        lambda: rnnkit.ElmanCell(2, 3, nonlinearity="sigmoid"),
        lambda: rnnkit.JordanCell(2, 3, output_size=2, output_nonlinearity="softmax"),
        lambda: rnnkit.LSTMCell(2, 3, peephole=True, layer_norm=True),
        lambda: rnnkit.GRUCell(2, 3, reset_after=False),
        lambda: rnnkit.MinimalGRUCell(2, 3),
    ],
)
def test_cell_gradcheck(make):
    cell = make().to(D)
    names, params = zip(*cell.named_parameters(), strict=True)
    x = torch.randn(2, 2, dtype=D, requires_grad=True)
    state = cell.init_state(2)
    state = (
        tuple(torch.randn_like(s).requires_grad_() for s in state)
        if isinstance(state, tuple)
        else torch.randn_like(state).requires_grad_()
    )
    flat_state = state if isinstance(state, tuple) else (state,)

    def f(x, *args):
        ps, ss = args[: len(names)], args[len(names) :]
        s = ss if isinstance(state, tuple) else ss[0]
        y, new = torch.func.functional_call(cell, dict(zip(names, ps, strict=True)), (x, s))
        return (y, *new) if isinstance(new, tuple) else (y, new)

    inputs = (x, *[p.detach().requires_grad_() for p in params], *flat_state)
    assert torch.autograd.gradcheck(f, inputs)


# --- cells are pure, and the registry of their names ---


def test_cells_import_nothing_from_kernels_or_layers():
    """A cell is one step and its equations: no module of rnnkit.cells imports a kernel."""
    import ast
    from pathlib import Path

    for path in Path(rnnkit.cells.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert not name.startswith(("rnnkit.kernels", "rnnkit.layers")), (path, name)


def test_registry_names_each_cell_once_and_derives_the_layers():
    from rnnkit.cells import REGISTRY, cell_name, cell_names
    from rnnkit.kernels import KERNELS
    from rnnkit.layers.stepper import STEPS
    from rnnkit.layers.torch_compat import BY_NAME

    assert cell_names() == ("lstm", "gru", "mingru", "elman", "jordan")
    assert set(BY_NAME) == set(REGISTRY)
    assert all(BY_NAME[name].cell_class is info.cls for name, info in REGISTRY.items())
    assert set(KERNELS) == {info.cls for info in REGISTRY.values()}
    assert set(STEPS) <= set(REGISTRY)
    assert cell_names(output_projection=False) == ("lstm", "gru", "mingru", "elman")
    assert cell_names(chrono_init=True) == ("lstm", "gru", "mingru")
    assert cell_names(cell_state=True, peephole=True) == ("lstm",)
    assert REGISTRY["elman"].nonlinearities == ("tanh", "relu", "sigmoid", "identity")
    for info in REGISTRY.values():
        cell = info.cls(2, 3)
        assert cell.weight_ih.shape == (info.gates * 3, 2), info
    from rnnkit.layers.initialisation import KEEP_GATES

    assert tuple(KEEP_GATES) == cell_names(chrono_init=True)

    class Sub(rnnkit.ElmanCell):
        pass

    assert cell_name(rnnkit.ElmanCell(2, 3)) == "elman" and cell_name(Sub(2, 3)) is None
    with pytest.raises(TypeError, match="unknown cell capabilities"):
        cell_names(peepholes=True)
