"""rnnkit.crf against brute-force enumeration of all K^L tag paths, gradcheck, constraints."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import functional_call

from rnnkit.crf import CRF, FORBIDDEN, Constraints, bio_constraints


def path_score(crf: CRF, e: torch.Tensor, path) -> torch.Tensor:
    """score(y) written out term by term for one sequence e (L, K)."""
    A, s, f = crf.scores()
    total = s[path[0]] + f[path[-1]]
    for t, k in enumerate(path):
        total = total + e[t, k]
        if t:
            total = total + A[path[t - 1], k]
    return total


def brute(crf: CRF, emissions: torch.Tensor, lengths):
    """log Z and the best path of each sequence by enumerating every path."""
    K = emissions.shape[2]
    log_z, best = [], []
    for b, L in enumerate(lengths):
        e = emissions[:L, b]
        paths = list(itertools.product(range(K), repeat=L))
        scores = torch.stack([path_score(crf, e, p) for p in paths])
        log_z.append(torch.logsumexp(scores, 0))
        best.append(list(paths[int(scores.argmax())]))
    return torch.stack(log_z), best


def random_crf(K, constraints=None, seed=0):
    torch.manual_seed(seed)
    crf = CRF(K, constraints).double()
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    return crf


@pytest.mark.parametrize("K,T,lengths", [(3, 4, [4, 2, 1, 3]), (4, 3, [3, 3]), (2, 5, [5, 1, 4])])
def test_log_partition_and_viterbi_equal_brute_force(K, T, lengths):
    crf = random_crf(K, seed=K * 10 + T)
    emissions = torch.randn(T, len(lengths), K, dtype=torch.float64)
    log_z, best = brute(crf, emissions, lengths)
    torch.testing.assert_close(crf.log_partition(emissions, lengths), log_z)
    assert crf.decode(emissions, lengths) == best


def test_log_likelihood_is_gold_score_minus_log_z_and_probabilities_sum_to_one():
    K, T, lengths = 3, 3, [3, 2]
    crf = random_crf(K, seed=1)
    emissions = torch.randn(T, 2, K, dtype=torch.float64)
    total = torch.zeros(2, dtype=torch.float64)
    log_z = brute(crf, emissions, lengths)[0]
    for b, L in enumerate(lengths):
        for path in itertools.product(range(K), repeat=L):
            tags = torch.zeros(T, 2, dtype=torch.long)
            tags[:L, b] = torch.tensor(path)
            tags[L:, b] = 99  # padding is ignored, whatever it holds
            ll = crf(emissions, tags, lengths)[b]
            expected = path_score(crf, emissions[:L, b], path) - log_z[b]
            torch.testing.assert_close(ll, expected)
            total[b] += ll.exp()
    torch.testing.assert_close(total, torch.ones(2, dtype=torch.float64))


def test_padding_changes_nothing():
    crf = random_crf(4, seed=2)
    emissions = torch.randn(5, 3, 4, dtype=torch.float64)
    tags = torch.randint(0, 4, (5, 3))
    lengths = torch.tensor([5, 2, 3])
    other = emissions.clone()
    other[2:, 1] = 100.0
    other[3:, 2] = -7.0
    torch.testing.assert_close(crf(emissions, tags, lengths), crf(other, tags, lengths))
    assert crf.decode(emissions, lengths) == crf.decode(other, lengths)


def test_gradcheck_wrt_emissions_and_transitions():
    crf = random_crf(3, seed=3)
    names = ["transitions", "start_transitions", "end_transitions"]
    params = tuple(getattr(crf, n).detach().clone().requires_grad_(True) for n in names)
    emissions = torch.randn(4, 3, 3, dtype=torch.float64, requires_grad=True)
    tags = torch.randint(0, 3, (4, 3))
    lengths = [4, 1, 3]

    def ll(e, A, s, f):
        return functional_call(crf, dict(zip(names, (A, s, f), strict=True)), (e, tags, lengths))

    assert torch.autograd.gradcheck(ll, (emissions, *params))


def test_gradcheck_with_constraints():
    crf = random_crf(5, bio_constraints(["O", "B-A", "I-A", "B-B", "I-B"]), seed=4)
    emissions = torch.randn(3, 2, 5, dtype=torch.float64, requires_grad=True)
    transitions = crf.transitions.detach().clone().requires_grad_(True)
    tags = torch.tensor([[1, 0], [2, 3], [0, 4]])  # legal: B-A I-A O and O B-B I-B

    def ll(e, A):
        return functional_call(crf, {"transitions": A}, (e, tags, [3, 3]))

    assert torch.autograd.gradcheck(ll, (emissions, transitions))
    crf(emissions, tags, [3, 3]).sum().backward()
    assert torch.isfinite(emissions.grad).all()


def test_bio_constraints_rules():
    c = bio_constraints(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
    assert c.start.tolist() == [True, True, False, True, False]
    assert c.end.all()
    assert c.allowed[:, 2].tolist() == [False, True, True, False, False]  # I-PER after B/I-PER
    assert c.allowed[:, 4].tolist() == [False, False, False, True, True]
    assert c.allowed[:, [0, 1, 3]].all()


def is_legal_bio(names):
    previous = "O"
    for name in names:
        if name.startswith("I-") and previous[2:] != name[2:]:
            return False
        previous = name
    return True


def test_constrained_decoding_never_yields_an_illegal_path():
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    crf = random_crf(5, bio_constraints(names), seed=5)
    torch.manual_seed(6)
    # emissions pushing hard for I- tags everywhere: the unconstrained argmax would be illegal
    emissions = torch.randn(7, 64, 5, dtype=torch.float64) * 3
    emissions[..., [2, 4]] += 4.0
    lengths = torch.randint(1, 8, (64,))
    paths = crf.decode(emissions, lengths)
    assert all(is_legal_bio([names[k] for k in p]) for p in paths)
    assert any(names[k].startswith("I-") for p in paths for k in p)
    # and the constrained best path is the best legal path of the brute force
    small = emissions[:4, :6]
    lengths = [4, 3, 1, 2, 4, 4]
    _, best = brute(crf, small, lengths)
    assert crf.decode(small, lengths) == best
    assert all(is_legal_bio([names[k] for k in p]) for p in best)


def test_forbidden_paths_carry_no_mass():
    names = ["O", "B-A", "I-A"]
    crf = random_crf(3, bio_constraints(names), seed=7)
    emissions = torch.randn(3, 1, 3, dtype=torch.float64)
    legal = [
        p for p in itertools.product(range(3), repeat=3) if is_legal_bio([names[k] for k in p])
    ]
    log_z = torch.logsumexp(torch.stack([path_score(crf, emissions[:, 0], p) for p in legal]), 0)
    torch.testing.assert_close(crf.log_partition(emissions, [3])[0], log_z)
    illegal = torch.tensor([[2], [0], [0]])  # I-A first
    assert crf(emissions, illegal, [3]).item() < FORBIDDEN / 2


def test_untrained_crf_decodes_the_argmax():
    emissions = torch.randn(6, 4, 5)
    lengths = [6, 3, 1, 5]
    paths = CRF(5).decode(emissions, lengths)
    assert paths == [emissions[:L, b].argmax(-1).tolist() for b, L in enumerate(lengths)]


def test_float32_batch_and_device_follow_the_module():
    crf = CRF(3)
    emissions = torch.randn(4, 2, 3, requires_grad=True)
    ll = crf(emissions, torch.zeros(4, 2, dtype=torch.long), torch.tensor([4, 2]))
    assert ll.shape == (2,) and ll.dtype == torch.float32
    (-ll.mean()).backward()
    assert crf.transitions.grad is not None
    assert "allowed" not in crf.state_dict()  # constraints are rebuilt, not saved


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda: CRF(0), "num_tags"),
        (lambda: CRF(3, constraints="bio"), "constraints"),
        (lambda: CRF(2, bio_constraints(["O", "B-A", "I-A"])), "constraints"),
        (lambda: bio_constraints(["O", "X-A"]), "tag_names"),
        (lambda: CRF(3).decode(torch.randn(4, 3), [4]), "emissions"),
        (lambda: CRF(3).decode(torch.randn(4, 2, 5), [4, 4]), "emissions"),
        (lambda: CRF(3).decode(torch.zeros(4, 2, 3, dtype=torch.long), [4, 4]), "emissions"),
        (lambda: CRF(3).decode(torch.randn(4, 2, 3), [4]), "lengths"),
        (lambda: CRF(3).decode(torch.randn(4, 2, 3), [4, 0]), "lengths"),
        (lambda: CRF(3).decode(torch.randn(4, 2, 3), [4, 5]), "lengths"),
        (lambda: CRF(3).log_partition(torch.randn(4, 2, 3), [4.0, 2.0]), "lengths"),
        (lambda: CRF(3)(torch.randn(4, 2, 3), torch.zeros(3, 2, dtype=torch.long), [4, 4]), "tags"),
        (lambda: CRF(3)(torch.randn(4, 2, 3), torch.zeros(4, 2), [4, 4]), "tags"),
        (lambda: CRF(3)(torch.randn(4, 2, 3), torch.full((4, 2), 3), [4, 4]), "tags"),
    ],
)
def test_bad_arguments_are_one_line_value_errors_naming_the_argument(call, name):
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert message.startswith(f"{name}:") and "\n" not in message


def test_constraints_type():
    c = bio_constraints(["O", "B-A", "I-A"])
    assert isinstance(c, Constraints) and c.allowed.dtype == torch.bool


@settings(max_examples=25, deadline=None)
@given(
    K=st.integers(1, 5),
    lengths=st.lists(st.integers(1, 6), min_size=1, max_size=5),
    seed=st.integers(0, 2**16),
)
def test_a_batch_equals_its_sequences_one_by_one(K, lengths, seed):
    crf = random_crf(K, seed=seed)
    T, B = max(lengths), len(lengths)
    emissions = torch.randn(T, B, K, dtype=torch.float64)
    tags = torch.randint(0, K, (T, B))
    ll, paths = crf(emissions, tags, lengths), crf.decode(emissions, lengths)
    for b, L in enumerate(lengths):
        alone = emissions[:L, b : b + 1]
        torch.testing.assert_close(ll[b : b + 1], crf(alone, tags[:L, b : b + 1], [L]))
        assert paths[b] == crf.decode(alone, [L])[0]
