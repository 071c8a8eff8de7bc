"""Checkpoints: exact round trips (model, optimizer, RNG), atomic writes, errors, no pickle."""

from __future__ import annotations

import os
import pickle
import random
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from rnnkit.errors import UserError
from rnnkit.train import checkpoint as ckpt_module
from rnnkit.train.checkpoint import (
    check_compatible,
    load_checkpoint,
    load_model_state,
    restore_rng,
    save_checkpoint,
)


class TinyLM(nn.Module):
    """Embedding -> LSTM -> linear, with an integer buffer: enough kinds of state to round-trip."""

    def __init__(self, vocab_size: int = 7, hidden_size: int = 5):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, 4)
        self.rnn = nn.LSTM(4, hidden_size)
        self.decoder = nn.Linear(hidden_size, vocab_size)
        self.register_buffer("steps_seen", torch.tensor(0, dtype=torch.int64))

    def forward(self, tokens):
        ys, _ = self.rnn(self.embedding(tokens))  # (T, B, H)
        return self.decoder(ys)


def train_step(model, optimizer, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 7, (6, 3), generator=g)  # (T, B)
    logits = model(tokens[:-1])
    loss = nn.functional.cross_entropy(logits.reshape(-1, 7), tokens[1:].reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def files(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_model_state_meta_and_extra_tensors_round_trip(tmp_path):
    model = TinyLM()
    meta = {"task": "charlm", "step": 12, "vocab": ["a", "b"], "config": {"train": {"lr": 0.1}}}
    carried = (torch.randn(1, 3, 5), torch.randn(1, 3, 5))
    path = tmp_path / "last.safetensors"
    save_checkpoint(
        path,
        model_state=model.state_dict(),
        meta=meta,
        extra_tensors={"h": carried[0], "c": carried[1], "view": carried[0][0, :, ::2]},
    )
    ckpt = load_checkpoint(path)
    assert ckpt.meta == meta
    assert ckpt.rnnkit_version
    assert ckpt.optimizer_state is None
    assert ckpt.model_state.keys() == model.state_dict().keys()
    for name, t in model.state_dict().items():
        assert torch.equal(ckpt.model_state[name], t) and ckpt.model_state[name].dtype == t.dtype
    assert torch.equal(ckpt.extra_tensors["h"], carried[0])
    assert torch.equal(ckpt.extra_tensors["view"], carried[0][0, :, ::2])  # non-contiguous view
    fresh = TinyLM()
    load_model_state(fresh, ckpt.model_state, path)
    assert all(
        torch.equal(a, b) for a, b in zip(fresh.parameters(), model.parameters(), strict=True)
    )


def test_tied_weights_are_saved_as_separate_tensors(tmp_path):
    weight = torch.randn(7, 4)
    save_checkpoint(
        tmp_path / "t.safetensors",
        model_state={"emb": weight, "out": weight, "T": weight.t(), "none": weight[2:2]},
        meta={},
    )
    state = load_checkpoint(tmp_path / "t.safetensors").model_state
    assert torch.equal(state["emb"], weight) and torch.equal(state["out"], weight)
    assert torch.equal(state["T"], weight.t()) and state["none"].shape == (0, 4)


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda params: torch.optim.Adam(params, lr=1e-2, betas=(0.8, 0.99)),
        lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True),
    ],
    ids=["adam", "sgd-momentum"],
)
def test_resume_is_exact(tmp_path, make_optimizer):
    model = TinyLM()
    optimizer = make_optimizer(model.parameters())
    for seed in range(3):
        train_step(model, optimizer, seed)
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(
        path, model_state=model.state_dict(), meta={}, optimizer_state=optimizer.state_dict()
    )

    ckpt = load_checkpoint(path)
    resumed = TinyLM(hidden_size=5)
    load_model_state(resumed, ckpt.model_state, path)
    resumed_optimizer = make_optimizer(resumed.parameters())
    resumed_optimizer.load_state_dict(ckpt.optimizer_state)
    assert resumed_optimizer.state_dict()["param_groups"] == optimizer.state_dict()["param_groups"]
    live_state = optimizer.state_dict()["state"]
    assert ckpt.optimizer_state["state"].keys() == live_state.keys()  # int param ids
    for i, live in live_state.items():
        for key, value in live.items():
            saved = ckpt.optimizer_state["state"][i][key]
            assert saved.dtype == value.dtype  # e.g. Adam's float32 `step`
            assert torch.equal(saved, value)

    train_step(model, optimizer, seed=3)
    train_step(resumed, resumed_optimizer, seed=3)
    for a, b in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_rng_restore_repeats_the_draws(tmp_path):
    path = tmp_path / "r.safetensors"
    save_checkpoint(path, model_state={}, meta={})

    def draw():
        return torch.rand(4), random.random(), np.random.rand(3), np.random.randn()

    after_save = draw()
    ckpt = load_checkpoint(path)
    draw()  # move on, then go back
    restore_rng(ckpt.rng)
    after_restore = draw()
    assert torch.equal(after_save[0], after_restore[0])
    assert after_save[1] == after_restore[1]
    assert np.array_equal(after_save[2], after_restore[2]) and after_save[3] == after_restore[3]


