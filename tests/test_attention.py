"""Attention: weights are a distribution over the real positions, padding gets none, the scores
follow the papers' formulas (checked against a naive per-position loop), gradients pass
gradcheck in float64."""

import pytest
import torch
from torch.func import functional_call

from rnnkit.attention import (
    AdditiveAttention,
    GatedAttention,
    LocationAttention,
    MultiplicativeAttention,
    make_attention,
    masked_softmax,
)

B, S, Q, M = 3, 5, 4, 4
KINDS = ["bahdanau", "location", "luong-dot", "luong-general"]


def inputs(dtype=torch.float32):
    query = torch.randn(B, Q, dtype=dtype)
    memory = torch.randn(B, S, M, dtype=dtype)
    lengths = torch.tensor([5, 3, 1])
    mask = torch.arange(S) < lengths[:, None]
    return query, memory, mask


@pytest.mark.parametrize("kind", KINDS)
def test_weights_sum_to_one_over_real_positions_and_padding_gets_zero(kind):
    attn = make_attention(kind, Q, M, 6)
    query, memory, mask = inputs()
    context, alpha = attn(query, memory, mask)
    assert alpha.shape == (B, S) and context.shape == (B, M)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(B))
    assert (alpha[~mask] == 0).all()
    assert (alpha[mask] > 0).all()
    # what sits at the padded positions changes nothing
    noisy = memory.masked_fill(~mask[..., None], 1e3)
    context2, alpha2 = attn(query, noisy, mask)
    torch.testing.assert_close(alpha2, alpha)
    torch.testing.assert_close(context2, context)


def naive(attn, query, memory, mask):
    """Per-position scores from the papers' formulas, then a softmax over the real ones."""
    rows = []
    for b in range(B):
        e = []
        for s in range(int(mask[b].sum())):
            q, m = query[b], memory[b, s]
            if isinstance(attn, AdditiveAttention):  # vᵀ tanh(W_q q + W_m m + b)
                hidden = attn.query.weight @ q + attn.memory.weight @ m + attn.memory.bias
                e.append(attn.v.weight[0] @ torch.tanh(hidden))
            elif attn.kind == "dot":  # qᵀ m
                e.append(q @ m)
            else:  # qᵀ W_a m
                e.append(q @ (attn.weight.weight @ m))
        a = torch.softmax(torch.stack(e), 0)
        rows.append(torch.cat([a, torch.zeros(S - len(e))]))
    alpha = torch.stack(rows)
    return torch.einsum("bs,bsm->bm", alpha, memory), alpha


@pytest.mark.parametrize("kind", KINDS)
def test_scores_match_the_formulas(kind):
    attn = make_attention(kind, Q, M, 6)
    query, memory, mask = inputs()
    context, alpha = attn(query, memory, mask)
    want_context, want_alpha = naive(attn, query, memory, mask)
    torch.testing.assert_close(alpha, want_alpha)
    torch.testing.assert_close(context, want_context)


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_float64(kind):
    attn = make_attention(kind, Q, M, 6).double()
    query, memory, mask = inputs(torch.float64)
    names = [n for n, _ in attn.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in attn.parameters())

    def f(q, m, *ps):
        context, alpha = functional_call(attn, dict(zip(names, ps, strict=True)), (q, m, mask))
        return context, alpha

    args = (query.requires_grad_(), memory.requires_grad_(), *params)
    assert torch.autograd.gradcheck(f, args)


def test_precomputed_keys_give_the_same_result():
    for attn in (AdditiveAttention(Q, M, 6), MultiplicativeAttention(Q, M, "general")):
        query, memory, mask = inputs()
        a = attn(query, memory, mask)
        b = attn(query, memory, mask, keys=attn.keys(memory))
        torch.testing.assert_close(a, b)


def test_all_masked_row_is_zero_not_nan():
    scores = torch.randn(2, 3)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    w = masked_softmax(scores, mask)
    assert not w.isnan().any()
    assert (w[1] == 0).all() and w[0, 1] == 0


