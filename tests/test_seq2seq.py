"""The encoder-decoder: every context and attention mode, padding, the step loop against the
teacher-forced forward, scheduled sampling, the masked loss, and learning a small task."""

import pytest
import torch

from rnnkit.data.pairs import BOS, EOS, PAD, make_batch
from rnnkit.errors import UserError
from rnnkit.seq2seq import Seq2Seq, sequence_loss
from rnnkit.tasks.seq2seq_config import Seq2SeqConfig, check_seq2seq_config
from rnnkit.train.schedules import teacher_forcing_prob

V_SRC, V_TGT = 12, 10


def model(**kw) -> Seq2Seq:
    cfg = Seq2SeqConfig(embedding_size=8, hidden_size=8, attention_size=6)
    for k, v in kw.items():
        setattr(cfg, k, v)
    return Seq2Seq(V_SRC, V_TGT, cfg).eval()


def batch():
    sources = [[4, 5, 6, 7, 8], [9, 4], [5, 5, 6]]
    targets = [[4, 5, 6], [7], [8, 9, 4, 5]]
    return make_batch(sources, targets, [0, 1, 2])


MODES = [
    ("none", "init"),
    ("none", "input"),
    ("none", "both"),
    ("bahdanau", "init"),
    ("bahdanau", "none"),
    ("location", "init"),
    ("luong-dot", "init"),
    ("luong-general", "both"),
]


@pytest.mark.parametrize("attention,context", MODES)
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_shapes_weights_and_padding(attention, context, cell):
    m = model(attention=attention, context=context, cell=cell, encoder_layers=2, decoder_layers=2)
    b = batch()
    logits, alpha = m(b.src, b.src_lengths, b.tgt_in)
    T, B = b.tgt_in.shape
    assert logits.shape == (T, B, V_TGT)
    if attention == "none":
        assert alpha is None
    else:
        S = b.src.shape[0]
        assert alpha.shape == (T, B, S)
        real = torch.arange(S)[None, :] < b.src_lengths[:, None]  # (B, S)
        torch.testing.assert_close(alpha.sum(-1), torch.ones(T, B))
        assert (alpha[:, ~real] == 0).all()
    # each sequence alone (no padding) gives the same outputs as in the padded batch
    for i in range(B):
        one = make_batch([b.src[: b.src_lengths[i] - 1, i].tolist()], [[]], [0])  # <eos> re-added
        t = int((b.tgt_in[:, i] != PAD).sum())
        alone, _ = m(one.src, one.src_lengths, b.tgt_in[:t, i : i + 1])
        torch.testing.assert_close(alone[:, 0], logits[:t, i], atol=1e-5, rtol=1e-5)


STEPPED = [
    ("luong-general", "both", "gru", 1),
    ("bahdanau", "init", "lstm", 1),
    ("bahdanau", "none", "gru", 2),
    ("luong-dot", "init", "lstm", 2),
    ("location", "both", "lstm", 2),
]


@pytest.mark.parametrize("attention,context,cell,layers", STEPPED)
def test_step_loop_equals_teacher_forced_forward(attention, context, cell, layers):
    """The teacher-forced forward (recurrent steps, then the output layer once over all of
    them) gives the logits of the step-by-step decoder."""
    m = model(attention=attention, context=context, cell=cell, decoder_layers=layers)
    b = batch()
    logits, alpha = m(b.src, b.src_lengths, b.tgt_in)
    state = m.encode(b.src, b.src_lengths)
    for t, y in enumerate(b.tgt_in.unbind(0)):
        step_logits, state = m.step(y, state)
        torch.testing.assert_close(step_logits, logits[t])
        if attention == "location":  # the state carries this step's weights to the next
            torch.testing.assert_close(state.previous, alpha[t])


PARALLEL = [
    ("none", "init", True),
    ("none", "input", True),
    ("none", "both", True),
    ("luong-dot", "init", False),
    ("luong-general", "both", False),
]