def test_without_rng_there_is_no_rng_state(tmp_path):
    save_checkpoint(tmp_path / "n.safetensors", model_state={}, meta={}, rng=False)
    assert load_checkpoint(tmp_path / "n.safetensors").rng is None


def test_overwrite_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "runs" / "x" / "last.safetensors"  # parent directories are created
    for step in (1, 2):
        save_checkpoint(path, model_state={"w": torch.full((2,), step)}, meta={"step": step})
    assert load_checkpoint(path).meta == {"step": 2}
    assert files(path.parent) == ["last.safetensors"]


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_crash_before_the_rename_keeps_the_old_checkpoint(tmp_path, monkeypatch, error):
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, model_state={"w": torch.ones(3)}, meta={"step": 1})

    def crash(src, dst):
        raise error

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(UserError if isinstance(error, OSError) else KeyboardInterrupt) as excinfo:
        save_checkpoint(path, model_state={"w": torch.zeros(3)}, meta={"step": 2})
    if isinstance(error, OSError):
        assert str(excinfo.value) == f"cannot write {path}: No space left on device"
    monkeypatch.undo()
    old = load_checkpoint(path)
    assert old.meta == {"step": 1} and torch.equal(old.model_state["w"], torch.ones(3))
    assert files(tmp_path) == ["last.safetensors"]


def test_a_crash_while_writing_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, model_state={"w": torch.ones(3)}, meta={"step": 1})

    def half_write(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\x08\x00\x00\x00\x00\x00\x00\x00{")  # a torn file
        raise RuntimeError("killed")

    monkeypatch.setattr(ckpt_module, "save_file", half_write)
    with pytest.raises(RuntimeError, match="killed"):
        save_checkpoint(path, model_state={"w": torch.zeros(3)}, meta={"step": 2})
    assert load_checkpoint(path).meta == {"step": 1}
    assert files(tmp_path) == ["last.safetensors"]


def test_a_full_disk_is_a_user_error(tmp_path, monkeypatch):
    def full(tensors, filename, metadata=None):
        raise SafetensorError("Error while serializing: I/O error: No space left on device")

    monkeypatch.setattr(ckpt_module, "save_file", full)
    path = tmp_path / "last.safetensors"
    with pytest.raises(UserError) as excinfo:
        save_checkpoint(path, model_state={}, meta={})
    assert str(excinfo.value) == (
        f"cannot write {path}: Error while serializing: I/O error: No space left on device"
    )
    assert files(tmp_path) == []


@pytest.mark.parametrize("cut", [0, 7, 100, -1], ids=["empty", "8-bytes", "header", "last-byte"])
def test_a_truncated_file_is_a_user_error(tmp_path, cut):
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, model_state={"w": torch.ones(3)}, meta={})
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(UserError) as excinfo:
        load_checkpoint(path)
    message = str(excinfo.value)
    assert message.startswith(f"checkpoint {path} is not a safetensors file or is corrupt (")
    assert "\n" not in message


def test_other_files_are_user_errors_naming_the_file(tmp_path):
    with pytest.raises(UserError) as excinfo:
        load_checkpoint(tmp_path / "missing.safetensors")
    assert str(excinfo.value) == f"checkpoint {tmp_path / 'missing.safetensors'} not found"

    pickled = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, pickled)
    with pytest.raises(UserError, match="is not a safetensors file or is corrupt"):
        load_checkpoint(pickled)

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(2)}, plain)
    with pytest.raises(UserError) as excinfo:
        load_checkpoint(plain)
    assert str(excinfo.value) == (
        f"{plain} is a safetensors file but not an rnnkit checkpoint (no format version)"
    )

    future = tmp_path / "future.safetensors"
    save_file({"model.w": torch.ones(2)}, future, metadata={"format": "99", "meta": "{}"})
    with pytest.raises(UserError) as excinfo:
        load_checkpoint(future)
    assert str(excinfo.value) == (
        f"checkpoint {future} has format version 99; this rnnkit reads version 1"
    )

    broken = tmp_path / "broken.safetensors"
    save_file({"model.w": torch.ones(2)}, broken, metadata={"format": "1", "meta": "{not json"})
    with pytest.raises(UserError, match=r"is not a safetensors file or is corrupt \(bad header"):
        load_checkpoint(broken)


