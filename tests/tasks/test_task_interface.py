"""The task interface (rnnkit.tasks.base): a task is one module and one registration line, the
command line dispatches through the registry and names no task, one load_run loads any task."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import rnnkit.cli
from rnnkit.cli import main
from rnnkit.errors import UserError
from rnnkit.tasks import TaskSpec, base, register, registry
from rnnkit.tasks.longrange import adding_tiny, builder, checker
from rnnkit.tasks.runs import load_run


@pytest.fixture
def toy_task():
    """A new task: its registration line, as a task module would hold it."""
    presets = {"default": adding_tiny}
    spec = register(
        TaskSpec("toy_adding", "a toy", presets, builder("adding"), check=checker("adding"))
    )
    yield spec
    del base._REGISTRY[spec.name]


def test_a_registered_task_trains_and_is_listed(toy_task, tmp_path, capsys):
    assert registry()["toy_adding"] is toy_task
    assert main(["train", "--help"]) == 0
    assert "toy_adding" in capsys.readouterr().out
    run = tmp_path / "run"
    args = ["train", "toy_adding", "--out", str(run), "--dry-run", "--train.progress", "false"]
    assert main(args) == 0
    assert "done: step 1" in capsys.readouterr().out
    with pytest.raises(UserError, match="'toy_adding' checkpoint, not a language model"):
        load_run(run)
    with pytest.raises(UserError, match="not a loadable run"):
        load_run(run, None, "a loadable run")


def test_a_name_registered_twice_is_an_error(toy_task):
    with pytest.raises(ValueError, match="registered twice"):
        register(TaskSpec(name="toy_adding", description="", presets={}, build=builder("adding")))


def test_the_command_line_names_no_task():
    source = Path(rnnkit.cli.__file__).read_text(encoding="utf-8")
    named = [name for name in registry() if re.search(rf"\b{name}\b", source)]
    assert named == []


def test_subcommands_come_from_the_tasks():
    commands = rnnkit.cli.commands()
    standard = ["train", "sample", "score", "predict", "eval"]
    # train first, then the tasks' commands in the registry's (name) order: caption-scene
    # (the caption task's) comes before charlm's sample and score
    assert list(commands)[0] == "train" and "caption-scene" in commands
    assert [name for name in commands if name in standard] == standard
    assert rnnkit.cli.COMMANDS.keys() == commands.keys()  # the old name, still there


@pytest.mark.parametrize(
    ("task", "key", "value", "message"),
    [
        ("charlm", "model.hidden_size", "0", "'model.hidden_size' must be a positive integer"),
        ("charlm", "model.dropout", "1.5", "'model.dropout' must be a number in [0, 1], got 1.5"),
        ("adding", "model.num_layers", "0", "'model.num_layers' must be a positive integer"),
    ],
)
def test_the_library_checks_an_option_and_the_command_line_names_it(
    task, key, value, message, tmp_path, capsys
):
    run = tmp_path / "run"
    assert main(["train", task, "--preset", "tiny", "--out", str(run), f"--{key}", value]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not run.exists()


def test_one_load_run_and_predict_for_one_input(tmp_path):
    run = tmp_path / "run"
    args = ["train", "charlm", "--preset", "tiny", "--out", str(run), "--dry-run"]
    assert main([*args, "--train.progress", "false"]) == 0
    loaded = load_run(run, None, "any task")  # any task's loader; the default: language models
    spec = registry()[loaded.meta["task"]]
    assert isinstance(spec.predict(loaded, "To be"), str)


def test_load_run_loads_a_sequence_task(tmp_path):
    import torch

    run = tmp_path / "run"
    args = ["train", "adding", "--preset", "tiny", "--out", str(run), "--dry-run"]
    assert main([*args, "--train.progress", "false"]) == 0
    loaded = load_run(run, None, "any task")
    x, _ = loaded.problem.generate(3, torch.Generator().manual_seed(0))
    assert loaded.model(x).shape == (3, 1) and not loaded.model.training


def test_run_commands_dispatch_by_the_runs_task(toy_task, tmp_path, capsys):
    """``rnnkit predict RUN ...`` runs the predict of RUN's task, read from its checkpoint."""
    seen = []
    toy = TaskSpec(
        "toy_predict",
        "a toy with a predict",
        {"default": adding_tiny},
        builder("adding"),
        check=checker("adding"),
        run_commands={"predict": (lambda argv: seen.append(argv) or 0, "toy predict")},
    )
    register(toy)
    try:
        run = tmp_path / "run"
        args = ["train", "toy_predict", "--out", str(run), "--dry-run", "--train.progress", "0"]
        assert main(args) == 0
        assert main(["predict", str(run), "an input"]) == 0
        assert seen == [[str(run), "an input"]]
        other = tmp_path / "other"
        args = ["train", "toy_adding", "--out", str(other), "--dry-run", "--train.progress", "0"]
        assert main(args) == 0
        capsys.readouterr()
        assert main(["predict", str(other), "x"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert "is a 'toy_adding' run; rnnkit predict works for runs of:" in err
        assert "toy_predict" in err and "dates" in err
        assert main(["predict", "--beam", "3", str(run)]) == 2
        assert "needs the run first" in capsys.readouterr().err
        assert main(["predict", str(tmp_path / "nothing"), "x"]) == 2
        assert "no run at" in capsys.readouterr().err
        assert main(["predict", "--help"]) == 0
        assert "toy_predict" in capsys.readouterr().out
    finally:
        del base._REGISTRY["toy_predict"]
