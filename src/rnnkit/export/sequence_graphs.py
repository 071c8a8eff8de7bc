"""The whole-sequence graphs: taggers, text classifiers and CTC models, each a ``forward``
with dynamic batch and length axes (its recurrent layers are ONNX ``Scan`` loops).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.export.graph import Graph, export_graph


class _TaggerForward(nn.Module):
    def __init__(self, model: nn.Module, inputs: list[str]) -> None:
        super().__init__()
        self.model, self.inputs = model, inputs

    def forward(self, *args: Tensor) -> Tensor:
        from rnnkit.tasks.tagger import TagBatch

        given = dict(zip(self.inputs, args, strict=True))
        words = given.get("words", given.get("word_index"))
        lengths = given["lengths"]
        batch = TagBatch(
            words,
            lengths,
            given.get("chars"),
            given.get("char_lengths"),
            given.get("word_index"),
            None,
            lengths,
        )
        ys, _ = self.model.rnn(self.model.word_vectors(batch), lengths=lengths)
        return self.model.head(ys)  # (T, B, K)


def tagger_graphs(model: nn.Module) -> dict[str, Graph]:
    """``forward``: words (T, B), lengths (B,)[, chars (L, U), char_lengths (U,), word_index
    (T, B)] -> emissions (T, B, K) (a CRF's Viterbi decoding runs outside the graph)."""
    T, B, L, U = 4, 2, 5, 3
    example = {
        "words": torch.ones(T, B, dtype=torch.long),
        "lengths": torch.tensor([T, T - 1]),
        "chars": torch.ones(L, U, dtype=torch.long),
        "char_lengths": torch.tensor([L, 2, 1]),
        "word_index": torch.arange(T * B).reshape(T, B) % U,
    }
    inputs = ["lengths"]
    if model.word_embedding is not None:
        inputs.insert(0, "words")
    if model.char_rnn is not None:
        inputs += ["chars", "char_lengths", "word_index"]
    axes = {
        "words": {0: "time", 1: "batch"},
        "lengths": {0: "batch"},
        "chars": {0: "chars", 1: "spellings"},
        "char_lengths": {0: "spellings"},
        "word_index": {0: "time", 1: "batch"},
        "emissions": {0: "time", 1: "batch"},
    }
    axes = {k: v for k, v in axes.items() if k in inputs or k == "emissions"}
    wrapper = _TaggerForward(model, inputs)
    args = tuple(example[n] for n in inputs)
    return {"forward": export_graph(wrapper, args, inputs, ["emissions"], axes, loops=True)}


# ---- text classifiers ------------------------------------------------------------------------
class _ClassifierForward(nn.Module):
    def __init__(self, model: nn.Module, inputs: list[str]) -> None:
        super().__init__()
        self.model, self.inputs = model, inputs

    def forward(self, *args: Tensor) -> tuple[Tensor, ...]:
        from types import SimpleNamespace

        given = dict(zip(self.inputs, args, strict=True))
        lengths = given["lengths"]
        like = given.get("words", given.get("chars"))
        T = like.shape[0]
        mask = torch.arange(T)[:, None] < lengths[None, :]  # (T, B)
        batch = SimpleNamespace(
            words=given.get("words"), chars=given.get("chars"), lengths=lengths, mask=mask
        )
        logits, alpha = self.model(batch)
        return (logits,) if alpha is None else (logits, alpha)


def classifier_graphs(model: nn.Module) -> dict[str, Graph]:
    """``forward``: words (T, B) and/or chars (T, B, C), lengths (B,) -> logits (B, K), and with
    attention pooling its weights ``attention`` (T, B). The n-gram half (``model.ngrams``) reads
    the text's n-grams, made outside any graph: a model that mixes it in is refused."""
    from rnnkit.export.scan import ExportError

    if model.cfg.ngrams > 0 and float(model.ngram_mix) > 0:
        raise ExportError(
            "cannot export a classifier with its n-gram half mixed in (model.ngrams): "
            "its features are counted from the text outside the network"
        )
    T, B, C = 4, 2, 3
    example = {
        "words": torch.ones(T, B, dtype=torch.long),
        "chars": torch.ones(T, B, C, dtype=torch.long),
        "lengths": torch.tensor([T, T - 1]),
    }
    inputs = (["words"] if model.embedding is not None else []) + (
        ["chars"] if model.char_rnn is not None else []
    )
    inputs.append("lengths")
    outputs = ["logits", *(["attention"] if model.cfg.pool == "attention" else [])]
    axes = {
        "words": {0: "time", 1: "batch"},
        "chars": {0: "time", 1: "batch", 2: "chars"},
        "lengths": {0: "batch"},
        "logits": {0: "batch"},
        "attention": {0: "time", 1: "batch"},
    }
    axes = {k: v for k, v in axes.items() if k in inputs + outputs}
    args = tuple(example[n] for n in inputs)
    wrapper = _ClassifierForward(model, inputs)
    return {"forward": export_graph(wrapper, args, inputs, outputs, axes, loops=True)}


# ---- CTC models ------------------------------------------------------------------------------
def _image_height(model: nn.Module) -> int:
    """The image height a line reader was built for: its features are channels x the height
    left after the front end's pools."""
    from rnnkit.tasks.ocr_model import POOLS

    convs = [m for m in model.front if isinstance(m, nn.Conv2d)]
    channels = convs[-1].out_channels if convs else 1
    height = model.features // channels
    for pool_height, _ in POOLS[: len(convs)]:
        height *= pool_height
    return height


def ctc_graphs(model: nn.Module) -> dict[str, Graph]:
    """``forward`` of a CTC model, log-probabilities (T', B, C) (blank 0) and the frames of
    each item ``lengths`` (B,): the OCR line reader from image (B, 1, height, W) float and
    widths (B,), the speech model from features (T, B, 40) and frames (B,)."""
    from rnnkit.tasks.ocr_model import LineReader

    outputs = ["log_probs", "lengths"]
    out_axes = {"log_probs": {0: "time", 1: "batch"}, "lengths": {0: "batch"}}
    if isinstance(model, LineReader):
        height = _image_height(model)
        image, widths = torch.rand(2, 1, height, 24), torch.tensor([24, 16])
        inputs = ["image", "widths"]
        axes = {"image": {0: "batch", 3: "width"}, "widths": {0: "batch"}, **out_axes}
        args = (image, widths)
    else:
        features, frames = torch.randn(9, 2, model.conv.in_channels), torch.tensor([9, 6])
        inputs = ["features", "frames"]
        axes = {"features": {0: "time", 1: "batch"}, "frames": {0: "batch"}, **out_axes}
        args = (features, frames)
    return {"forward": export_graph(model, args, inputs, outputs, axes, loops=True)}


# ---- the sequence tasks (fashion, digits, the long-range problems) -----------------------------
def sequence_model_graphs(model: nn.Module) -> dict[str, Graph]:
    """``forward``: x (T, B, I) floats, or (T, B) token ids -> outputs (B, O) for a many-to-one
    problem (the readout of the last step), else (T, B, O)."""
    T, B = 4, 2
    if model.embedding is not None:
        x = torch.zeros(T, B, dtype=torch.long)
    else:
        x = torch.zeros(T, B, model.rnn.input_size)
    axes = {"x": {0: "time", 1: "batch"}}
    axes["outputs"] = {0: "batch"} if model.many_to_one else {0: "time", 1: "batch"}
    return {"forward": export_graph(model, (x,), ["x"], ["outputs"], axes, loops=True)}
