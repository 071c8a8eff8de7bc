"""The execute task (Learning to Execute): generated programs against real Python, the
restricted evaluator's refusals, the curricula, training through the command line, predict,
eval and the curricula benchmark's smoke mode."""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import random
import sys
from collections import Counter
from pathlib import Path

import pytest
from matplotlib.image import imread

from rnnkit.cli import main
from rnnkit.tasks import execute_task
from rnnkit.tasks.execute import SPEC as EXECUTE
from rnnkit.tasks.execute_programs import ProgramError, generate_program, run_program
from rnnkit.tasks.execute_task import Curriculum, example, split_of, stages
from user_errors import one_line_error

QUIET = ["--train.progress", "false"]
PAPER = "j=8584\nfor x in range(8):j+=920\nb=(1500+j)\nprint((b+7567))"


def python_prints(program: str) -> str:
    """The independent reference: real Python runs our own generated program."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(program, {})  # only programs this test generated itself
    return out.getvalue().strip()


@pytest.mark.parametrize("family", ["programs", "addition"])
def test_generated_targets_equal_what_python_prints(family):
    rng = random.Random(1)
    for length in (1, 2, 4, 6):
        for nesting in (1, 2, 3, 4):
            for _ in range(40):
                program = generate_program(rng, length, nesting, family)
                assert str(run_program(program)) == python_prints(program), program
                ex = example(rng, length, nesting, family, "train")
                assert ex.target == python_prints(ex.source)


def test_programs_use_the_whole_grammar_and_addition_has_length_digits():
    rng = random.Random(0)
    text = "\n".join(generate_program(rng, 4, 2) for _ in range(300))
    for piece in ("for x in range(", "+=", "-=", " if ", " else ", "*", "<", ">", "="):
        assert piece in text, piece
    a, b = generate_program(rng, 9, 1, "addition").removeprefix("print((").rstrip(")").split("+")
    assert len(a) == len(b) == 9
    assert run_program(PAPER) == 25011  # the paper's example


def test_held_out_programs_never_train():
    val = execute_task.examples(30, 2, 1, "programs", "val", 0)
    test = execute_task.examples(30, 2, 1, "programs", "test", 0)
    assert {split_of(ex.source) for ex in val} == {"val"}
    assert {split_of(ex.source) for ex in test} == {"test"}
    assert execute_task.examples(30, 2, 1, "programs", "val", 0) == val  # fixed
    rng = random.Random(3)
    train = {example(rng, 2, 1, "programs", "train").source for _ in range(300)}
    assert train.isdisjoint(ex.source for ex in val + test)


@pytest.mark.parametrize(
    ("program", "words"),
    [
        ("print(3", ["line 1, column 6", "syntax error"]),
        ("a=1\nprint(a/2)", ["line 2, column 7", "division '/'"]),
        ("import os\nprint(1)", ["line 1, column 1", "an import"]),
        ("print(open(1))", ["line 1, column 7", "a function call"]),
        ("print(-3)", ["unary operator"]),
        ("print(1.5)", ["unsupported literal '1.5'"]),
        ("print(b)", ["name 'b' is not defined"]),
        ("a=1", ["ends with print(EXPR)"]),
        ("if 1<2:\n a=1\nprint(1)", ["an if statement"]),
        ("print((1 if 1==2 else 3))", ["line 1, column 13", "a<b or a>b"]),
        ("a=1\nfor x in [1,2]:a+=1\nprint(a)", ["line 2, column 10", "range(k)"]),
        ("a=1\nwhile a<3:a+=1\nprint(a)", ["a while loop"]),
        ("a=2\nfor x in range(99):a=a*a\nprint(a)", ["more than 100 digits"]),
        ("print(1)\nprint(2)", ["line 1", "only the last line prints"]),
    ],
)
def test_the_evaluator_refuses_what_is_outside_the_grammar(program, words, monkeypatch):
    def refused(*args, **kwargs):
        raise AssertionError("the evaluator must not call eval or exec")

    monkeypatch.setattr(builtins, "eval", refused)
    monkeypatch.setattr(builtins, "exec", refused)
    with pytest.raises(ProgramError) as e:
        run_program(program)
    message = str(e.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_curricula_draw_the_difficulties_they_promise():
    rng = random.Random(0)
    assert stages(3, 2) == [(1, 1), (2, 1), (3, 1), (1, 2), (2, 2), (3, 2)]
    none = Curriculum("none", 3, 2, 0.2)
    assert {none.draw(rng) for _ in range(200)} == {(3, 2)} and none.at_target
    naive = Curriculum("naive", 3, 2, 0.2)
    seen = []
    for _ in range(6):
        seen.append({naive.draw(rng) for _ in range(50)})
        assert not naive.advance(0.5, 0.95)  # below the threshold: it stays
        naive.advance(0.96, 0.95)
    assert seen == [{s} for s in stages(3, 2)] and naive.at_target
    assert not naive.advance(1.0, 0.95)  # the target is the last stage
    mix = Counter(Curriculum("mix", 3, 2, 0.2).draw(rng) for _ in range(6000))
    assert set(mix) == set(stages(3, 2)) and min(mix.values()) > 800  # uniform: 1000 each
    combined = Curriculum("combined", 3, 2, 0.2)
    draws = Counter(combined.draw(rng) for _ in range(6000))
    # 80% the current stage (1, 1), 20% mixed over the 6 difficulties (1, 1) included
    assert draws[(1, 1)] == pytest.approx(6000 * (0.8 + 0.2 / 6), rel=0.05)
    assert set(draws) == set(stages(3, 2))
    with pytest.raises(ValueError, match="strategy must be one of"):
        Curriculum("easy", 3, 2, 0.2)


def test_patience_passes_a_stalled_stage():
    """The paper's code's second rule: a stage whose accuracy has not risen for ``patience``
    checks is passed below the threshold; a rise restarts the count; off by default."""
    stalled = Curriculum("naive", 3, 1, 0.2, patience=2)
    assert not stalled.advance(0.5, 0.95)  # the first check sets the stage's best
    assert not stalled.advance(0.6, 0.95)  # a rise: the count starts again
    assert not stalled.advance(0.6, 0.95)  # one check without a rise
    assert stalled.advance(0.55, 0.95) and stalled.current == (2, 1)  # two: passed
    assert not stalled.advance(0.1, 0.95)  # the next stage starts its own count
    plain = Curriculum("naive", 3, 1, 0.2)
    assert not any(plain.advance(0.5, 0.95) for _ in range(20)) and plain.stage == 0


def test_a_stage_is_judged_on_training_programs_of_its_difficulty():
    # 1-digit addition has 100 programs, some 10 held out and never trained on: judged on those
    # a curriculum stalled at stage (1, 1); judged on training-split programs it moves on
    cfg = EXECUTE.presets["tiny"]()
    cfg.data.family, cfg.data.length, cfg.train.curriculum = "addition", 3, "naive"
    task = EXECUTE.build(cfg)
    for stage in range(2):
        programs = task.stage_examples()
        assert len(programs) == cfg.data.stage_examples
        assert {split_of(ex.source) for ex in programs} == {"train"}
        assert {len(ex.source.split("+")[0].split("(")[-1]) for ex in programs} == {stage + 1}
        assert all(ex.target == str(run_program(ex.source)) for ex in programs)
        task.curriculum.advance(1.0, 0.95)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("execute") / "run"
    args = ["train", "execute", "--preset", "tiny", "--out", str(out), *QUIET,
            "--train.curriculum", "naive", "--train.curriculum_threshold", "0"]  # fmt: skip
    assert main(args) == 0
    return out


def log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_training_lowers_the_loss_and_the_curriculum_advances(run):
    train = [r["loss"] for r in log(run) if r["split"] == "train"]
    assert train[-1] < 0.85 * train[0]
    # threshold 0: every evaluation passes the stage, (1, 1) -> (2, 1) -> (1, 2)
    val = [(r["stage_length"], r["stage_nesting"]) for r in log(run) if r["split"] == "val"]
    assert val == [(1, 1), (2, 1)]
    from safetensors import safe_open

    with safe_open(str(run / "last.safetensors"), "pt") as f:
        assert int(f.get_tensor("extra.stage")[0]) == 2  # resumes where it stands


def test_predict_prints_the_answer_and_refuses_bad_programs(run, tmp_path, capsys):
    program = PAPER.replace("\n", "\\n")  # as a shell passes "...\n..."
    assert main(["predict", str(run), program]) == 0
    answer, verdict = capsys.readouterr().out.rstrip("\n").split("\t")
    assert answer.lstrip("-").isdigit() or answer == ""
    assert verdict == "(right)" if answer == "25011" else "wrong: it prints 25011" in verdict
    for bad, words in (("print((1+2)", "syntax error"), ("print(len(3))", "a function call")):
        assert main(["predict", str(run), bad]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err and "line 1" in err
    assert main(["predict", str(run), "print(1)", "--attention", str(tmp_path / "a.png")]) == 2
    assert "trained without attention" in capsys.readouterr().err


def test_predict_draws_the_attention_map(tmp_path, capsys):
    out = tmp_path / "attn"
    args = ["train", "execute", "--preset", "tiny", "--out", str(out), "--dry-run", *QUIET,
            "--model.attention", "location"]  # fmt: skip
    assert main(args) == 0
    png = tmp_path / "map.png"
    assert main(["predict", str(out), PAPER, "--attention", str(png)]) == 0
    image = imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image[..., :3].std() > 0.05


def test_the_default_presets_model_trains_through_the_cli(tmp_path):
    """The default preset's model (location-aware attention, a bidirectional encoder, the
    answer ones digit first) on the tiny preset's budget: the loss goes down."""
    out = tmp_path / "loc"
    args = ["train", "execute", "--preset", "tiny", "--out", str(out), *QUIET,
            "--model.attention", "location", "--model.bidirectional", "true",
            "--data.answer_order", "reversed", "--data.family", "addition",
            "--data.nesting", "1", "--train.curriculum", "none"]  # fmt: skip
    assert main(args) == 0
    train = [r["loss"] for r in log(out) if r["split"] == "train"]
    assert train[-1] < 0.85 * train[0]