def test_loading_never_unpickles(tmp_path, monkeypatch):
    model = TinyLM()
    optimizer = torch.optim.Adam(model.parameters())
    train_step(model, optimizer, seed=0)
    path = tmp_path / "last.safetensors"
    save_checkpoint(
        path, model_state=model.state_dict(), meta={}, optimizer_state=optimizer.state_dict()
    )

    def forbidden(*args, **kwargs):
        raise AssertionError("unpickling is forbidden")

    for target, name in [(torch, "load"), (pickle, "load"), (pickle, "loads")]:
        monkeypatch.setattr(target, name, forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    ckpt = load_checkpoint(path)
    restore_rng(ckpt.rng)
    torch.optim.Adam(TinyLM().parameters()).load_state_dict(ckpt.optimizer_state)


def test_check_compatible_names_the_file_and_the_mismatch():
    check_compatible({"task": "charlm", "step": 3}, {"task": "charlm"}, "runs/x/last.safetensors")
    with pytest.raises(UserError) as excinfo:
        check_compatible({"task": "wordlm"}, {"task": "charlm"}, "runs/x/last.safetensors")
    assert (
        str(excinfo.value)
        == "checkpoint runs/x/last.safetensors is for task 'wordlm', not 'charlm'"
    )
    with pytest.raises(UserError) as excinfo:
        check_compatible({}, {"task": "charlm"}, "c.safetensors")
    assert (
        str(excinfo.value)
        == "checkpoint c.safetensors does not record its task (expected 'charlm')"
    )


def test_load_model_state_reports_the_first_mismatch_and_changes_nothing():
    model = TinyLM()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    good = TinyLM().state_dict()
    prefix = "checkpoint c.safetensors does not fit the model:"

    missing = {k: v for k, v in good.items() if not k.startswith("decoder")}
    with pytest.raises(UserError) as excinfo:
        load_model_state(model, missing, "c.safetensors")
    assert str(excinfo.value) == f"{prefix} missing key 'decoder.weight' (and 1 more)"

    with pytest.raises(UserError) as excinfo:
        load_model_state(model, {**good, "extra.bias": torch.zeros(1)}, "c.safetensors")
    assert str(excinfo.value) == f"{prefix} unexpected key 'extra.bias'"

    with pytest.raises(UserError) as excinfo:
        load_model_state(model, TinyLM(hidden_size=6).state_dict(), "c.safetensors")
    assert str(excinfo.value) == (
        f"{prefix} 'rnn.weight_ih_l0' has shape (24, 4) in the checkpoint, (20, 4) in the model"
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_meta_must_be_json(tmp_path):
    with pytest.raises(TypeError, match="meta must hold only JSON values"):
        save_checkpoint(tmp_path / "m.safetensors", model_state={}, meta={"x": object()})
    assert files(tmp_path) == []


# --- corrupted and incomplete files (issue 12) -------------------------------------------------


def rewrite(path, *, tensors=None, header=None) -> None:
    """Write ``path`` again with some tensors or header entries replaced (None: delete), keeping
    the checksum valid if the file has one: a well-formed file with bad content."""
    with safe_open(str(path), framework="pt") as f:
        old_header = dict(f.metadata())
        old_tensors = {k: f.get_tensor(k) for k in f.keys()}
    for k, v in (tensors or {}).items():
        if v is None:
            old_tensors.pop(k)
        else:
            old_tensors[k] = v
    for k, v in (header or {}).items():
        if v is None:
            old_header.pop(k)
        else:
            old_header[k] = v
    if "sha256" in old_header:
        old_header["sha256"] = ckpt_module._checksum(old_tensors)
    save_file(old_tensors, path, metadata=old_header)


def one_line(excinfo, path) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and str(path) in message
    return message


@pytest.mark.parametrize("meta", ["[1, 2]", '"text"', "3"])
def test_metadata_that_is_not_an_object_is_refused(tmp_path, meta):
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, model_state={"w": torch.ones(2)}, meta={"task": "charlm"})
    rewrite(path, header={"meta": meta})
    with pytest.raises(UserError) as excinfo:
        load_checkpoint(path)
    assert "not an object" in one_line(excinfo, path)


def test_missing_or_mistyped_metadata_keys_are_named(tmp_path):
    path = tmp_path / "last.safetensors"
    meta = {"task": "charlm", "config": {}, "trainer": {"step": 3, "epoch": 0, "position": 3}}
    save_checkpoint(path, model_state={"w": torch.ones(2)}, meta=meta)
    assert load_checkpoint(path, require=("task", "config")).meta == meta
    with pytest.raises(UserError) as excinfo:
        load_checkpoint(path, require=("task", "config", "vocab"))
    assert one_line(excinfo, path) == (
        f"checkpoint {path} is incomplete: its metadata lacks 'vocab'"
    )
    with pytest.raises(UserError) as excinfo:
        load_checkpoint(path, require=("trainer",))
    assert "'trainer.best' is missing" in one_line(excinfo, path)
    rewrite(path, header={"meta": '{"task": "charlm", "config": [1]}'})
    with pytest.raises(UserError) as excinfo:
        load_checkpoint(path, require=("task", "config"))
    assert "metadata 'config' is a JSON array, expected an object" in one_line(excinfo, path)


@pytest.mark.parametrize(
    "bad",
    [torch.zeros(5056, dtype=torch.float32), torch.zeros(17, dtype=torch.uint8)],
    ids=["dtype", "size"],
)
def test_an_invalid_rng_state_is_refused_at_load(tmp_path, bad):
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, model_state={"w": torch.ones(2)}, meta={})
    rewrite(path, tensors={"rng.torch": bad})
    with pytest.raises(UserError) as excinfo:
        load_checkpoint(path)
    assert "invalid RNG state" in one_line(excinfo, path)
    rewrite(
        path,
        tensors={"rng.torch": torch.get_rng_state()},
        header={"rng.python": "[3, [1, 2], null]"},
    )
    with pytest.raises(UserError) as excinfo:
        load_checkpoint(path)
    assert "invalid RNG state" in one_line(excinfo, path)