@pytest.mark.parametrize("attention,context,feeding", PARALLEL)
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_whole_sequence_decoder_equals_the_step_loop(attention, context, feeding, cell):
    """Without Bahdanau attention or input feeding, the teacher-forced forward runs the decoder
    as a whole sequence (Decoder.sequence): the same logits, weights and gradients as stepping."""
    torch.manual_seed(0)
    m = model(
        attention=attention, context=context, cell=cell, input_feeding=feeding, decoder_layers=2
    ).double()
    assert m.decoder.parallel
    b = batch()
    logits, alpha = m(b.src, b.src_lengths, b.tgt_in)
    loss = sequence_loss(logits, b.tgt_out)[0]
    grads = torch.autograd.grad(loss, list(m.parameters()), allow_unused=True)
    state = m.encode(b.src, b.src_lengths)
    steps, weights = [], []
    for y in b.tgt_in.unbind(0):
        step_logits, state, a = m.decoder.step(y, state)
        steps.append(step_logits)
        weights.append(a)
    torch.testing.assert_close(torch.stack(steps), logits)
    if alpha is not None:
        torch.testing.assert_close(torch.stack(weights), alpha)
    loss_steps = sequence_loss(torch.stack(steps), b.tgt_out)[0]
    step_grads = torch.autograd.grad(loss_steps, list(m.parameters()), allow_unused=True)
    for (name, _), g, h in zip(m.named_parameters(), grads, step_grads, strict=True):
        if g is None or h is None:
            assert g is None and h is None, name
        else:
            torch.testing.assert_close(g, h, msg=name)


def test_input_feeding_off_drops_the_fed_back_input():
    fed, unfed = (
        model(attention="luong-general"),
        model(attention="luong-general", input_feeding=False),
    )
    assert not fed.decoder.parallel and unfed.decoder.parallel
    E, H = 8, 8
    assert fed.decoder.cells[0].input_size == E + H and unfed.decoder.cells[0].input_size == E


def test_scheduled_sampling_feeds_own_predictions():
    m = model(attention="bahdanau")
    b = batch()
    teacher, _ = m(b.src, b.src_lengths, b.tgt_in, teacher_forcing=1.0)
    free, _ = m(b.src, b.src_lengths, b.tgt_in, teacher_forcing=0.0)
    # free running: feeding the previous argmax by hand gives the same logits
    state, y = m.encode(b.src, b.src_lengths), b.tgt_in[0]
    for t in range(len(b.tgt_in)):
        logits, state = m.step(y, state)
        torch.testing.assert_close(logits, free[t])
        y = logits.argmax(-1)
    assert not torch.allclose(teacher[1:], free[1:])
    # a mix: per token, the true one with probability eps, drawn from the generator
    g = torch.Generator().manual_seed(3)
    mixed, _ = m(b.src, b.src_lengths, b.tgt_in, teacher_forcing=0.5, generator=g)
    again, _ = m(b.src, b.src_lengths, b.tgt_in, 0.5, torch.Generator().manual_seed(3))
    torch.testing.assert_close(mixed, again)
    torch.testing.assert_close(mixed[0], teacher[0])  # the first input is always <bos>


def test_scheduled_sampling_schedule_in_training_task():
    """The task asks the schedule for eps at its global step: linear decay reaches eps_min."""
    assert teacher_forcing_prob(0, "linear", steps=100) == 1.0
    assert teacher_forcing_prob(50, "linear", steps=100) == pytest.approx(0.5)
    assert teacher_forcing_prob(10**6, "inverse_sigmoid", k=10) == 0.0


def test_masked_loss_ignores_padding():
    b = batch()
    T, B = b.tgt_out.shape
    logits = torch.randn(T, B, V_TGT)
    total, n = sequence_loss(logits, b.tgt_out)
    assert n == int((b.tgt_out != PAD).sum()) == 3 + 1 + 4 + 3
    noisy = logits.masked_fill((b.tgt_out == PAD)[..., None], 100.0)
    torch.testing.assert_close(sequence_loss(noisy, b.tgt_out)[0], total)


def test_label_smoothing_is_the_mixed_target_cross_entropy():
    """ε = 0.2: per real token, (1 - ε)·(-log p_y) + ε·mean_v(-log p_v); padding still masked;
    ε = 0 is the plain loss."""
    b = batch()
    T, B = b.tgt_out.shape
    logits = torch.randn(T, B, V_TGT, dtype=torch.float64)
    logp = torch.log_softmax(logits, -1)
    real = b.tgt_out != PAD
    nll = -logp.gather(-1, b.tgt_out[..., None]).squeeze(-1)
    expected = ((0.8 * nll + 0.2 * -logp.mean(-1)) * real).sum()
    torch.testing.assert_close(sequence_loss(logits, b.tgt_out, 0.2)[0], expected)
    torch.testing.assert_close(sequence_loss(logits, b.tgt_out, 0.0)[0], (nll * real).sum())


