"""Decoding to <eos>: batched greedy and sampling, beam search (width 1 is greedy; it finds the
best sequence of a toy model where greedy does not; n-best; length penalty), select_rows."""

import itertools
import math
from typing import NamedTuple

import pytest
import torch

from rnnkit.data.pairs import BOS, EOS, make_batch
from rnnkit.decoding import beam_search, decode_batch, length_penalty, select_rows
from rnnkit.errors import UserError
from rnnkit.seq2seq import Seq2Seq
from rnnkit.tasks.seq2seq_config import Seq2SeqConfig

# A toy model over tokens {BOS=2, EOS=3, A=4, B=5}: the state is the prefix; the next-token
# distribution depends on the prefix only. Greedy takes A first (0.6), but every sequence
# through A is then uncertain, while B is followed by <eos> with probability 0.95:
# p(A ...) <= 0.6 * 0.4, p(B <eos>) = 0.4 * 0.95 = 0.38: the best sequence is "B <eos>".
A, B_ = 4, 5
TABLE = {
    (): {A: 0.6, B_: 0.4},
    (A,): {A: 0.35, B_: 0.35, EOS: 0.3},
    (B_,): {EOS: 0.95, A: 0.05},
}


def toy_step(tokens, state):
    """state: (N, L) prefixes (without <bos>), as a tensor; logits from the table."""
    prefixes = state if state is not None else torch.zeros(len(tokens), 0, dtype=torch.long)
    if not (tokens == BOS).all():
        prefixes = torch.cat([prefixes, tokens[:, None]], dim=1)
    rows = []
    for p in prefixes.tolist():
        dist = TABLE.get(tuple(p), {EOS: 0.5, A: 0.25, B_: 0.25})
        rows.append([math.log(dist.get(v, 1e-12)) for v in range(6)])
    return torch.tensor(rows), prefixes


def brute_force_best(max_len=4):
    best, best_lp = None, -math.inf
    for n in range(0, max_len):
        for seq in itertools.product([A, B_], repeat=n):
            lp, prefix = 0.0, []
            for v in [*seq, EOS]:
                dist = TABLE.get(tuple(prefix), {EOS: 0.5, A: 0.25, B_: 0.25})
                lp += math.log(dist.get(v, 1e-12))
                prefix.append(v)
            if lp > best_lp:
                best, best_lp = list(seq), lp
    return best, best_lp


def test_beam_finds_the_best_sequence_greedy_misses():
    state = torch.zeros(1, 0, dtype=torch.long)
    greedy = decode_batch(toy_step, state, 1, bos_id=BOS, eos_id=EOS, max_len=5)
    assert greedy[0][0] == A
    (best,) = beam_search(toy_step, state, 1, bos_id=BOS, eos_id=EOS, max_len=5, beam_width=3)
    want, want_lp = brute_force_best()
    assert best[0][0] == want == [B_]
    assert best[0][1] == pytest.approx(want_lp)


def seq2seq_and_state():
    cfg = Seq2SeqConfig(embedding_size=8, hidden_size=16, attention="luong-general")
    m = Seq2Seq(9, 9, cfg).eval()
    b = make_batch([[4, 5, 6], [7, 8], [4, 4, 4, 4, 5], [6]], [[]] * 4, range(4))
    return m, m.encode(b.src, b.src_lengths)


def test_width_one_is_greedy():
    torch.manual_seed(1)
    m, state = seq2seq_and_state()
    greedy = decode_batch(m.step, state, 4, bos_id=BOS, eos_id=EOS, max_len=12)
    beams = beam_search(m.step, state, 4, bos_id=BOS, eos_id=EOS, max_len=12, beam_width=1)
    assert [h[0][0] for h in beams] == greedy


@pytest.mark.parametrize("attention", ["bahdanau", "location", "luong-general", "none"])
def test_reorder_state_keeps_the_memory_and_finds_the_same_hypotheses(attention):
    """Seq2Seq.reorder_state moves only what differs between beams; the memory, keys and mask
    stay the very same tensors, and beam search returns what select_rows gives."""
    torch.manual_seed(3)
    cfg = Seq2SeqConfig(embedding_size=8, hidden_size=16, attention=attention, context="both")
    m = Seq2Seq(9, 9, cfg).eval()
    b = make_batch([[4, 5, 6], [7, 8], [4, 4, 4, 4, 5], [6]], [[]] * 4, range(4))
    state = m.encode(b.src, b.src_lengths)
    index = torch.tensor([1, 1, 0, 3])
    moved = m.reorder_state(state, index)
    for name in ("memory", "keys", "mask", "fixed"):
        assert getattr(moved, name) is getattr(state, name)
    torch.testing.assert_close(moved.layers, select_rows(state.layers, index))
    options = {"bos_id": BOS, "eos_id": EOS, "max_len": 10, "beam_width": 3, "n_best": 3}
    plain = beam_search(m.step, state, 4, **options)
    fast = beam_search(m.step, state, 4, **options, reorder=m.reorder_state)
    assert [[ids for ids, _ in h] for h in fast] == [[ids for ids, _ in h] for h in plain]
    for h, g in zip(fast, plain, strict=True):
        assert [sc for _, sc in h] == pytest.approx([sc for _, sc in g], abs=1e-9)


