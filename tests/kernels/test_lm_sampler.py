"""The compiled language-model sampler (rnnkit.kernels.fused.lm_sampler) against the model it
packs: logits and the filtered distribution per step equal to stepping the PyTorch model, the
same tokens as ``rnnkit.decoding.sample_sequence`` for the same seed, and the fallback (None) for
every model it does not take."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rnnkit.decoding import filter_logits, sample_sequence
from rnnkit.errors import UserError
from rnnkit.kernels import fused, set_backend
from rnnkit.kernels.fused import lm_sampler
from rnnkit.tasks.lm import LanguageModel, ModelConfig
from rnnkit.tasks.lm_commands import continue_ids

pytestmark = pytest.mark.skipif(not fused.available(), reason="no C++ compiler here")

V = 70  # not a multiple of the 64-row panels
TOKENS = [3, 0, 69, 12, 12, 5, 41]
OPTIONS = [
    {"temperature": 1.0},
    {"temperature": 0.7, "top_k": 5},
    {"top_p": 0.9},
    {"temperature": 1.3, "top_k": 10, "top_p": 0.8},
    {"greedy": True},
]


def lm(cell: str = "lstm", **options) -> LanguageModel:
    torch.manual_seed(0)
    cfg = {"embedding_size": 12, "hidden_size": 20, "num_layers": 2, **options}
    return LanguageModel(V, ModelConfig(cell=cell, **cfg)).eval()


class Twin(nn.Module):
    """The same model over torch.nn.LSTM or torch.nn.GRU, with LanguageModel's step."""

    def __init__(self, kind: type[nn.Module], bias: bool) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.embedding = nn.Embedding(V, 9)
        self.rnn = kind(9, 33, 2, bias=bias)
        self.head = nn.Linear(33, V, bias=bias)

    def step(self, ids: torch.Tensor, state=None):
        ys, state = self.rnn(self.embedding(ids).unsqueeze(0), state)
        return self.head(ys[0]), state


MODELS = {
    "lstm": lambda: lm("lstm"),
    "gru": lambda: lm("gru"),
    "lstm-1-layer-tied": lambda: lm("lstm", embedding_size=20, num_layers=1, tie_weights=True),
    "torch.nn.LSTM-nobias": lambda: Twin(nn.LSTM, bias=False).eval(),
    "torch.nn.GRU": lambda: Twin(nn.GRU, bias=True).eval(),
}


@pytest.mark.parametrize("table", [True, False], ids=["table", "no-table"])
@pytest.mark.parametrize("name", list(MODELS))
def test_logits_and_distribution_equal_the_model(name: str, table: bool, monkeypatch) -> None:
    """Per step, for a fixed token sequence: the logits, and p = softmax(filter_logits(logits))
    under temperature, top-k and top-p, equal the PyTorch model's to 1e-5."""
    if not table:
        monkeypatch.setattr(lm_sampler, "TABLE_BYTES", 0)
    model = MODELS[name]()
    packed = lm_sampler.PackedLM(model.embedding, model.rnn, model.head)
    assert (packed.table is not None) == table
    greedy = lm_sampler.Stepper(packed, greedy=True)
    choose = {"temperature": 0.8, "top_k": 30, "top_p": 0.95}
    filtered = lm_sampler.Stepper(packed, **choose)
    q = torch.ones(1, V)
    state = None
    with torch.no_grad():
        for token in TOKENS:
            logits, state = model.step(torch.tensor([token]), state)
            greedy.step(token)
            filtered.step(token, q=q)
            torch.testing.assert_close(greedy.logits, logits[0], rtol=1e-5, atol=1e-5)
            p = torch.softmax(filter_logits(logits, **choose), -1)[0]
            torch.testing.assert_close(filtered.probs, p, rtol=1e-5, atol=1e-6)
            assert (filtered.probs > 0).sum() == (p > 0).sum()


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o))
@pytest.mark.parametrize("name", ["lstm", "gru", "torch.nn.LSTM-nobias"])
def test_same_tokens_as_sample_sequence(name: str, options: dict) -> None:
    """The draw is torch.multinomial's (argmax p / q, q ~ Exp(1) from the same generator), so a
    seed gives the same tokens as the generic loop."""
    model = MODELS[name]()
    packed = lm_sampler.packed_model(model)
    assert packed is not None
    for seed in (0, 7):
        want = sample_sequence(
            model.step, None, [4, 9], 120, generator=torch.Generator().manual_seed(seed), **options
        )
        got = lm_sampler.sample(
            packed, [4, 9], 120, generator=torch.Generator().manual_seed(seed), **options
        )
        assert got == want


def test_ordinary_pages_give_the_same_tokens() -> None:
    model = lm("lstm")
    huge, small = (lm_sampler.PackedLM(model.embedding, model.rnn, model.head, h) for h in (1, 0))
    runs = [
        lm_sampler.sample(p, [1], 50, generator=torch.Generator().manual_seed(3))
        for p in (huge, small)
    ]
    assert runs[0] == runs[1]


@pytest.mark.parametrize(
    "make",
    [
        lambda: lm("lstm", peephole=True),
        lambda: lm("lstm", layer_norm=True),
        lambda: lm("lstm", residual=True, embedding_size=20),
        lambda: lm("mingru"),
        lambda: lm("elman"),
        lambda: lm("lstm").double(),
        lambda: lm("lstm", dropout=0.2).train(),
    ],
    ids=["peephole", "layer_norm", "residual", "mingru", "elman", "float64", "training-dropout"],
)
def test_other_models_fall_back(make) -> None:
    model = make()
    assert lm_sampler.packed_model(model) is None
    ids = continue_ids(model, [1, 2], 5, generator=torch.Generator().manual_seed(0))
    assert len(ids) == 5


def test_backend_torch_falls_back_and_the_cache_follows_the_weights() -> None:
    model = lm("lstm")
    with set_backend("fused", "torch"):
        assert lm_sampler.packed_model(model) is None
    first = lm_sampler.packed_model(model)
    assert lm_sampler.packed_model(model) is first
    with torch.no_grad():
        model.head.bias.add_(1.0)  # an in-place update: the version counter moves
    assert lm_sampler.packed_model(model) is not first


def test_continue_ids_checks_options_and_tokens() -> None:
    model = lm("gru")
    want = sample_sequence(model.step, None, [5], 30, top_k=3, generator=torch.Generator())
    assert len(continue_ids(model, [5], 30, top_k=3, generator=torch.Generator())) == len(want)
    with pytest.raises(UserError, match="top_k must be an integer >= 1"):
        continue_ids(model, [5], 30, top_k=0)
    with pytest.raises(UserError, match="temperature must be > 0"):
        continue_ids(model, [5], 30, temperature=0.0)
    assert continue_ids(model, [5], 30, temperature=0.0, greedy=True) == sample_sequence(
        model.step, None, [5], 30, greedy=True
    )
    assert continue_ids(model, [5], 0) == []
    with pytest.raises(ValueError, match="token must be in"):
        continue_ids(model, [V], 3)
