"""ONNX export checked against onnxruntime: every kind of model and every built-in cell, on random
inputs, at a batch size and a length other than the export's (the graphs are traced at batch 2
and short lengths), equal to rnnkit's eval-mode output to 1e-4; the command on tiny trained runs;
one-line errors."""

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

ort = pytest.importorskip("onnxruntime", reason="the ONNX tests run the graphs in onnxruntime")
onnx = pytest.importorskip("onnx", reason="rnnkit export needs the onnx package")

from rnnkit.cells import REGISTRY, cell_names  # noqa: E402
from rnnkit.cli import main  # noqa: E402
from rnnkit.export import ExportError, export_graph, model_graphs  # noqa: E402
from rnnkit.layers import Recurrent, Stacked  # noqa: E402
from rnnkit.layers.torch_compat import BY_NAME  # noqa: E402
from rnnkit.seq2seq import Seq2Seq  # noqa: E402
from rnnkit.tasks.lm import LanguageModel, ModelConfig  # noqa: E402
from rnnkit.tasks.ocr_model import LineReader, OCRModelConfig  # noqa: E402
from rnnkit.tasks.seq2seq_config import Seq2SeqConfig  # noqa: E402
from rnnkit.tasks.speech_model import SpeechModel, SpeechModelConfig  # noqa: E402
from rnnkit.tasks.tagger import TagBatch, Tagger, TaggerConfig  # noqa: E402
from rnnkit.tasks.text_classify_model import TextClassifier, TextClassifierConfig  # noqa: E402

TOL = 1e-4


def session(graph):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(graph.proto.SerializeToString(), options)


def run(graph, **feed):
    got = session(graph).run(None, {k: v.numpy() for k, v in feed.items() if k in graph.inputs})
    return dict(zip(graph.outputs, got, strict=True))


def close(got: np.ndarray, want: torch.Tensor, mask: torch.Tensor | None = None) -> None:
    want = want.numpy()
    if mask is not None:  # outputs at padding are unspecified
        got, want = got * mask.numpy(), want * mask.numpy()
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)


def valid(lengths: torch.Tensor, T: int) -> torch.Tensor:
    return (torch.arange(T)[:, None] < lengths[None, :]).unsqueeze(-1)  # (T, B, 1)


# ---- language models: the sampling step ------------------------------------------------------
LM_VARIANTS = [*cell_names(output_projection=False), "lstm+peephole", "lstm+layer_norm"]


@pytest.mark.parametrize("variant", LM_VARIANTS)
def test_language_model_step_equals_rnnkit_over_several_steps(variant):
    cell, _, option = variant.partition("+")
    cfg = ModelConfig(cell=cell, embedding_size=6, hidden_size=5, num_layers=2)
    if option:
        setattr(cfg, option, True)
    model = LanguageModel(11, cfg).eval()
    kind, graphs = model_graphs(model)
    assert kind == "language model" and list(graphs) == ["step"]
    graph = graphs["step"]
    names = graph.inputs[1:]
    assert names == ["h", "c"][: len(REGISTRY[cell].cls(1, 1).state_sizes)]
    B = 3  # the export's example has 2
    state = tuple(torch.randn(2, B, 5) for _ in names)
    sess = session(graph)
    for _ in range(3):  # the state carried from step to step, by each side
        ids = torch.randint(0, 11, (B,))
        with torch.no_grad():
            logits, new = model.step(ids, state if len(state) > 1 else state[0])
        new = new if isinstance(new, tuple) else (new,)
        feed = {"ids": ids.numpy(), **{n: s.numpy() for n, s in zip(names, state, strict=True)}}
        got = sess.run(None, feed)
        close(got[0], logits)
        for g, want in zip(got[1:], new, strict=True):
            close(g, want)
        state = tuple(torch.from_numpy(g) for g in got[1:])


# ---- whole sequences: every cell, stacked and bidirectional, through Scan ---------------------
class Layer(nn.Module):
    def __init__(self, variant: str) -> None:
        super().__init__()
        cell, _, option = variant.partition("+")
        options = {option: True} if option else {}
        # one bidirectional layer; stacked layers: the speech model's test
        self.rnn = BY_NAME[cell](3, 4, 1, bidirectional=True, **options)

    def forward(self, xs, lengths):
        ys, state = self.rnn(xs, lengths=lengths)
        return ys, state[0] if isinstance(state, tuple) else state