def test_n_best_sorted_distinct_and_scored():
    torch.manual_seed(2)
    m, state = seq2seq_and_state()
    beams = beam_search(m.step, state, 4, bos_id=BOS, eos_id=EOS, max_len=8, beam_width=4, n_best=3)
    for hyps in beams:
        assert len(hyps) == 3
        scores = [s for _, s in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h) for h, _ in hyps}) == 3
    # a hypothesis' score is its log-probability under the model (alpha = 0)
    seq, score = beams[0][0]
    ids = torch.tensor([BOS, *seq, EOS])
    one = select_rows(state, torch.tensor([0]))
    total = 0.0
    for t in range(len(ids) - 1):
        logits, one = m.step(ids[t : t + 1], one)
        total += torch.log_softmax(logits.double(), -1)[0, ids[t + 1]].item()
    assert score == pytest.approx(total, abs=1e-5)


def test_length_penalty_prefers_longer_outputs():
    assert length_penalty(7, 0.0) == 1.0 and length_penalty(7, 1.0) == 2.0
    state = torch.zeros(1, 0, dtype=torch.long)
    plain = beam_search(toy_step, state, 1, bos_id=BOS, eos_id=EOS, max_len=6, beam_width=4)
    # p(B <eos>) = 0.38 beats p(A A <eos>) = 0.105 unless lengths weigh heavily:
    # -ln 0.105 / lp(3) < -ln 0.38 / lp(2) needs ((5 + 3) / (5 + 2))^alpha > 2.33, alpha > 6.3
    long = beam_search(
        toy_step, state, 1, bos_id=BOS, eos_id=EOS, max_len=6, beam_width=4, alpha=8.0
    )
    assert plain[0][0][0] == [B_] and len(long[0][0][0]) == 2


def test_decode_stops_at_eos_and_max_len():
    state = torch.zeros(2, 0, dtype=torch.long)
    out = decode_batch(toy_step, state, 2, bos_id=BOS, eos_id=EOS, max_len=2)
    assert out == [[A, A], [A, A]]  # cut at max_len (no <eos> within two tokens)
    out = decode_batch(toy_step, state, 2, bos_id=BOS, eos_id=EOS, max_len=10)
    assert all(EOS not in o for o in out)


def test_sampling_is_reproducible_with_a_generator():
    m, state = seq2seq_and_state()
    runs = [
        decode_batch(
            m.step,
            state,
            4,
            bos_id=BOS,
            eos_id=EOS,
            max_len=10,
            greedy=False,
            generator=torch.Generator().manual_seed(5),
        )
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


def test_select_rows_keeps_structure():
    class S(NamedTuple):
        h: torch.Tensor
        rest: tuple
        none: None

    s = S(torch.arange(3)[:, None], (torch.arange(3) * 10, None), None)
    r = select_rows(s, torch.tensor([2, 0]))
    assert isinstance(r, S) and r.h[:, 0].tolist() == [2, 0] and r.rest[0].tolist() == [20, 0]


def test_bad_options():
    state = torch.zeros(1, 0, dtype=torch.long)
    with pytest.raises(UserError, match="n_best"):
        beam_search(toy_step, state, 1, bos_id=BOS, eos_id=EOS, max_len=3, beam_width=2, n_best=3)
    with pytest.raises(UserError, match="max_len"):
        decode_batch(toy_step, state, 1, bos_id=BOS, eos_id=EOS, max_len=0)


@pytest.mark.parametrize(("n_best", "alpha"), [(1, 0.0), (2, 0.0), (1, 0.8), (3, 1.5)])
def test_early_stop_returns_what_the_full_search_returns_and_steps_fewer_rows(n_best, alpha):
    """early_stop drops each sequence once its n-best cannot change: the same hypotheses and
    scores as running every sequence until K hypotheses finish, for fewer rows stepped. A
    peaked model (large output weights) finishes some sequences early, as a trained one does."""
    torch.manual_seed(4)
    cfg = Seq2SeqConfig(embedding_size=8, hidden_size=16, attention="bahdanau")
    m = Seq2Seq(9, 9, cfg).double().eval()
    with torch.no_grad():
        m.decoder.head.weight.mul_(6.0)
    srcs = [[4, 5, 6], [7, 8], [4, 4, 4, 4, 5], [6], [8, 7, 6, 5], [5, 5]]
    b = make_batch(srcs, [[]] * len(srcs), range(len(srcs)))
    state = m.encode(b.src, b.src_lengths)
    rows = {True: 0, False: 0}

    def counting(early):
        def step(tokens, s):
            rows[early] += len(tokens)
            return m.step(tokens, s)

        return step

    options = {"bos_id": BOS, "eos_id": EOS, "max_len": 12, "beam_width": 4, "n_best": n_best}
    out = {
        early: beam_search(
            counting(early),
            state,
            len(srcs),
            **options,
            alpha=alpha,
            early_stop=early,
            reorder=m.reorder_state,
        )
        for early in (False, True)
    }
    assert [[ids for ids, _ in h] for h in out[True]] == [[ids for ids, _ in h] for h in out[False]]
    for h, g in zip(out[True], out[False], strict=True):
        assert [sc for _, sc in h] == pytest.approx([sc for _, sc in g], abs=1e-9)
    # with a strong length penalty the bound is loose: no fewer rows, but never more
    assert rows[True] < rows[False] if alpha == 0 else rows[True] <= rows[False]
