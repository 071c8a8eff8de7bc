"""The attention decoder kernel (rnnkit.kernels.attention_decoder): gradcheck of its Function
for every cell, attention kind and depth with a padded source, the whole Seq2Seq equal to the
step loop (loss, weights, every parameter gradient; dropout included), and the fallbacks."""

import pytest
import torch

from rnnkit.attention import GatedAttention
from rnnkit.cells.gru import GRUCell
from rnnkit.data.pairs import make_batch
from rnnkit.kernels import attention_decoder_run
from rnnkit.kernels.attention_decoder import AttentionDecoderBPTT
from rnnkit.kernels.attention_decoder_run import applies
from rnnkit.seq2seq import Seq2Seq, sequence_loss
from rnnkit.tasks.seq2seq_config import Seq2SeqConfig

KINDS = ["bahdanau", "luong-dot", "luong-general"]


def function_inputs(cell: str, kind: str, layers: int, steps: int = 3):
    """The Function on tiny random inputs: (call, the differentiable tensors). The source has
    S = 3 positions; ``steps`` T (Bahdanau projects the memory once where S <= T)."""
    g = torch.Generator().manual_seed(0)
    T, B, S, H, A = steps, 2, 3, 3, 2
    M = H if kind == "luong-dot" else 4
    G = (4 if cell == "lstm" else 3) * H
    I0 = M if kind == "bahdanau" else H  # what W_x multiplies: the context, or h̃_{t-1}

    def r(*shape):
        return (0.5 * torch.randn(*shape, generator=g, dtype=torch.float64)).requires_grad_()

    pad = torch.tensor([[False, False, False], [False, False, True]])  # the 2nd source: 2 long
    tensors = {"xg": r(T, B, G), "memory": r(B, S, M), "weight_x": r(G, I0)}
    if kind == "bahdanau":
        tensors |= {"keys": r(B, S, A), "weight_a": r(A, H), "vector_a": r(1, A)}
    else:
        tensors |= {"feed0": r(B, H), "weight_a": r(H, H + M), "vector_a": r(H)}
        if kind == "luong-general":
            tensors["keys"] = r(B, S, H)
    drops = {}
    for l in range(layers):
        tensors |= {f"h0_{l}": r(B, H), f"weight_hh_{l}": r(G, H), f"bias_hh_{l}": r(G)}
        if cell == "lstm":
            tensors[f"c0_{l}"] = r(B, H)
        if l > 0:
            tensors |= {f"weight_ih_{l}": r(G, H), f"bias_ih_{l}": r(G)}
            drops[l] = torch.bernoulli(torch.full((T, B, H), 0.7, dtype=torch.float64), generator=g)
    names = list(tensors)

    def call(*values):
        t = dict(zip(names, values, strict=True))
        flat = []
        for l in range(layers):
            flat += [
                t[f"h0_{l}"],
                t.get(f"c0_{l}"),
                t.get(f"weight_ih_{l}"),
                t.get(f"bias_ih_{l}"),
                t[f"weight_hh_{l}"],
                t[f"bias_hh_{l}"],
                drops.get(l),
            ]
        keys = t["memory"] if kind == "luong-dot" else t["keys"]
        return AttentionDecoderBPTT.apply(
            "bahdanau" if kind == "bahdanau" else "luong",
            cell,
            pad,
            t["xg"],
            t["memory"],
            keys,
            t.get("feed0"),
            t["weight_x"],
            t["weight_a"],
            t["vector_a"],
            *flat,
        )

    return call, [tensors[n] for n in names]


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_gradcheck(cell, kind, layers):
    """Every input's gradient (states, memory, keys, weights, h̃_0) against finite differences,
    through all outputs (s, c, α and h̃), a padded source and dropout between the layers."""
    call, inputs = function_inputs(cell, kind, layers)
    assert torch.autograd.gradcheck(call, inputs)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_gradcheck_bahdanau_source_longer_than_target(cell):
    """S > T: Bahdanau's W_x c_t a product a step instead of the projected memory."""
    call, inputs = function_inputs(cell, "bahdanau", 2, steps=2)
    assert torch.autograd.gradcheck(call, inputs)


def test_padding_gets_zero_weight_and_no_gradient():
    call, inputs = function_inputs("gru", "bahdanau", 1)
    s, c, alpha = call(*inputs)
    assert (alpha[:, 1, 2] == 0).all()
    torch.testing.assert_close(alpha.sum(-1), torch.ones(3, 2, dtype=torch.float64))
    memory = inputs[1]
    (grad,) = torch.autograd.grad((s.sum() + c.sum() + alpha.sum()), memory)
    assert (grad[1, 2] == 0).all()