def test_bad_options():
    with pytest.raises(ValueError, match="equal query and memory widths"):
        MultiplicativeAttention(4, 6, "dot")
    with pytest.raises(ValueError, match="attention must be one of"):
        make_attention("cosine", 4, 4)


def test_registry_names_every_kind_once_and_says_when_it_queries():
    from rnnkit.attention import ATTENTION
    from rnnkit.attention import KINDS as NAMES

    assert list(ATTENTION) == KINDS and NAMES == tuple(KINDS)
    for kind, cls in ATTENTION.items():
        attn = make_attention(kind, Q, M, 6)
        assert type(attn) is cls
        assert attn.queries_before_step == (kind in ("bahdanau", "location"))
        assert attn.uses_previous == (kind == "location")
    assert make_attention("bahdanau", Q, M).query.out_features == Q  # attention_size 0: Q
    with pytest.raises(ValueError, match="memory_size must be >= 1"):
        make_attention("luong-general", Q, 0)


def previous_weights(dtype=torch.float32):
    _, _, mask = inputs(dtype)
    return masked_softmax(torch.randn(B, S, dtype=dtype), mask)


def test_location_attention_scores_with_the_previous_weights():
    """e_s = vᵀ tanh(W_q q + W_m m_s + b + U f_s), f = the filters ∗ α_{t-1} (zero-padded),
    checked by a loop over positions and filter taps; and the weights move with α_{t-1}."""
    torch.manual_seed(0)
    attn = LocationAttention(Q, M, 6, filters=3, width=3)
    query, memory, mask = inputs()
    prev = previous_weights()
    context, alpha = attn(query, memory, mask, previous=prev)
    F = attn.conv.weight[:, 0]  # (filters, width)
    rows = []
    for b in range(B):
        e = []
        for s in range(int(mask[b].sum())):
            taps = [prev[b, s + j - 1] if 0 <= s + j - 1 < S else 0.0 for j in range(3)]
            f = torch.stack([sum(F[k, j] * taps[j] for j in range(3)) for k in range(3)])
            hidden = (
                attn.query.weight @ query[b]
                + attn.memory.weight @ memory[b, s]
                + attn.memory.bias
                + attn.location.weight @ f
            )
            e.append(attn.v.weight[0] @ torch.tanh(hidden))
        a = torch.softmax(torch.stack(e), 0)
        rows.append(torch.cat([a, torch.zeros(S - len(e))]))
    torch.testing.assert_close(alpha, torch.stack(rows))
    torch.testing.assert_close(context, torch.einsum("bs,bsm->bm", alpha, memory))
    _, moved = attn(query, memory, mask, previous=prev.roll(1, dims=1) * mask)
    assert not torch.allclose(moved, alpha)


def test_location_attention_gradcheck_through_the_previous_weights():
    attn = LocationAttention(Q, M, 6, filters=2, width=5).double()
    query, memory, mask = inputs(torch.float64)
    prev = previous_weights(torch.float64).requires_grad_()
    names = [n for n, _ in attn.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in attn.parameters())

    def f(q, m, a, *ps):
        return functional_call(
            attn, dict(zip(names, ps, strict=True)), (q, m, mask), {"previous": a}
        )

    args = (query.requires_grad_(), memory.requires_grad_(), prev, *params)
    assert torch.autograd.gradcheck(f, args)


def test_gated_location_attention_passes_the_previous_weights_on():
    inner = LocationAttention(Q, M, 6)
    gated = GatedAttention(inner, Q)
    query, memory, mask = inputs()
    prev = previous_weights()
    _, alpha = gated(query, memory, mask, previous=prev)
    torch.testing.assert_close(alpha, inner(query, memory, mask, previous=prev)[1])
    assert gated.uses_previous and gated.queries_before_step
    with pytest.raises(ValueError, match="width must be odd"):
        LocationAttention(Q, M, width=4)
