"""rnnkit.argparse_config: a parser from dataclass fields; types, defaults, flags, errors."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from rnnkit.argparse_config import from_args, parser_from_dataclasses
from rnnkit.config import option
from rnnkit.errors import UserError


@dataclass
class Model:
    task: str = field(metadata={"help": "the task"})
    hidden_size: int = option(32, "H")
    cell: Literal["lstm", "gru"] = option("lstm", "the cell")
    rates: tuple[float, ...] = option((0.1, 0.2), "learning rates")


@dataclass
class Output:
    out: str | None = option(None, "where")
    quiet: bool = option(False, "no progress bar")


def parser():
    return parser_from_dataclasses("rnnkit toy", Model, Output, description="a toy")


def test_fields_become_options_with_their_defaults_and_types():
    args = parser().parse_args(["copy", "--hidden-size", "64", "--rates", "1,2.5", "--quiet"])
    assert from_args(Model, args) == Model("copy", 64, "lstm", (1.0, 2.5))
    assert from_args(Output, args) == Output(None, True)
    defaults = parser().parse_args(["adding"])
    assert from_args(Model, defaults, hidden_size=8) == Model("adding", 8)
    assert from_args(Output, defaults) == Output()


def test_help_lists_every_option_with_its_help_and_default(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    pieces = (
        "--hidden-size HIDDEN_SIZE H (default: 32)",
        "--rates RATES learning rates (default: 0.1,0.2)",
        "--quiet no progress bar",
        "task the task",
    )
    for piece in pieces:
        assert piece in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["a", "--hidden-size", "x"],
            "rnnkit toy: argument --hidden-size: expects an int, got 'x'",
        ),
        (["a", "--cell", "rnn"], "argument --cell: must be one of 'lstm', 'gru', got 'rnn'"),
        (["a", "--rates", "1,nan"], "argument --rates: must be a finite number"),
        (["a", "--bogus"], "rnnkit toy: unrecognized arguments: --bogus"),
        ([], "the following arguments are required: task"),
    ],
)
def test_mistakes_are_one_line_user_errors(argv, message):
    with pytest.raises(UserError) as info:
        parser().parse_args(argv)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_name_declared_twice_is_refused():
    with pytest.raises(TypeError, match="'out' is declared by two"):
        parser_from_dataclasses("x", Output, Output)