def test_eval_prints_and_writes_the_scores_by_difficulty(run, capsys):
    assert main(["eval", str(run), "--examples", "6"]) == 0
    out = capsys.readouterr().out
    assert "per-char acc (teacher forced)" in out and "exact match (greedy)" in out
    result = json.loads((run / "eval_test.json").read_text())
    rows = result["by_difficulty"]
    assert [(r["length"], r["nesting"]) for r in rows] == stages(2, 2)
    assert all(r["examples"] == 6 and 0 <= r["char_acc"] <= 1 for r in rows)
    assert result["char_acc"] == rows[-1]["char_acc"]
    assert (run / "eval_test.png").exists()


def test_options_are_checked_in_one_line(tmp_path, capsys):
    for key, value, words in (
        ("train.curriculum", "easy", "train.curriculum"),
        ("train.curriculum_threshold", "2", "'train.curriculum_threshold' must be in [0, 1]"),
        ("train.curriculum_patience", "-1", "'train.curriculum_patience' must be >= 0"),
        ("data.length", "0", "'data.length' must be in [1, 20]"),
        ("data.family", "addition", "the addition family composes nothing"),  # tiny: nesting 2
    ):
        args = ["train", "execute", "--preset", "tiny", "--out", str(tmp_path / "r"),
                f"--{key}", value]  # fmt: skip
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err
        assert not (tmp_path / "r").exists()
    one_line_error(lambda: execute_task.check_curriculum(0.5, -1), "train.curriculum_mix")


