"""``rnnkit export RUN --format onnx --out model.onnx``: a trained run's inference graph.

A run is loaded by its task (``rnnkit.tasks.runs.load_run``) and its model exported by its kind
(``KINDS``): one graph ``OUT`` for a language model's step, a tagger, a text classifier or a CTC
model; two, ``OUT``'s stem + ``.encoder.onnx`` and ``.decoder_step.onnx``, for a
sequence-to-sequence model. Every graph carries the run's task, kind, configuration and
vocabulary in its metadata (``metadata_props``: ``rnnkit.task``, ``rnnkit.kind``,
``rnnkit.config``, ``rnnkit.vocab``, ``rnnkit.inputs``, ``rnnkit.outputs``, as JSON strings),
and the same goes into ``OUT``'s stem + ``.json`` beside them, with the names of the graphs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import onnx
from torch import nn

from rnnkit.errors import UserError
from rnnkit.export.graph import Graph
from rnnkit.export.scan import ExportError

FORMATS = ("onnx",)


def kinds() -> list[tuple[str, type, Callable[[nn.Module], dict[str, Graph]]]]:
    """(kind, model class, its graphs): every kind of model that exports."""
    from rnnkit.export.sequence_graphs import (
        classifier_graphs,
        ctc_graphs,
        sequence_model_graphs,
        tagger_graphs,
    )
    from rnnkit.export.step_graphs import language_model_graphs, seq2seq_graphs
    from rnnkit.seq2seq import Seq2Seq
    from rnnkit.tasks.caption_model import CaptionModel
    from rnnkit.tasks.lm import LanguageModel
    from rnnkit.tasks.ocr_model import LineReader
    from rnnkit.tasks.sequence_task import SequenceModel
    from rnnkit.tasks.speech_model import SpeechModel
    from rnnkit.tasks.tagger import Tagger
    from rnnkit.tasks.text_classify_model import TextClassifier

    return [
        ("language model", LanguageModel, language_model_graphs),
        ("tagger", Tagger, tagger_graphs),
        ("classifier", TextClassifier, classifier_graphs),
        ("ctc", LineReader, ctc_graphs),
        ("ctc", SpeechModel, ctc_graphs),
        ("sequence model", SequenceModel, sequence_model_graphs),
        ("seq2seq", Seq2Seq, seq2seq_graphs),
        ("seq2seq", CaptionModel, seq2seq_graphs),
    ]


def model_graphs(model: nn.Module) -> tuple[str, dict[str, Graph]]:
    """The kind of ``model`` and its graphs (``rnnkit.export.graph.Graph``), by name."""
    for kind, cls, build in kinds():
        if type(model) is cls:
            return kind, build(model)
    names = sorted({cls.__name__ for _, cls, _ in kinds()})
    raise ExportError(
        f"cannot export a {type(model).__name__} model to ONNX: exports {', '.join(names)}"
    )


def graph_paths(out: Path, names: list[str]) -> dict[str, Path]:
    """Where each graph goes: ``out`` itself for one graph, else ``out``'s stem + the name."""
    if len(names) == 1:
        return {names[0]: out}
    return {n: out.with_name(f"{out.stem}.{n}{out.suffix or '.onnx'}") for n in names}


def export_run(run: Path, out: Path, fmt: str = "onnx") -> list[Path]:
    """Export RUN's model (best checkpoint, else the last) to ``out``; returns the files written.

    Raises UserError (one line) for an unknown format, a run that cannot be loaded, a model
    that cannot be exported, or an ``out`` that cannot be written.
    """
    from rnnkit.tasks.runs import load_run

    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; give a file name such as model.onnx")
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: the directory {out.parent} does not exist")
    if not Path(run).exists():
        raise UserError(f"run {run} does not exist (a run directory or a .safetensors file)")
    loaded = load_run(Path(run), loader=None)
    kind, graphs = model_graphs(loaded.model)
    meta = loaded.meta
    info = {
        "task": meta.get("task"),
        "kind": kind,
        "config": meta.get("config"),
        "vocab": meta.get("vocab"),
    }
    paths = graph_paths(out, list(graphs))
    for name, graph in graphs.items():
        props = {**info, "graph": name, "inputs": graph.inputs, "outputs": graph.outputs}
        for key, value in props.items():
            entry = graph.proto.metadata_props.add()
            entry.key, entry.value = f"rnnkit.{key}", json.dumps(value)
    beside = out.with_suffix(".json")
    written = [*paths.values(), beside]
    try:
        for name, graph in graphs.items():
            onnx.save(graph.proto, str(paths[name]))
        graph_files = {
            name: {
                "file": paths[name].name,
                "inputs": graph.inputs,
                "outputs": graph.outputs,
                "dynamic_axes": graph.axes,
            }
            for name, graph in graphs.items()
        }
        beside.write_text(json.dumps({**info, "graphs": graph_files}, indent=1) + "\n")
    except OSError as e:
        raise UserError(f"--out {out}: cannot write: {e.strerror or e}") from None
    return written


def cmd_export(argv: list[str]) -> int:
    """``rnnkit export RUN --format onnx --out PATH``."""
    import argparse

    p = argparse.ArgumentParser(
        prog="rnnkit export",
        description="a trained run's inference graph as ONNX (see docs/export.md)",
    )
    p.add_argument("run", help="a run directory or a .safetensors checkpoint")
    p.add_argument("--format", default="onnx", help="the format: onnx (the only one)")
    p.add_argument("--out", required=True, help="the file to write, e.g. model.onnx")
    a = p.parse_args(argv)
    for path in export_run(Path(a.run), Path(a.out), a.format):
        print(f"wrote {path}")
    return 0