def test_config_errors_are_one_line():
    with pytest.raises(UserError, match="label_smoothing' must be in"):
        check_seq2seq_config(Seq2SeqConfig(label_smoothing=1.0))
    with pytest.raises(UserError, match="luong-dot"):
        check_seq2seq_config(Seq2SeqConfig(attention="luong-dot", encoder_size=5))
    with pytest.raises(UserError, match="blind"):
        check_seq2seq_config(Seq2SeqConfig(attention="none", context="none"))
    with pytest.raises(UserError, match="input_feeding' false applies to attention queried after"):
        check_seq2seq_config(Seq2SeqConfig(attention="bahdanau", input_feeding=False))


@pytest.mark.parametrize(
    "attention,feeding", [("bahdanau", True), ("luong-general", True), ("luong-general", False)]
)
def test_learns_to_reverse(attention, feeding):
    """Reversing 4-token sequences: the loss falls a lot in 120 steps."""
    torch.manual_seed(0)
    m = model(attention=attention, hidden_size=32, embedding_size=16, input_feeding=feeding)
    m.train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(120):
        src = torch.randint(4, V_TGT, (16, 4)).tolist()
        b = make_batch(src, [s[::-1] for s in src], range(16))
        logits, _ = m(b.src, b.src_lengths, b.tgt_in)
        total, n = sequence_loss(logits, b.tgt_out)
        (total / n).backward()
        opt.step()
        opt.zero_grad()
        losses.append(total.item() / n)
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10
    assert b.tgt_in[0, 0] == BOS and (b.tgt_out == EOS).sum() == 16


def test_ensemble_averages_the_members_probabilities():
    """Ensemble.step = log of the mean of the members' softmaxes; a one-member ensemble
    decodes as its model; greedy, and beam search (which reorders every member's state)
    of width 1, agree for two members."""
    from rnnkit.decoding import beam_search, decode_batch
    from rnnkit.seq2seq import Ensemble

    torch.manual_seed(0)
    m1, m2 = model(attention="bahdanau"), model(attention="luong-general", cell="lstm")
    b = batch()
    both = Ensemble([m1, m2]).eval()
    y = torch.full((3,), BOS)
    with torch.no_grad():
        mixed, _ = both.step(y, both.encode(b.src, b.src_lengths))
        p1 = torch.softmax(m1.step(y, m1.encode(b.src, b.src_lengths))[0], -1)
        p2 = torch.softmax(m2.step(y, m2.encode(b.src, b.src_lengths))[0], -1)
    torch.testing.assert_close(mixed.exp(), (p1 + p2) / 2)

    def greedy(m):
        with torch.no_grad():
            state = m.encode(b.src, b.src_lengths)
            return decode_batch(m.step, state, 3, bos_id=BOS, eos_id=EOS, max_len=7)

    assert greedy(Ensemble([m1])) == greedy(m1)
    with torch.no_grad():
        beams = beam_search(
            both.step,
            both.encode(b.src, b.src_lengths),
            3,
            bos_id=BOS,
            eos_id=EOS,
            max_len=7,
            beam_width=1,
            reorder=both.reorder_state,
        )
        wide = beam_search(
            both.step,
            both.encode(b.src, b.src_lengths),
            3,
            bos_id=BOS,
            eos_id=EOS,
            max_len=7,
            beam_width=4,
            n_best=2,
            reorder=both.reorder_state,
        )
    assert [h[0][0] for h in beams] == greedy(both)
    assert all(len(h) == 2 for h in wide)


def test_library_errors_name_its_argument_and_the_cli_config_lives_with_the_tasks():
    import subprocess
    import sys

    import rnnkit.seq2seq as library

    with pytest.raises(ValueError, match=r"^hidden_size must be >= 1, got 0$"):
        Seq2Seq(5, 5, Seq2SeqConfig(hidden_size=0))
    with pytest.raises(ValueError, match=r"^attention must be one of none, bahdanau"):
        library.check_seq2seq_options(Seq2SeqConfig(attention="cosine"))
    # the old names stay importable from the model's module
    assert library.Seq2SeqConfig is Seq2SeqConfig
    assert library.check_seq2seq_config is check_seq2seq_config
    # the library imports no task, command line, lab or configuration
    code = (
        "import sys, rnnkit.seq2seq, rnnkit.decoding, rnnkit.attention, "
        "rnnkit.scheduled_sampling; print(sorted(m for m in sys.modules if m.startswith("
        "('rnnkit.tasks', 'rnnkit.cli', 'rnnkit.lab', 'rnnkit.config'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