@pytest.mark.parametrize("variant", [*cell_names(), "lstm+peephole", "lstm+layer_norm"])
def test_every_cell_runs_as_a_loop_at_any_length_and_batch(variant):
    model = Layer(variant).eval()
    axes = {"xs": {0: "time", 1: "batch"}, "lengths": {0: "batch"}, "ys": {0: "time", 1: "batch"}}
    axes["h_n"] = {1: "batch"}
    example = (torch.randn(5, 2, 3), torch.tensor([5, 3]))
    graph = export_graph(model, example, ["xs", "lengths"], ["ys", "h_n"], axes, loops=True)
    assert "Scan" in {n.op_type for n in graph.proto.graph.node}
    for T, B in [(9, 3), (1, 1)]:
        xs, lengths = torch.randn(T, B, 3), torch.randint(1, T + 1, (B,))
        with torch.no_grad():
            ys, h_n = model(xs, lengths)
        got = run(graph, xs=xs, lengths=lengths)
        close(got["ys"], ys, valid(lengths, T))
        close(got["h_n"], h_n)


# ---- taggers, classifiers, CTC models ----------------------------------------------------------
@pytest.mark.parametrize(("cell", "chars"), [("lstm", True), ("gru", False)])
def test_tagger_emissions(cell, chars):
    cfg = TaggerConfig(
        cell=cell,
        word_embedding_size=6,
        char_embedding_size=4 if chars else 0,
        char_hidden_size=3,
        hidden_size=5,
        dropout=0.0,
    )
    model = Tagger(20, 10, 7, cfg).eval()
    graph = model_graphs(model)[1]["forward"]
    T, B, L, U = 7, 3, 6, 4
    lengths, char_lengths = torch.tensor([7, 2, 5]), torch.tensor([6, 1, 3, 2])
    words, chars = torch.randint(0, 20, (T, B)), torch.randint(1, 10, (L, U))
    word_index = torch.randint(0, U, (T, B))
    with torch.no_grad():
        want = model(TagBatch(words, lengths, chars, char_lengths, word_index, None, lengths))
    got = run(
        graph,
        words=words,
        lengths=lengths,
        chars=chars,
        char_lengths=char_lengths,
        word_index=word_index,
    )
    close(got["emissions"], want, valid(lengths, T))


@pytest.mark.parametrize(("level", "pool"), [("both", "attention"), ("word", "max")])
def test_classifier_logits_and_attention(level, pool):
    cfg = TextClassifierConfig(
        level=level,
        cell="gru",
        embedding_size=5,
        char_embedding_size=3,
        char_hidden_size=2,
        hidden_size=4,
        pool=pool,
        attention_size=3,
        dropout=0.0,
    )
    model = TextClassifier(20, 10, 3, cfg).eval()
    graph = model_graphs(model)[1]["forward"]
    T, B, C = 6, 3, 4
    lengths = torch.tensor([6, 2, 4])
    mask = torch.arange(T)[:, None] < lengths
    words = torch.randint(1, 20, (T, B)) * mask
    chars = torch.randint(1, 10, (T, B, C)) * mask[..., None]
    batch = SimpleNamespace(words=words, chars=chars, lengths=lengths, mask=mask)
    with torch.no_grad():
        logits, alpha = model(batch)
    got = run(graph, words=words, chars=chars, lengths=lengths)
    close(got["logits"], logits)
    if pool == "attention":
        close(got["attention"], alpha)


def test_classifier_with_its_ngram_half_is_refused():
    cfg = TextClassifierConfig(cell="gru", embedding_size=4, hidden_size=3, ngrams=2)
    model = TextClassifier(20, 10, 3, cfg, num_ngrams=5).eval()
    model.ngram_mix.fill_(0.5)
    with pytest.raises(ExportError, match="n-gram half"):
        model_graphs(model)


def test_location_attention_is_refused_in_one_line():
    cfg = Seq2SeqConfig(embedding_size=6, hidden_size=8, attention="location")
    with pytest.raises(ExportError, match="location-aware attention"):
        model_graphs(Seq2Seq(13, 9, cfg).eval())


