"""Edit distances, CER and WER against jiwer (and by hand)."""

import random

import jiwer
import pytest

from rnnkit.ctc import cer, edit_distance, edit_distances, wer


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
