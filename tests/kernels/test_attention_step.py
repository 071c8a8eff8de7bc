"""The decoding step on the memory projected once (rnnkit.kernels.attention_step) against the
plain step, and where it applies."""

from __future__ import annotations

import pytest
import torch

from rnnkit.decoding import beam_search, select_rows
from rnnkit.kernels import attention_step
from rnnkit.kernels.fused import available
from rnnkit.seq2seq import Seq2Seq
from rnnkit.tasks.seq2seq_config import Seq2SeqConfig
from rnnkit.tasks.seq2seq_task import BOS, EOS

SOURCES = torch.tensor([[4, 5, 6, 7, 8], [9, 4, 0, 0, 0], [5, 5, 6, 0, 0]]).t()  # (S, B), 0 pad
LENGTHS = torch.tensor([5, 2, 3])


def model(dtype=torch.float64, vocab: int = 10, **kw) -> Seq2Seq:
    cfg = Seq2SeqConfig(embedding_size=5, hidden_size=6, attention_size=4, dropout=0.2)
    for k, v in kw.items():
        setattr(cfg, k, v)
    return Seq2Seq(12, vocab, cfg).to(dtype).eval()


def assert_same_structure(a, b, **tol) -> None:
    if isinstance(a, tuple):
        for x, y in zip(a, b, strict=True):
            assert_same_structure(x, y, **tol)
    else:
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("vocab", [10, attention_step.TABLE_TOKENS + 1])
def test_projected_step_equals_the_plain_step(cell, layers, fused, vocab, monkeypatch):
    """Four steps from a prepared state give the plain step's logits, weights (padding exactly
    0) and cell states, float64, with the compiled GRU step and with the PyTorch one, with the
    input gates of a small vocabulary made once and of a larger one a step."""
    if fused and not available():
        pytest.skip("no compiled steps here")
    if not fused:
        monkeypatch.setattr(attention_step, "step_ops", lambda t: None)
    torch.manual_seed(0)
    m = model(vocab=vocab, cell=cell, decoder_layers=layers)
    with torch.no_grad():
        plain = m.encode(SOURCES, LENGTHS)
        fast = m.prepare(plain)
        assert plain.projected is None and fast.projected is not None
        assert (fast.projected.weights.embedded is None) == (vocab > 10)
        assert (fast.projected.weights.query[1] is None) == (layers == 2)
        y = torch.tensor([BOS] * 3)
        for _ in range(4):
            logits, plain, alpha = m.decoder.step(y, plain)
            logits2, fast, alpha2 = m.decoder.step(y, fast)
            torch.testing.assert_close(logits2, logits, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(alpha2, alpha, rtol=1e-12, atol=1e-12)
            assert (alpha2[1, 2:] == 0).all() and (alpha2[2, 3:] == 0).all()
            assert_same_structure(fast.layers, plain.layers, rtol=1e-12, atol=1e-12)
            y = logits.argmax(-1)


def test_step_weights_are_made_again_when_a_parameter_changes():
    torch.manual_seed(0)
    m = model()
    first = attention_step.step_weights(m.decoder)
    assert attention_step.step_weights(m.decoder) is first
    with torch.no_grad():
        m.decoder.combine.bias.add_(1.0)  # as an optimiser's step does
    again = attention_step.step_weights(m.decoder)
    assert again is not first
    torch.testing.assert_close(again.combine[1], first.combine[1] + 2.0)


def test_prepare_only_where_the_step_applies():
    """Unchanged in training mode, with gradients on, without Bahdanau attention, with a cell
    the kernel does not take, and with ``project_memory`` off."""

    def prepared(m: Seq2Seq, grad: bool = False) -> bool:
        with torch.set_grad_enabled(grad):
            return m.prepare(m.encode(SOURCES, LENGTHS)).projected is not None

    torch.manual_seed(0)
    m = model()
    assert prepared(m)
    assert not prepared(m, grad=True)
    assert not prepared(m.train())
    for kw in ({"attention": "luong-general"}, {"attention": "location"}, {"cell": "elman"}):
        assert not prepared(model(**kw)), kw
    m = model()
    m.decoder.project_memory = False
    assert not prepared(m)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_beam_search_on_the_projected_memory(dtype):
    """Beam search (K 3, n-best 3) on a prepared state: the first step widens the projections
    to K rows with the rest of the state, ``reorder_state`` keeps them; the same hypotheses and
    scores as on the plain state."""
    torch.manual_seed(3)
    m = model(dtype)
    src = torch.randint(3, 12, (7, 4))
    lengths = torch.tensor([7, 3, 5, 1])
    src[3:, 1], src[5:, 2], src[1:, 3] = 0, 0, 0
    with torch.no_grad():
        state = m.encode(src, lengths)
        options = {"bos_id": BOS, "eos_id": EOS, "max_len": 9, "beam_width": 3, "n_best": 3}
        plain = beam_search(m.step, state, 4, reorder=m.reorder_state, **options)
        fast = beam_search(m.step, m.prepare(state), 4, reorder=m.reorder_state, **options)
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    for p, f in zip(plain, fast, strict=True):
        assert [seq for seq, _ in p] == [seq for seq, _ in f]
        for (_, a), (_, b) in zip(p, f, strict=True):
            assert abs(a - b) < tol


def test_projections_are_shared_by_the_rows_of_a_source():
    """``select_rows`` (beam search's widening and dropping) selects the rows' sources and keeps
    only the sources used: K consecutive rows a source share one copy (``group`` K); any other
    layout gathers each row's source."""
    torch.manual_seed(0)
    m = model()
    with torch.no_grad():
        state = m.prepare(m.encode(SOURCES, LENGTHS))
        whole = state.projected.tensors
        assert state.memory is None and state.projected.group == 1
        wide = select_rows(state, torch.tensor([0, 0, 1, 1, 2, 2])).projected
        assert wide.group == 2 and all(a is b for a, b in zip(wide.tensors, whole, strict=True))
        dropped = select_rows(state, torch.tensor([0, 0, 1, 1, 2, 2]))
        dropped = select_rows(dropped, torch.tensor([4, 5]))
        assert dropped.projected.group == 2
        for part, all_rows in zip(dropped.projected.tensors, whole, strict=True):
            torch.testing.assert_close(part, all_rows[2:3])
        mixed = select_rows(state, torch.tensor([2, 0, 2])).projected
        assert mixed.group == 0
        for part, all_rows in zip(mixed.per_row(), whole, strict=True):
            torch.testing.assert_close(part, all_rows[torch.tensor([2, 0, 2])])


@pytest.mark.parametrize("index", [[2, 0, 2], [0, 0, 1, 1, 2, 2], [1, 1, 1]])
def test_projected_step_on_selected_rows(index):
    """After ``select_rows`` (any layout of rows), a step equals the plain step on the same rows."""
    torch.manual_seed(0)
    m = model(cell="lstm", decoder_layers=2)
    index = torch.tensor(index)
    y = torch.tensor([BOS, 5, 6, 7, 8, 9])[: len(index)]
    with torch.no_grad():
        plain = select_rows(m.encode(SOURCES, LENGTHS), index)
        fast = select_rows(m.prepare(m.encode(SOURCES, LENGTHS)), index)
        for _ in range(3):
            logits, plain, alpha = m.decoder.step(y, plain)
            logits2, fast, alpha2 = m.decoder.step(y, fast)
            torch.testing.assert_close(logits2, logits, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(alpha2, alpha, rtol=1e-12, atol=1e-12)
            y = logits.argmax(-1)


def test_predict_beam_runs_the_projected_step_with_the_same_output(monkeypatch):
    """``seq2seq_task.predict`` (what ``rnnkit eval`` and ``serve`` run) prepares the state for
    beam search, for one model and for an ``Ensemble`` (each member prepared), and returns what
    the plain step returns; ``Decoder.project_memory = False`` turns the path off."""
    from rnnkit.data.pairs import PairVocab, TokenVocab
    from rnnkit.seq2seq import Decoder, Ensemble
    from rnnkit.tasks import seq2seq_task

    calls = []
    real = attention_step.step
    monkeypatch.setattr(attention_step, "step", lambda *a: calls.append(1) or real(*a))
    words = ["abc", "bad", "cab", "dcba", "a", "ddd"]
    vocab = PairVocab(TokenVocab.from_texts(words, "char"), TokenVocab.from_texts(words, "char"))
    torch.manual_seed(0)
    cfg = Seq2SeqConfig(embedding_size=5, hidden_size=6, attention_size=4)
    one = Seq2Seq(len(vocab.source), len(vocab.target), cfg).double()
    two = Ensemble([one, Seq2Seq(len(vocab.source), len(vocab.target), cfg).double()])
    for m in (one, two):
        runs = {}
        for project in (True, False):
            monkeypatch.setattr(Decoder, "project_memory", project)
            calls.clear()
            runs[project] = seq2seq_task.predict(m, vocab, words, method="beam", beam=3, n_best=2)
            assert bool(calls) == project
        for a, b in zip(runs[True], runs[False], strict=True):
            assert [t for t, _ in a] == [t for t, _ in b]
            assert all(abs(x - y) < 1e-10 for (_, x), (_, y) in zip(a, b, strict=True))