@pytest.mark.parametrize(("conv", "cell"), [(2, "jordan"), (0, "lstm")])
def test_ocr_line_reader(conv, cell):
    cfg = OCRModelConfig(conv=conv, channels=2, cell=cell, hidden_size=3, num_layers=1)
    model = LineReader(7, cfg).eval()
    kind, graphs = model_graphs(model)
    assert kind == "ctc"
    image, widths = torch.rand(3, 1, 32, 40), torch.tensor([40, 20, 33])  # the export's: 24
    with torch.no_grad():
        log_probs, lengths = model(image, widths)
    got = run(graphs["forward"], image=image, widths=widths)
    np.testing.assert_array_equal(got["lengths"], lengths.numpy())
    close(got["log_probs"], log_probs, valid(lengths, len(log_probs)))


def test_speech_model():
    cfg = SpeechModelConfig(cell="mingru", hidden_size=3, num_layers=2, conv_channels=4)
    model = SpeechModel(cfg).eval()
    features, frames = torch.randn(15, 3, 40), torch.tensor([15, 7, 10])
    with torch.no_grad():
        log_probs, lengths = model(features, frames)
    got = run(model_graphs(model)[1]["forward"], features=features, frames=frames)
    np.testing.assert_array_equal(got["lengths"], lengths.numpy())
    close(got["log_probs"], log_probs, valid(lengths, len(log_probs)))


@pytest.mark.parametrize(
    ("cell", "tokens", "many_to_one"), [("jordan", False, True), ("gru", True, False)]
)
def test_sequence_model(cell, tokens, many_to_one):
    from rnnkit.tasks.sequence_task import Problem, SeqModelConfig, SequenceModel

    problem = Problem(None, "ce", many_to_one, 6, 4, ("chance", 0.25), "accuracy", tokens=tokens)
    model = SequenceModel(problem, SeqModelConfig(cell=cell, hidden_size=5, embedding_size=3))
    model.eval()
    T, B = 9, 3  # the export's: 4, 2
    x = torch.randint(0, 6, (T, B)) if tokens else torch.randn(T, B, 6)
    with torch.no_grad():
        want = model(x)
    close(run(model_graphs(model)[1]["forward"], x=x)["outputs"], want)


# ---- sequence to sequence: encoder + decoder step ----------------------------------------------
@pytest.mark.parametrize(
    ("cell", "attention", "context"),
    [
        ("gru", "bahdanau", "init"),
        ("lstm", "luong-general", "init"),
        ("elman", "luong-dot", "none"),
        ("lstm", "none", "both"),
        ("mingru", "none", "input"),
    ],
)
def test_seq2seq_encoder_and_decoder_steps(cell, attention, context):
    cfg = Seq2SeqConfig(
        cell=cell, embedding_size=6, hidden_size=8, attention=attention, context=context
    )
    model = Seq2Seq(13, 9, cfg).eval()
    kind, graphs = model_graphs(model)
    assert kind == "seq2seq" and list(graphs) == ["encoder", "decoder_step"]
    encoder, decoder = graphs["encoder"], graphs["decoder_step"]
    assert ("attention" in decoder.outputs) == (attention != "none")
    S, B = 7, 3  # the export's: 5, 2
    src, lengths = torch.randint(4, 13, (S, B)), torch.tensor([7, 2, 4])
    with torch.no_grad():
        state = model.encode(src, lengths)
    flat = session(encoder).run(None, {"src": src.numpy(), "lengths": lengths.numpy()})
    sess = session(decoder)
    for _ in range(3):
        y_prev = torch.randint(0, 9, (B,))
        with torch.no_grad():
            logits, state, alpha = model.decoder.step(y_prev, state)
        got = sess.run(
            None, {"y_prev": y_prev.numpy(), **dict(zip(decoder.inputs[1:], flat, strict=True))}
        )
        out = dict(zip(decoder.outputs, got, strict=True))
        close(out["logits"], logits)
        if alpha is not None:
            close(out["attention"], alpha)
        changed = {n.removesuffix("_out"): out[n] for n in decoder.outputs if n.endswith("_out")}
        flat = [changed.get(n, v) for n, v in zip(decoder.inputs[1:], flat, strict=True)]