def batch(short_source: bool = False):
    sources = [[4, 5, 6, 7, 8], [9, 4], [5, 5, 6]]
    targets = [[4, 5, 6], [7], [8, 9, 4, 5]]
    if short_source:  # S 3 < T 7
        sources, targets = [[4, 5], [9], [5, 6]], [[4, 5, 6, 7, 8, 9], [7], [8, 9, 4, 5]]
    return make_batch(sources, targets, [0, 1, 2])


def model(**kw) -> Seq2Seq:
    cfg = Seq2SeqConfig(embedding_size=5, hidden_size=6, attention_size=4)
    for k, v in kw.items():
        setattr(cfg, k, v)
    return Seq2Seq(12, 10, cfg).double()


def loss_and_grads(m: Seq2Seq, kernel: bool, short_source: bool = False):
    m.decoder.use_kernel = kernel
    b = batch(short_source)
    torch.manual_seed(1)  # the same dropout masks in both runs
    logits, alpha = m(b.src, b.src_lengths, b.tgt_in)
    loss = sequence_loss(logits, b.tgt_out)[0] + (alpha * alpha).sum()
    return loss, alpha, torch.autograd.grad(loss, list(m.parameters()), allow_unused=True)


CASES = [
    (cell, attention, layers, dropout, False)
    for cell in ("gru", "lstm")
    for attention in KINDS
    for layers in (1, 2)
    for dropout in (0.0, 0.3)
] + [("gru", "bahdanau", 2, 0.3, True), ("lstm", "bahdanau", 1, 0.3, True)]


@pytest.mark.parametrize("cell,attention,layers,dropout,short_source", CASES)
def test_seq2seq_kernel_equals_the_step_loop(cell, attention, layers, dropout, short_source):
    """The loss, the attention weights and every parameter's gradient of the whole model are
    the step loop's (float64), in training mode with dropout drawing the same masks; sources
    longer and shorter than the targets (Bahdanau's two ways to apply W_x to the context)."""
    torch.manual_seed(0)
    m = model(cell=cell, attention=attention, decoder_layers=layers, dropout=dropout).train()
    assert applies(m.decoder)
    loss, alpha, grads = loss_and_grads(m, True, short_source)
    loss_ref, alpha_ref, grads_ref = loss_and_grads(m, False, short_source)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(alpha, alpha_ref, rtol=1e-12, atol=1e-12)
    for (name, _), g, h in zip(m.named_parameters(), grads, grads_ref, strict=True):
        if g is None or h is None:
            assert g is None and h is None, name
        else:
            torch.testing.assert_close(g, h, rtol=1e-10, atol=1e-12, msg=name)


def test_run_uses_the_kernel_only_where_it_applies(monkeypatch):
    calls = []
    real = attention_decoder_run.run_decoder

    def counting(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(attention_decoder_run, "run_decoder", counting)
    b = batch()

    def runs_kernel(m: Seq2Seq, **kw) -> bool:
        calls.clear()
        m(b.src, b.src_lengths, b.tgt_in, **kw)
        return bool(calls)

    torch.manual_seed(0)
    m = model(attention="bahdanau")
    assert runs_kernel(m)
    assert not runs_kernel(m, teacher_forcing=0.5)  # scheduled sampling: the step loop
    m.decoder.use_kernel = False
    assert not runs_kernel(m)
    gated = model(attention="bahdanau")
    gated.decoder.attention = GatedAttention(gated.decoder.attention, 6).double()
    assert not applies(gated.decoder) and not runs_kernel(gated)
    cho = model(attention="luong-general")
    cho.decoder.cells[0] = GRUCell(5 + 6, 6, reset_after=False).double()
    assert not applies(cho.decoder) and not runs_kernel(cho)
    elman = model(attention="bahdanau", cell="elman")
    assert not applies(elman.decoder) and not runs_kernel(elman)
    no_feeding = model(attention="luong-dot", input_feeding=False)
    assert not applies(no_feeding.decoder) and not runs_kernel(no_feeding)  # Decoder.sequence


def test_second_derivatives_raise_one_line_error():
    call, inputs = function_inputs("gru", "bahdanau", 1)
    s, _, _ = call(*inputs)
    with pytest.raises(RuntimeError, match=r"^second derivatives .*use_kernel = False[^\n]*$"):
        torch.autograd.grad(s.pow(2).sum(), inputs[0], create_graph=True)
