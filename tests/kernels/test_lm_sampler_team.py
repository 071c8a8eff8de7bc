"""The compiled sampler's step shared by a team of threads (``Stepper(threads=n)``): every float
of every step equal to the one-thread step's (logits, the distribution, the states), so the same
tokens; the team's size; workers that sleep when idle wake for the next token; and the workers
end with their Stepper. And its bfloat16 weights (``PackedLM(weights="bfloat16")``): the model
with its matrices rounded."""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path

import pytest
import torch

from rnnkit.kernels import fused
from rnnkit.kernels.fused import lm_sampler
from rnnkit.tasks.lm import LanguageModel, ModelConfig

pytestmark = pytest.mark.skipif(not fused.available(), reason="no C++ compiler here")


@pytest.fixture(autouse=True)
def cpus(monkeypatch):
    """Teams larger than this machine's CPUs (capped there otherwise: ``usable_cpus``); their
    barriers yield, so they only run slower."""
    monkeypatch.setattr(lm_sampler, "usable_cpus", lambda: 8)


V = 70  # two head panels, the second nearly empty
TOKENS = [3, 0, 69, 12, 12, 5, 41, 7, 7, 2]


def packed(cell: str, hidden: int, layers: int = 2) -> lm_sampler.PackedLM:
    torch.manual_seed(0)
    cfg = ModelConfig(cell=cell, embedding_size=24, hidden_size=hidden, num_layers=layers)
    model = LanguageModel(V, cfg).eval()
    with torch.no_grad():  # gates away from 0, so that a wrong row would show
        for p in model.parameters():
            p.mul_(3)
    return lm_sampler.PackedLM(model.embedding, model.rnn, model.head)


@pytest.mark.parametrize("table", [True, False], ids=["table", "no-table"])
@pytest.mark.parametrize("hidden, threads", [(128, 2), (320, 2), (192, 3), (256, 4)])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_team_step_equals_one_thread_exactly(
    cell: str, hidden: int, threads: int, table: bool, monkeypatch
) -> None:
    """Feeding tokens (some without emitting, as a prime is fed) and choosing with temperature,
    top-k and top-p: logits, p, h and c bit for bit equal, every step."""
    if not table:
        monkeypatch.setattr(lm_sampler, "TABLE_BYTES", 0)
    P = packed(cell, hidden, layers=2 if hidden < 300 else 1)
    assert (P.table is not None) == table
    choose = {"temperature": 0.8, "top_k": 30, "top_p": 0.95}
    one, team = (lm_sampler.Stepper(P, threads=n, **choose) for n in (1, threads))
    assert (one.threads, team.threads) == (1, threads)
    q = torch.empty(1, V).exponential_(generator=torch.Generator().manual_seed(0))
    for i, token in enumerate(TOKENS):
        emit = i % 3 != 0
        assert one.step(token, emit, q) == team.step(token, emit, q)
        for a, b in ((one.h, team.h), (one.c, team.c), (one.logits, team.logits)):
            assert torch.equal(a, b)
        assert torch.equal(one.probs, team.probs)
    assert one.h.abs().max() > 0.1


@pytest.mark.parametrize("options", [{"temperature": 1.0}, {"greedy": True}], ids=str)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_team_samples_the_same_tokens(cell: str, options: dict) -> None:
    P = packed(cell, 128)
    runs = [
        lm_sampler.sample(
            P, [4, 9], 200, generator=torch.Generator().manual_seed(5), threads=n, **options
        )
        for n in (1, 2)
    ]
    assert runs[0] == runs[1]
    assert len(set(runs[0])) > (1 if options.get("greedy") else 10)


def test_team_size() -> None:
    assert packed("lstm", 20).team_size(4) == 1  # not a multiple of 64
    assert packed("lstm", 64).team_size(4) == 1  # one block of 64 units
    P = packed("gru", 192)
    assert [P.team_size(n) for n in (1, 2, 3, 8)] == [1, 2, 3, 3]
    assert lm_sampler.Stepper(P, threads=8).threads == 3


def test_team_is_no_larger_than_the_cpus_the_process_may_use(monkeypatch) -> None:
    monkeypatch.setattr(lm_sampler, "usable_cpus", lambda: 2)
    assert packed("gru", 192).team_size(8) == 2
    monkeypatch.setattr(lm_sampler, "usable_cpus", lambda: 1)
    assert lm_sampler.Stepper(packed("gru", 192), threads=8).threads == 1