@pytest.mark.parametrize(("cell", "attention"), [("gru", "bahdanau"), ("lstm", "none")])
def test_caption_model_encoder_and_decoder_step(cell, attention):
    from rnnkit.tasks.caption_model import CaptionModel, CaptionModelConfig

    cfg = CaptionModelConfig(
        channels=1, cell=cell, embedding_size=4, hidden_size=6, attention=attention
    )
    cfg.context = "init"
    model = CaptionModel(9, cfg).eval()
    graphs = model_graphs(model)[1]
    encoder, decoder = graphs["encoder"], graphs["decoder_step"]
    assert encoder.inputs == ["images"]
    images = torch.rand(3, 1, 84, 84)
    with torch.no_grad():
        state = model.encode(images)
    flat = session(encoder).run(None, {"images": images.numpy()})
    y_prev = torch.randint(0, 9, (3,))
    with torch.no_grad():
        logits, _, alpha = model.decoder.step(y_prev, state)
    feed = {"y_prev": y_prev.numpy(), **dict(zip(decoder.inputs[1:], flat, strict=True))}
    out = dict(zip(decoder.outputs, session(decoder).run(None, feed), strict=True))
    close(out["logits"], logits)
    if alpha is not None:
        close(out["attention"], alpha)


# ---- a cell ONNX cannot express ---------------------------------------------------------------
class MatrixExpCell(nn.Module):
    """A user's cell: h' = exp(reshape(W x)) h, a matrix exponential (no ONNX operator)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.output_size, self.state_sizes = hidden_size, (hidden_size,)
        self.proj = nn.Linear(input_size, hidden_size * hidden_size)

    def init_state(self, batch_size, *, device=None, dtype=None):
        return torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)

    def forward(self, x, h):
        H = self.hidden_size
        a = torch.linalg.matrix_exp(self.proj(x).view(-1, H, H) * 0.1)
        h = (a @ (h + 1).unsqueeze(-1)).squeeze(-1)
        return h, h


def test_a_cell_onnx_cannot_express_fails_in_one_line_naming_it():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = Stacked([Recurrent(MatrixExpCell(3, 2))])

        def forward(self, xs):
            return self.rnn(xs)[0]

    with pytest.raises(ExportError) as error:
        export_graph(Model(), (torch.randn(4, 2, 3),), ["xs"], ["ys"], {}, loops=True)
    message = str(error.value)
    assert "\n" not in message and "MatrixExpCell" in message and "matrix_exp" in message


def test_a_cell_without_the_cell_sizes_is_named():
    class Bare(nn.Module):
        def forward(self, x, h):
            return x, h

    model = Stacked([Recurrent(Bare())])
    with pytest.raises(ExportError, match="cell Bare: it has no input_size, output_size"):
        export_graph(model, (torch.randn(4, 2, 3),), ["xs"], ["ys"], {}, loops=True)


# ---- the command -----------------------------------------------------------------------------
def train_charlm(root, max_steps: int):
    corpus, out = root / "corpus.txt", root / "charlm"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 60)
    args = ["train", "charlm", "--preset", "tiny", "--out", str(out), "--train.progress", "false"]
    args += ["--data", str(corpus), "--model.cell", "lstm", "--model.num_layers", "2"]
    args += ["--train.max_steps", str(max_steps)]
    assert main(args) in (0, None)
    return out


@pytest.fixture(scope="module")
def charlm_run(tmp_path_factory):
    """A tiny charlm run as ``rnnkit train`` leaves it, its weights those of step 0 (training
    a few steps takes ~25 s on the test machine: that is ``test_..._trained_run``)."""
    from rnnkit.config import config_to_dict
    from rnnkit.tasks.base import get_task
    from rnnkit.train.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("runs")
    corpus, out = root / "corpus.txt", root / "charlm"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 60)
    spec = get_task("charlm")
    cfg = spec.presets["tiny"]()
    cfg.data.path, cfg.model.cell, cfg.model.num_layers = str(corpus), "lstm", 2
    task = spec.build(cfg, root / "cache")
    meta = {
        "task": "charlm",
        "level": task.level,
        "config": config_to_dict(cfg),
        "vocab": task.vocab.to_dict(),
    }
    save_checkpoint(out / "best.safetensors", model_state=task.model.state_dict(), meta=meta)
    return out


def check_exported_language_model(run_dir, out, capsys):
    from rnnkit.tasks.runs import load_run

    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    proto = onnx.load(str(out))
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert meta["rnnkit.task"] == "charlm" and meta["rnnkit.kind"] == "language model"
    assert meta["rnnkit.inputs"] == ["ids", "h", "c"]
    loaded = load_run(run_dir)
    assert meta["rnnkit.vocab"] == loaded.meta["vocab"]
    beside = json.loads(out.with_suffix(".json").read_text())
    assert beside["graphs"]["step"]["file"] == out.name
    assert beside["config"] == loaded.meta["config"]
    # sampling from the file alone: the state fed back, equal to rnnkit's steps
    sess = ort.InferenceSession(str(out))
    B, L, H = 1, 2, loaded.model.rnn.hidden_size
    h = c = np.zeros((L, B, H), np.float32)
    state = None
    for i in loaded.start_ids() + [1, 2, 3]:
        ids = torch.tensor([i])
        logits, h, c = sess.run(None, {"ids": ids.numpy(), "h": h, "c": c})
        with torch.no_grad():
            want, state = loaded.model.step(ids, state)
        close(logits, want)


def test_the_command_exports_a_language_model_run(charlm_run, tmp_path, capsys):
    check_exported_language_model(charlm_run, tmp_path / "model.onnx", capsys)


def test_the_docs_example_samples_from_the_files(charlm_run, tmp_path, capsys, monkeypatch):
    # docs/export.md's onnxruntime example, on the files `rnnkit export` writes
    from rnnkit.tasks.runs import load_run

    page = (Path(__file__).parents[2] / "docs" / "export.md").read_text()
    (code,) = [c for c in re.findall(r"```python\n(.*?)```", page, re.S) if "charlm.onnx" in c]
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(charlm_run), "--format", "onnx", "--out", "charlm.onnx"]) == 0
    capsys.readouterr()
    exec(code, {"__name__": "docs"})
    text = capsys.readouterr().out
    loaded = load_run(charlm_run)
    assert len(text) > 200 and set(text.rstrip("\n")) <= set(loaded.vocab.tokens)


@pytest.mark.slow
def test_the_command_exports_a_trained_run(tmp_path, capsys):
    run_dir = train_charlm(tmp_path, max_steps=5)
    capsys.readouterr()
    check_exported_language_model(run_dir, tmp_path / "lm.onnx", capsys)


def test_a_seq2seq_run_exports_to_an_encoder_and_a_decoder_step(tmp_path, capsys):
    """A dates checkpoint as ``rnnkit train dates`` writes it (weights of step 0)."""
    from rnnkit.config import config_to_dict
    from rnnkit.tasks.base import get_task
    from rnnkit.train.checkpoint import save_checkpoint

    cfg = get_task("dates").presets["tiny"]()
    specials = ["<pad>", "<unk>", "<bos>", "<eos>"]
    vocab = {
        "source": {"tokens": [*specials, *"abcdefg 12"], "split": "char"},
        "target": {"tokens": [*specials, *"0123456789-"], "split": "char"},
    }
    model = Seq2Seq(14, 15, cfg.model)
    meta = {"task": "dates", "config": config_to_dict(cfg), "vocab": vocab}
    run_dir = tmp_path / "run"
    save_checkpoint(run_dir / "best.safetensors", model_state=model.state_dict(), meta=meta)
    out = tmp_path / "dates.onnx"
    assert main(["export", str(run_dir), "--out", str(out)]) == 0
    written = capsys.readouterr().out.split()
    names = ["dates.encoder.onnx", "dates.decoder_step.onnx", "dates.json"]
    assert [str(tmp_path / n) for n in names] == [w for w in written if w != "wrote"]
    beside = json.loads((tmp_path / "dates.json").read_text())
    assert beside["kind"] == "seq2seq" and beside["vocab"] == meta["vocab"]
    assert beside["graphs"]["decoder_step"]["outputs"][-1] == "attention"
    for name in names[:2]:
        props = {p.key for p in onnx.load(str(tmp_path / name)).metadata_props}
        assert {"rnnkit.config", "rnnkit.vocab", "rnnkit.graph"} <= props


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "tflite"], "--format must be one of onnx, got 'tflite'"),
        (["--out", "{tmp}/no/such/dir/m.onnx"], "does not exist"),
        (["--out", "{tmp}"], "is a directory"),
    ],
)
def test_bad_arguments_fail_in_one_line(charlm_run, tmp_path, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "m.onnx")]
    assert main(["export", str(charlm_run), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_a_missing_run_fails_in_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nothing"), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not exist" in err
