import math

import pytest

from rnnkit.errors import UserError
from rnnkit.train.schedules import teacher_forcing_prob


def test_fixed_schedules():
    assert teacher_forcing_prob(10**6, "teacher") == 1.0
    assert teacher_forcing_prob(0, "free") == 0.0


def test_linear_decays_to_floor():
    assert teacher_forcing_prob(0, "linear", steps=100) == 1.0
    assert teacher_forcing_prob(50, "linear", steps=100) == pytest.approx(0.5)
    assert teacher_forcing_prob(100, "linear", steps=100) == 0.0
    assert teacher_forcing_prob(500, "linear", steps=100, eps_min=0.1) == 0.1


def test_exponential_and_inverse_sigmoid_match_bengio_2015():
    assert teacher_forcing_prob(3, "exponential", k=0.5) == pytest.approx(0.125)
    k = 100.0
    for i in (0, 100, 460, 1000):
        assert teacher_forcing_prob(i, "inverse_sigmoid", k=k) == pytest.approx(
            k / (k + math.exp(i / k))
        )
    assert teacher_forcing_prob(10**9, "inverse_sigmoid", k=k) == 0.0
    probs = [teacher_forcing_prob(i, "inverse_sigmoid", k=k) for i in range(0, 2000, 50)]
    assert probs == sorted(probs, reverse=True)


@pytest.mark.parametrize(
    "kind, k, steps, message",
    [
        ("cosine", 1.0, 1, "unknown kind"),
        ("linear", 1.0, 0, "steps >= 1"),
        ("exponential", 1.5, 1, "0 < k < 1"),
        ("inverse_sigmoid", 0.5, 1, "k >= 1"),
    ],
)
def test_bad_schedules_are_one_line_errors(kind, k, steps, message):
    with pytest.raises(UserError, match=message):
        teacher_forcing_prob(0, kind, k=k, steps=steps)