def test_idle_workers_sleep_and_wake_for_the_next_token() -> None:
    """Pauses longer than the 2 ms a worker spins before it sleeps, between tokens."""
    P = packed("lstm", 128)
    want = lm_sampler.sample(P, [1], 6, generator=torch.Generator().manual_seed(2), threads=1)
    seeded = torch.Generator().manual_seed(2)
    steps = lm_sampler.sample_steps(P, [1], 6, generator=seeded, threads=2)
    got = []
    for token in steps:
        got.append(token)
        time.sleep(0.02)
    assert got == want


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="Linux lists threads there")
def test_workers_end_with_their_stepper() -> None:
    def threads() -> int:
        return len(os.listdir("/proc/self/task"))

    P = packed("gru", 192)
    gc.collect()
    before = threads()
    run = lm_sampler.Stepper(P, threads=3)
    run.step(1, emit=False)
    with pytest.raises(ValueError, match="q .the draws of Exp.1.. is needed"):
        run.step(1)  # was a null pointer read in the compiled choice
    assert threads() == before + 2
    del run
    gc.collect()
    assert threads() == before


def rounded(model):
    """A copy of ``model`` with W_ih, W_hh and the head's weight rounded to bfloat16."""
    import copy

    ref = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in [*ref.rnn.named_parameters(), ("weight", ref.head.weight)]:
            if name.startswith("weight"):
                p.copy_(lm_sampler.to_bfloat16(p))
    return ref


@pytest.mark.parametrize("table", [True, False], ids=["table", "no-table"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bfloat16_weights_are_the_model_with_its_matrices_rounded(cell, table, monkeypatch):
    """``PackedLM(weights="bfloat16")``: per step, the logits of the float32 model whose W_ih,
    W_hh and head weight are rounded to bfloat16 (to 1e-5), at one thread and bit for bit the
    same with a team; and the tokens of ``sample_sequence`` on that model."""
    from rnnkit.decoding import sample_sequence
    from rnnkit.tasks.lm_commands import continue_ids

    if not table:
        monkeypatch.setattr(lm_sampler, "TABLE_BYTES", 0)
    torch.manual_seed(0)
    cfg = ModelConfig(cell=cell, embedding_size=24, hidden_size=128, num_layers=2)
    model = LanguageModel(V, cfg).eval()
    ref = rounded(model)
    P = lm_sampler.PackedLM(model.embedding, model.rnn, model.head, weights="bfloat16")
    G = 4 if cell == "lstm" else 3
    assert P.W_hh[0].numel() * 4 == G * 128 * 128 * 2  # bytes: 2 a weight
    one, team = (lm_sampler.Stepper(P, greedy=True, threads=n) for n in (1, 2))
    state = None
    with torch.no_grad():
        for token in TOKENS:
            logits, state = ref.step(torch.tensor([token]), state)
            one.step(token)
            team.step(token)
            torch.testing.assert_close(one.logits, logits[0], rtol=1e-5, atol=1e-5)
            assert torch.equal(one.logits, team.logits)
    assert not torch.equal(rounded(model).head.weight, model.head.weight)  # rounding did act
    want = sample_sequence(ref.step, None, [4, 9], 150, generator=torch.Generator().manual_seed(2))
    got = continue_ids(
        model, [4, 9], 150, generator=torch.Generator().manual_seed(2), weights="bfloat16"
    )
    assert got == want


def test_bfloat16_weights_need_the_compiled_sampler_and_a_known_name():
    from rnnkit.errors import UserError
    from rnnkit.tasks.lm_commands import continue_ids

    torch.manual_seed(0)
    peephole = LanguageModel(V, ModelConfig(cell="lstm", hidden_size=64, peephole=True)).eval()
    with pytest.raises(UserError, match="--weights bfloat16 needs the compiled sampler"):
        continue_ids(peephole, [1], 5, weights="bfloat16")
    with pytest.raises(UserError, match="--weights must be one of"):
        continue_ids(peephole, [1], 5, weights="int8")
    model = LanguageModel(V, ModelConfig(cell="gru", hidden_size=64)).eval()
    with pytest.raises(UserError, match="the prime must hold at least one token"):
        continue_ids(model, [], 5, weights="bfloat16")  # the mistake named, not the weights
    with pytest.raises(ValueError, match="threads must be an integer"):
        lm_sampler.sample(lm_sampler.packed_model(model), [1], 3, threads="2")
    with pytest.raises(ValueError, match="weights must be one of"):
        lm_sampler.PackedLM(model.embedding, model.rnn, model.head, weights="float16")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_samples_alone_instead_of_waiting_for_workers_it_does_not_have():
    """After ``fork`` only the forking thread exists in the child: a Stepper made before the
    fork goes back to the one-thread step there (the same tokens), where the team's barriers
    would wait for ever. The parent's team is untouched."""
    P = packed("lstm", 128)
    want = lm_sampler.sample(P, [1, 2], 40, generator=torch.Generator().manual_seed(9), threads=1)
    steps = lm_sampler.sample_steps(P, [1, 2], 40, generator=torch.Generator().manual_seed(9))
    first = [next(steps) for _ in range(10)]  # the Stepper and its team exist now
    pid = os.fork()
    if pid == 0:  # the child: finish the sample, exit 0 if it is the one-thread sample
        try:
            rest = list(steps)
            os._exit(0 if first + rest == want else 1)
        except BaseException:
            os._exit(2)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung sampling")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(status) == 0
    assert first + list(steps) == want  # the parent, still on its team