def test_a_flipped_byte_in_the_tensor_data_is_refused(tmp_path):
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, model_state=TinyLM().state_dict(), meta={"step": 1})
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")  # the tensor data follows the JSON header
    data[(start + len(data)) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(UserError) as excinfo:
        load_checkpoint(path)
    assert "does not match the checksum" in one_line(excinfo, path)


def test_a_checkpoint_without_a_checksum_still_loads(tmp_path):
    path = tmp_path / "old.safetensors"
    save_checkpoint(path, model_state={"w": torch.arange(3.0)}, meta={"step": 2})
    rewrite(path, header={"sha256": None})  # as written before the checksum was added
    ckpt = load_checkpoint(path)
    assert ckpt.meta == {"step": 2} and torch.equal(ckpt.model_state["w"], torch.arange(3.0))


@dataclass
class Sizes:
    hidden: int = 3


@dataclass
class Config:
    model: Sizes = field(default_factory=Sizes)


def test_restore_model_rebuilds_config_vocab_and_weights_or_says_why_in_one_line(tmp_path):
    from rnnkit.train.restore import restore_model

    def build(cfg, vocab):
        return nn.Linear(len(vocab), cfg.model.hidden)

    trained = nn.Linear(4, 2)
    path = tmp_path / "best.safetensors"
    meta = {"config": {"model": {"hidden": 2}}, "vocab": {"symbols": "abcd"}}

    def read_vocab(saved):
        return list(saved["symbols"])

    save_checkpoint(path, model_state=trained.state_dict(), meta=meta)
    cfg, vocab, model = restore_model(load_checkpoint(path), path, Config, build, read_vocab)
    assert cfg.model.hidden == 2 and vocab == list("abcd") and not model.training
    assert torch.equal(model.weight, trained.weight)

    def refuse(cfg):
        raise UserError("option 'model.hidden' must be odd")

    cases = [
        ({**meta, "config": {"model": {"width": 2}}}, {}, "model.width"),  # an unknown key
        ({"config": meta["config"]}, {}, "lacks 'vocab'"),
        (meta, {"check": refuse}, "must be odd"),
        ({**meta, "config": {"model": {"hidden": 5}}}, {}, "5"),  # weights of another shape
    ]
    for saved, options, words in cases:
        save_checkpoint(path, model_state=trained.state_dict(), meta=saved)
        with pytest.raises(UserError) as excinfo:
            restore_model(load_checkpoint(path), path, Config, build, read_vocab, **options)
        assert words in one_line(excinfo, path)
