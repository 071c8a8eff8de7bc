"""The README's code runs, and prints what the README says it prints."""

import contextlib
import io
import re
from pathlib import Path

import pytest

README = (Path(__file__).parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d+(?:e[-+]\d+)?", text)]


def test_usage_example_prints_what_the_readme_shows():
    shown = re.search(r"prints\n\n```\n(.*?)```", README, re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(BLOCKS[0], {})
    assert numbers(out.getvalue()) == pytest.approx(numbers(shown), rel=1e-3)


def test_more_examples_run():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(BLOCKS[1], {"__name__": "readme"})
    assert float(out.getvalue()) == pytest.approx(1.1**50)