def test_the_curricula_benchmark_smoke_mode(tmp_path):
    root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root / "benchmarks"))
    try:
        import execute_curricula
    finally:
        sys.path.remove(str(root / "benchmarks"))
    js, png = tmp_path / "c.json", tmp_path / "c.png"
    args = ["--smoke", "--out", str(tmp_path / "runs"), "--json", str(js), "--png", str(png)]
    assert execute_curricula.main(args) == 0
    rows = json.loads(js.read_text())["rows"]
    assert [r["curriculum"] for r in rows] == ["none", "naive", "mix", "combined"]
    assert all(r["steps"] == 4 and 0 <= r["test_char_acc"] <= 1 for r in rows)
    assert png.exists()


def test_a_reversed_answer_is_written_ones_digit_first_and_read_back(tmp_path, monkeypatch):
    rng, same = random.Random(3), random.Random(3)
    for _ in range(20):
        forward = example(rng, 3, 1, "addition", "train")
        backward = example(same, 3, 1, "addition", "train", order="reversed")
        assert backward.source == forward.source and backward.target == forward.target[::-1]
    out = tmp_path / "rev"
    args = ["train", "execute", "--preset", "tiny", "--out", str(out), "--dry-run", *QUIET,
            "--data.answer_order", "reversed"]  # fmt: skip
    assert main(args) == 0
    from rnnkit.tasks import seq2seq_task
    from rnnkit.tasks.execute_commands import predict_one
    from rnnkit.tasks.seq2seq_commands import load_seq2seq_run

    loaded = load_seq2seq_run(out)
    assert loaded.cfg.data.answer_order == "reversed"
    monkeypatch.setattr(seq2seq_task, "predict", lambda *a, **k: [[("0111-", 0.0)]])
    assert predict_one(loaded, "print((1000-2110))") == "-1110"  # read back as printed
