"""Where ``rnnkit eval`` writes: one rule for every task (rnnkit.tasks.eval_files)."""

from __future__ import annotations

import argparse

import pytest

from rnnkit.errors import UserError
from rnnkit.tasks.eval_files import add_out_options, eval_output


def test_the_default_is_the_runs_own_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "eval_test.json").write_text("{}")  # the run's own results: replaced, no --force
    assert eval_output(run, None, "test", False) == run / "eval_test.json"
    assert eval_output(run / "best.safetensors", None, "val", False) == run / "eval_val.json"
    assert eval_output(run, None, None, False, stem="ner") == run / "ner.json"


def test_out_never_overwrites_without_force(tmp_path):
    out = tmp_path / "results.json"
    assert eval_output("run", str(out), "test", False) == out
    out.with_suffix(".png").write_bytes(b"png")  # the picture beside it counts too
    with pytest.raises(UserError, match=r"results.png exists; pass --force"):
        eval_output("run", str(out), "test", False)
    assert eval_output("run", str(out), "test", True) == out


@pytest.mark.parametrize("name", ["results.png", "results", "dir/"])
def test_out_must_name_a_json_file(tmp_path, name):
    with pytest.raises(UserError, match=r"give the results JSON's name \(.json\)"):
        eval_output("run", str(tmp_path / name), "test", False)


def test_the_options_read_alike_in_every_task():
    p = argparse.ArgumentParser()
    add_out_options(p, "the confusion matrix")
    a = p.parse_args(["--out", "x.json", "--force"])
    assert (a.out, a.force) == ("x.json", True)
    assert "the confusion matrix beside it as .png" in p.format_help()
