"""Configuration: parsing by type, one-line errors, TOML < command line, round trips."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.config import (
    apply_overrides,
    config_from_dict,
    config_to_dict,
    describe,
    load_toml,
    option,
    parse_cli_overrides,
    resolve_config,
    save_config,
)
from rnnkit.errors import UserError


@dataclass
class ModelConfig:
    cell: Literal["elman", "jordan", "lstm", "gru"] = option("lstm", "recurrent cell")
    hidden_size: int = option(128, "H, the state size")
    dropout: float = 0.0  # a plain default, no help text
    bidirectional: bool = option(False, "run a second layer backwards")
    proj_size: int | None = option(None, "project the state to this size")
    sizes: tuple[int, ...] = option((64, 32), "layer sizes")
    tags: list[str] = option(["a"], "free-form labels")


@dataclass
class TrainConfig:
    lr: float = option(3e-3, "step size")
    batch_size: int = option(32, "B")
    device: str = option("cpu", "torch device")
    out_dir: Path = option(Path("runs"), "where checkpoints go")
    schedule: Literal["constant", "cosine"] | None = option(None, "lr schedule")


@dataclass
class RunConfig:
    model: ModelConfig = option(ModelConfig(), "the network")  # a mutable default: a factory
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class NeedsName:
    name: str
    size: int = 3


@dataclass
class RequiredRun:
    base: NeedsName


def set_one(key: str, value: object) -> RunConfig:
    return apply_overrides(RunConfig(), [(key, value)])


@pytest.mark.parametrize(
    "key, text, expected",
    [
        ("train.lr", "3e-3", 0.003),
        ("train.lr", "1", 1.0),
        ("train.lr", " 0.5 ", 0.5),
        ("model.hidden_size", "256", 256),
        ("model.hidden_size", "-1", -1),
        ("model.bidirectional", "TRUE", True),
        ("model.bidirectional", "yes", True),
        ("model.bidirectional", "1", True),
        ("model.bidirectional", "No", False),
        ("model.bidirectional", "false", False),
        ("model.bidirectional", "0", False),
        ("train.device", "cuda:1", "cuda:1"),
        ("train.device", "none", "none"),  # a plain str is never None
        ("model.proj_size", "none", None),
        ("model.proj_size", "NULL", None),
        ("model.proj_size", "8", 8),
        ("model.cell", "gru", "gru"),
        ("train.schedule", "cosine", "cosine"),
        ("train.schedule", "None", None),
        ("model.sizes", "1,2, 3", (1, 2, 3)),
        ("model.sizes", "7", (7,)),
        ("model.sizes", "", ()),
        ("model.tags", "x, y", ["x", "y"]),
        ("train.out_dir", "a/b", Path("a/b")),
    ],
)
def test_string_values_are_parsed_by_the_field_type(key, text, expected):
    cfg = set_one(key, text)
    section, name = key.split(".")
    value = getattr(getattr(cfg, section), name)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("train.lrr", "1", "unknown option 'train.lrr' (did you mean 'train.lr'?)"),
        ("train.lr", "fast", "option 'train.lr' expects a float, got 'fast'"),
        (
            "model.cell",
            "xyz",
            "option 'model.cell' must be one of 'elman', 'jordan', 'lstm', 'gru', got 'xyz'",
        ),
        (
            "train.schedule",
            "linear",
            "option 'train.schedule' must be one of 'constant', 'cosine', none, got 'linear'",
        ),
        ("trian.lr", "1", "unknown section 'trian' (did you mean 'train'?)"),
        ("zzz.lr", "1", "unknown section 'zzz'"),
        ("model.lr", "1", "unknown option 'model.lr' (did you mean 'train.lr'?)"),
        ("model.qqq", "1", "unknown option 'model.qqq'"),
        ("model.hidden_size", "1.5", "option 'model.hidden_size' expects an int, got '1.5'"),
        (
            "model.bidirectional",
            "maybe",
            "option 'model.bidirectional' expects a bool (true/false), got 'maybe'",
        ),
        ("model.proj_size", "big", "option 'model.proj_size' expects an int or none, got 'big'"),
        (
            "model.sizes",
            "1,x",
            "option 'model.sizes' expects a comma-separated list of int, got '1,x'",
        ),
        ("train", "1", "'train' is a section, not an option: set 'train.<name>'"),
        ("train.lr.x", "1", "unknown option 'train.lr.x': 'train.lr' is an option, not a section"),
        # values from TOML or a dict are checked, not parsed
        ("model.hidden_size", True, "option 'model.hidden_size' expects an int, got True"),
        ("model.hidden_size", 2.0, "option 'model.hidden_size' expects an int, got 2.0"),
        (
            "model.bidirectional",
            1,
            "option 'model.bidirectional' expects a bool (true/false), got 1",
        ),
        ("train.device", 3, "option 'train.device' expects a string, got 3"),
        ("train.lr", False, "option 'train.lr' expects a float, got False"),
    ],
)
def test_errors_are_one_line_and_name_the_key(key, value, message):
    with pytest.raises(UserError) as excinfo:
        set_one(key, value)
    assert str(excinfo.value) == message
    assert "\n" not in message


def test_typed_values_are_checked_and_ints_accepted_for_floats():
    cfg = apply_overrides(
        RunConfig(),
        {"train.lr": 1, "model": {"sizes": [1, 2], "bidirectional": True, "proj_size": None}},
    )
    assert cfg.train.lr == 1.0 and type(cfg.train.lr) is float
    assert cfg.model.sizes == (1, 2)
    assert cfg.model.bidirectional is True
    assert cfg.model.proj_size is None


def test_overrides_return_a_new_config_and_later_ones_win():
    cfg = RunConfig()
    new = apply_overrides(cfg, [("train.lr", "0.1"), ("model.tags", "p,q"), ("train.lr", "0.2")])
    assert new.train.lr == 0.2 and new.model.tags == ["p", "q"]
    assert cfg == RunConfig()  # untouched
    new.model.tags.append("r")
    assert cfg.model.tags == ["a"]  # and not sharing its lists


def test_option_gives_each_instance_its_own_mutable_default():
    a, b = RunConfig(), RunConfig()
    a.model.tags.append("z")
    assert b.model.tags == ["a"]
    assert a.model is not b.model


def test_parse_cli_overrides_both_forms_and_passes_the_rest_through():
    argv = ["--train.lr", "3e-3", "--model.cell=gru", "--dry-run", "--out", "x.y", "charlm"]
    argv += ["--train.batch-size", "-4", "--", "--model.cell", "lstm"]
    overrides, rest = parse_cli_overrides(argv)
    assert overrides == [("train.lr", "3e-3"), ("model.cell", "gru"), ("train.batch_size", "-4")]
    assert rest == ["--dry-run", "--out", "x.y", "charlm", "--", "--model.cell", "lstm"]


@pytest.mark.parametrize("argv", [["--train.lr"], ["--train.lr", "--model.cell", "gru"]])
def test_parse_cli_override_without_a_value_is_an_error(argv):
    with pytest.raises(UserError) as excinfo:
        parse_cli_overrides(argv)
    assert str(excinfo.value) == "option '--train.lr' needs a value"


def test_load_toml_flattens_sections(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[train]\nlr = 0.01\ndevice = "cpu"\n\n[model]\nsizes = [8, 4]\n')
    assert load_toml(path) == {"train.lr": 0.01, "train.device": "cpu", "model.sizes": [8, 4]}


def test_load_toml_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(UserError) as excinfo:
        load_toml(tmp_path / "nope.toml")
    assert str(excinfo.value) == f"config file {tmp_path / 'nope.toml'} not found"

    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nlr = = 3\n")
    with pytest.raises(UserError) as excinfo:
        load_toml(bad)
    message = str(excinfo.value)
    assert message.startswith(f"config file {bad} is not valid TOML: ")
    assert "line 2" in message and "\n" not in message


def test_precedence_defaults_then_toml_then_command_line(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[train]\nlr = 0.01\nbatch_size = 8\n")
    cli, _ = parse_cli_overrides(["--train.lr", "0.5"])
    cfg = resolve_config(RunConfig(), path, cli)
    assert cfg.train.lr == 0.5  # command line beats TOML
    assert cfg.train.batch_size == 8  # TOML beats the default
    assert cfg.model.hidden_size == 128  # the default
    assert resolve_config(RunConfig, None, []) == RunConfig()


def test_a_bad_value_in_the_toml_file_names_the_file(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[train]\nlr = "fast"\n')
    with pytest.raises(UserError) as excinfo:
        resolve_config(RunConfig(), path, [])
    assert str(excinfo.value) == (
        f"config file {path}: option 'train.lr' expects a float, got 'fast'"
    )


def test_dict_round_trip_through_json():
    cfg = set_one("model.cell", "gru")
    cfg = apply_overrides(cfg, {"model.proj_size": 4, "train.out_dir": "x/y"})
    d = json.loads(json.dumps(config_to_dict(cfg)))
    assert d["model"]["sizes"] == [64, 32] and d["train"]["out_dir"] == "x/y"
    assert config_from_dict(RunConfig, d) == cfg


def test_config_from_dict_is_strict_but_fills_absent_keys_with_defaults():
    assert config_from_dict(RunConfig, {"train": {"lr": 0.1}}).model == ModelConfig()
    with pytest.raises(UserError, match=r"^unknown option 'train\.lrr' \(did you mean"):
        config_from_dict(RunConfig, {"train": {"lrr": 0.1}})
    with pytest.raises(UserError) as excinfo:  # strings are not parsed here
        config_from_dict(RunConfig, {"model": {"hidden_size": "3"}})
    assert str(excinfo.value) == "option 'model.hidden_size' expects an int, got '3'"
    with pytest.raises(UserError) as excinfo:
        config_from_dict(RequiredRun, {"base": {"size": 4}})
    assert str(excinfo.value) == "missing option 'base.name'"
    assert config_from_dict(RequiredRun, {"base": {"name": "n"}}) == RequiredRun(NeedsName("n"))


@settings(max_examples=40, deadline=None)
@given(
    lr=st.floats(allow_nan=False, allow_infinity=False),
    hidden=st.integers(-(10**12), 10**12),
    sizes=st.lists(st.integers(0, 10**6), max_size=4),
    proj=st.none() | st.integers(0, 99),
)
def test_command_line_text_round_trips(lr, hidden, sizes, proj):
    overrides = [
        ("train.lr", repr(lr)),
        ("model.hidden_size", str(hidden)),
        ("model.sizes", ",".join(map(str, sizes))),
        ("model.proj_size", str(proj)),
    ]
    cfg = apply_overrides(RunConfig(), overrides)
    assert (cfg.train.lr, cfg.model.hidden_size) == (lr, hidden)
    assert (cfg.model.sizes, cfg.model.proj_size) == (tuple(sizes), proj)
    assert config_from_dict(RunConfig, config_to_dict(cfg)) == cfg


def test_describe_lists_every_option_with_type_default_and_help():
    rows = describe(RunConfig)
    assert [r[0] for r in rows] == [
        "model.cell",
        "model.hidden_size",
        "model.dropout",
        "model.bidirectional",
        "model.proj_size",
        "model.sizes",
        "model.tags",
        "train.lr",
        "train.batch_size",
        "train.device",
        "train.out_dir",
        "train.schedule",
    ]
    by_key = {r[0]: r[1:] for r in rows}
    assert by_key["model.cell"] == ("{elman,jordan,lstm,gru}", "'lstm'", "recurrent cell")
    assert by_key["train.lr"] == ("float", "0.003", "step size")
    assert by_key["model.proj_size"] == ("int | none", "None", "project the state to this size")
    assert by_key["model.sizes"] == ("tuple[int, ...]", "(64, 32)", "layer sizes")
    assert by_key["model.dropout"] == ("float", "0.0", "")
    assert by_key["train.out_dir"][0] == "path"
    # an instance shows its own values; a required field shows as such
    assert dict((r[0], r[2]) for r in describe(set_one("train.lr", "1")))["train.lr"] == "1.0"
    assert describe(RequiredRun)[0] == ("base.name", "str", "(required)", "")


def test_save_config_writes_config_and_argv_atomically(tmp_path):
    path = tmp_path / "run" / "config.json"
    save_config(set_one("train.lr", "0.5"), path, argv=["train", "charlm", "--train.lr", "0.5"])
    saved = json.loads(path.read_text())
    assert saved["argv"] == ["train", "charlm", "--train.lr", "0.5"]
    assert config_from_dict(RunConfig, saved["config"]).train.lr == 0.5
    save_config(RunConfig(), path)  # overwrite
    assert json.loads(path.read_text())["argv"] is None
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]  # no temporary files
