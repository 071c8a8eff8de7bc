"""Edit distances, CER and WER against jiwer (and by hand)."""

import random

import jiwer
import pytest

from rnnkit.ctc import (
    cer,
    edit_alignment,
    edit_distance,
    edit_distances,
    error_breakdown,
    wer,
)


def test_by_hand():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3 and edit_distance("abc", "") == 3
    assert edit_distance([1, 2, 3], [1, 3]) == 1
    assert edit_distances(["a b c", "x"], ["a c", "x y"], unit="word") == [1, 1]


def _random_text(rng: random.Random) -> str:
    words = ["the", "cat", "sat", "on", "a", "mat", "of", "thee", "at"]
    return " ".join(rng.choice(words) for _ in range(rng.randint(1, 8)))


def _mutate(s: str, rng: random.Random) -> str:
    chars = list(s)
    for _ in range(rng.randint(0, 6)):
        op, i = rng.randrange(3), rng.randrange(len(chars) + 1)
        if op == 0:
            chars.insert(i, rng.choice("aehst "))
        elif chars and i < len(chars):
            if op == 1:
                del chars[i]
            else:
                chars[i] = rng.choice("aehst")
    return "".join(chars).strip().replace("  ", " ") or "x"


@pytest.mark.parametrize("seed", range(5))
def test_against_jiwer(seed):
    rng = random.Random(seed)
    refs = [_random_text(rng) for _ in range(30)]
    hyps = [_mutate(r, rng) for r in refs]
    assert cer(refs, hyps) == pytest.approx(jiwer.cer(refs, hyps), abs=1e-12)
    assert wer(refs, hyps) == pytest.approx(jiwer.wer(refs, hyps), abs=1e-12)
    for r, h, d in zip(refs, hyps, edit_distances(refs, hyps), strict=True):
        assert d == round(jiwer.cer(r, h) * len(r))


def test_bad_inputs():
    with pytest.raises(ValueError, match="as many"):
        cer(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="hold no words"):
        wer([""], ["a"])
    with pytest.raises(ValueError, match="unit must be"):
        edit_distances(["a"], ["a"], unit="line")


def test_edit_alignment_by_hand():
    assert edit_alignment("945", "947") == [("=", 0, 0), ("=", 1, 1), ("s", 2, 2)]
    assert edit_alignment("12", "2") == [("d", 0, -1), ("=", 1, 0)]
    assert edit_alignment("5", "57") == [("=", 0, 0), ("i", -1, 1)]
    assert edit_alignment("", "ab") == [("i", -1, 0), ("i", -1, 1)]
    assert edit_alignment("ab", "") == [("d", 0, -1), ("d", 1, -1)]
    assert edit_alignment("", "") == []


@pytest.mark.parametrize("seed", range(3))
def test_edit_alignment_is_minimal_and_spells_both(seed):
    rng = random.Random(seed)
    for _ in range(200):
        ref = [rng.choice("abc") for _ in range(rng.randint(0, 7))]
        hyp = [rng.choice("abc") for _ in range(rng.randint(0, 7))]
        ops = edit_alignment(ref, hyp)
        assert sum(op != "=" for op, _, _ in ops) == edit_distance(ref, hyp)
        assert [ref[i] for op, i, _ in ops if op != "i"] == ref  # every ref token, in order
        assert [hyp[j] for op, _, j in ops if op != "d"] == hyp  # every hyp token, in order
        for op, i, j in ops:
            assert op not in "=s" or (ref[i] == hyp[j]) == (op == "=")


def test_error_breakdown_by_hand():
    out = error_breakdown(["945", "12", "5", "3"], ["947", "2", "57", "3"])
    assert out["by_position"] == {
        "first": {"tokens": 2, "errors": 1, "rate": 0.5},
        "middle": {"tokens": 1, "errors": 0, "rate": 0.0},
        "last": {"tokens": 2, "errors": 1, "rate": 0.5},
        "alone": {"tokens": 2, "errors": 0, "rate": 0.0},
    }
    assert out["insertions"] == 1
    assert out["confusions"] == [["5", "7", 1], ["1", "", 1], ["", "7", 1]]
    assert error_breakdown(["5", "5"], ["7", "7"], top=1)["confusions"] == [["5", "7", 2]]
    with pytest.raises(ValueError, match="as many"):
        error_breakdown(["1"], [])
    with pytest.raises(ValueError, match="top must be an integer >= 0, got -1"):
        error_breakdown(["1"], ["1"], top=-1)
