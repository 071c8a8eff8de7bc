"""CharLM on tiny charlm runs trained here through the CLI (a GRU: one state tensor; a 2-layer
LSTM: (h, c)): stepping it per beam gives the log-probabilities of running the LanguageModel
over the text at once; unknown characters get the floor and leave the state alone; fused beam
scores are log P_ctc + alpha log P_lm + beta len, with log P_ctc from ctc_loss."""

import math

import numpy as np
import pytest
import torch
from ctc_brute import random_log_probs

from rnnkit.cli import main
from rnnkit.ctc import CharLM, beam_search, ctc_loss
from rnnkit.tasks.runs import load_run

ALPHABET = ["<b>", *"the kingTH,", "§"]  # "§" is in no Shakespeare vocabulary


@pytest.fixture(scope="module", params=["gru", "lstm"])
def run(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / request.param
    args = ["train", "charlm", "--preset", "tiny", "--out", str(out), "--train.progress", "false"]
    args += ["--model.cell", request.param, "--train.max_steps", "10"]
    if request.param == "lstm":
        args += ["--model.num_layers", "2"]
    assert main(args) in (0, None)
    return out


def full_log_probs(loaded, text: str) -> torch.Tensor:
    """log P(next | prefix) at every position of start + text, the whole text in one call."""
    ids = loaded.start_ids() + [loaded.vocab.stoi[c] for c in text]
    with torch.no_grad():
        logits, _ = loaded.model(torch.tensor(ids)[:, None])
    return torch.log_softmax(logits[:, 0].double(), -1)


def test_stepping_per_beam_equals_the_whole_text_at_once(run):
    lm = CharLM.from_run(run, ALPHABET)
    assert lm.unknown == ["§"]
    loaded = load_run(run)
    texts = ["the king", "The thin", "kin, the"]
    index = {ch: i for i, ch in enumerate(ALPHABET)}
    state, lp = lm.start(len(texts))
    rows = np.arange(len(texts))
    for pos in range(len(texts[0]) + 1):
        for r, text in enumerate(texts):
            want = full_log_probs(loaded, text)[pos]
            for c, ch in enumerate(ALPHABET[1:-1], 1):
                assert lp[r, c].item() == pytest.approx(
                    want[loaded.vocab.stoi[ch]].item(), abs=1e-5
                )
            assert lp[r, index["§"]].item() == pytest.approx(math.log(1e-4))
        if pos == len(texts[0]):
            break
        labels = np.array([index[t[pos]] for t in texts])
        before = lp.clone()
        # a copy (-1) and an unknown character leave a beam's state and log-probs as they were
        _, same = lm.advance(state, np.array([2, 1]), np.array([-1, index["§"]]))
        assert torch.equal(same, before[[2, 1]])
        state, lp = lm.advance(state, rows[::-1].copy(), labels[::-1].copy())  # reordered rows
        state, lp = lm.advance(state, rows[::-1].copy(), np.full(3, -1))  # and back


def test_fused_beam_scores_with_the_char_lm(run):
    lm = CharLM.from_run(run, ["<b>", "t", "h", "e", " ", "§"])
    lp = random_log_probs(4, 2, 6, 3)
    alpha, beta = 0.8, 0.3
    exact = dict(prune_logp=None, beam_prune_logp=None)
    hyps = beam_search(lp, None, 800, lm=lm, alpha=alpha, beta=beta, n_best=4, **exact)
    for b in range(2):
        for labels, score in hyps[b]:
            ctc = -ctc_loss(lp[:, b : b + 1], [labels], reduction="sum").item()
            want = ctc + alpha * lm.log_prob(labels) + beta * len(labels)
            assert score == pytest.approx(want, abs=1e-6)


def test_bad_alphabets_and_runs(run, tmp_path):
    with pytest.raises(ValueError, match=r"alphabet\[2\] must be one character"):
        CharLM.from_run(run, ["<b>", "a", "bc"])
    with pytest.raises(ValueError, match="blank must index"):
        CharLM.from_run(run, ["a"], blank=3)
    with pytest.raises(Exception, match="no run at"):
        CharLM.from_run(tmp_path / "missing", ["<b>", "a"])
