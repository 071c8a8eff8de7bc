"""The graphs that step: a language model's sampling step, a sequence-to-sequence model's
encoder and decoder step.

- a language model, ``step``: ids (B,), h (L, B, H)[, c (L, B, H)] -> logits (B, V),
  h_out[, c_out]; a runtime samples by feeding each chosen token and the state back;
- a sequence-to-sequence model, ``encoder``: src (S, B), lengths (B,) -> the tensors of the
  decoder's first state (``rnnkit.seq2seq.DecoderState``, flattened, named below), and
  ``decoder_step``: y_prev (B,) and those tensors -> logits (B, V), the tensors a step changes
  (``*_out``: the cells' states and Luong's fed-back h̃) and, with attention, its weights
  ``attention`` (B, S).

Every graph has a dynamic batch axis; the encoder's source axis is dynamic (its recurrent
layers are ``Scan`` loops).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.export.graph import Graph, export_graph, state_names
from rnnkit.export.scan import ExportError


class _LMStep(nn.Module):
    def __init__(self, model: nn.Module, n_state: int) -> None:
        super().__init__()
        self.model, self.n_state = model, n_state

    def forward(self, ids: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        logits, new = self.model.step(ids, state if self.n_state > 1 else state[0])
        return (logits, *(new if isinstance(new, tuple) else (new,)))


def language_model_graphs(model: nn.Module) -> dict[str, Graph]:
    """``step``: ids (B,), h (L, B, H)[, c] -> logits (B, V), h_out[, c_out]."""
    rnn = model.rnn
    names = state_names(len(rnn.state_sizes))
    B, L = 2, rnn.num_layers
    state = tuple(torch.zeros(L, B, n) for n in rnn.state_sizes)
    ids = torch.zeros(B, dtype=torch.long)
    outputs = ["logits", *(f"{n}_out" for n in names)]
    axes = {"ids": {0: "batch"}, "logits": {0: "batch"}}
    axes.update({n: {1: "batch"} for n in names + outputs[1:]})
    step = _LMStep(model, len(names))
    return {"step": export_graph(step, (ids, *state), ["ids", *names], outputs, axes, loops=False)}


# ---- sequence to sequence --------------------------------------------------------------------
def _decoder_state_names(model: nn.Module) -> list[str]:
    """The names of the tensors of a ``DecoderState``, in its order, those the model has."""
    dec = model.decoder
    n = len(dec.cells[0].state_sizes)
    names = [f"layer{l}.{k}" for l in range(len(dec.cells)) for k in state_names(n)]
    if dec.attention is not None:
        names += ["feed"] if dec.input_feeding else []
        names += ["memory", "keys", "mask"]
    elif dec.fixed_context:
        names += ["fixed"]
    return names


def _flatten(state, n: int) -> list[Tensor]:
    flat = [t for layer in state.layers for t in (layer if n > 1 else (layer,))]
    return flat + [t for t in state[1:] if t is not None]


def _zeros(like: Tensor, width: int) -> Tensor:
    """Zeros (B, width) whose B follows ``like`` (B, ·) in the traced graph."""
    return like[:, :1].mul(0).expand(-1, width)


class _Encoder(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        dec = self.model.decoder
        if hasattr(self.model, "encoder"):  # a Seq2Seq: src, lengths
            memory, summary = self.model.encoder(*inputs)
            state, like = dec.init_state(memory, inputs[1], summary), summary
        else:  # a CaptionModel: images
            state, like = self.model.encode(*inputs), inputs[0].flatten(1)
        if dec.bridge is None:  # zeros whose batch size is the input's, not the example's
            zeros = [tuple(_zeros(like, n) for n in c.state_sizes) for c in dec.cells]
            state = state._replace(layers=tuple(z if len(z) > 1 else z[0] for z in zeros))
        if state.feed is not None:
            state = state._replace(feed=_zeros(like, dec.hidden_size))
        return tuple(_flatten(state, len(dec.cells[0].state_sizes)))


class _DecoderStep(nn.Module):
    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, y_prev: Tensor, *flat: Tensor) -> tuple[Tensor, ...]:
        from rnnkit.seq2seq import DecoderState

        dec = self.model.decoder
        n = len(dec.cells[0].state_sizes)
        given = dict(zip(self.names, flat, strict=True))
        layers = tuple(
            tuple(given[f"layer{l}.{k}"] for k in state_names(n)) if n > 1 else given[f"layer{l}.h"]
            for l in range(len(dec.cells))
        )
        parts = [given.get(k) for k in ("feed", "memory", "keys", "mask", "fixed")]
        logits, new, alpha = dec.step(y_prev, DecoderState(layers, *parts))
        carried = [t for t in _flatten(new, n)[: self.n_carried()]]
        return (logits, *carried, *([] if alpha is None else [alpha]))

    def n_carried(self) -> int:
        """The state tensors a step changes: the cells' states and the fed-back h̃."""
        return sum(1 for k in self.names if k.startswith("layer") or k == "feed")


def seq2seq_graphs(model: nn.Module) -> dict[str, Graph]:
    """``encoder``: src (S, B), lengths (B,) (a caption model: images (B, 1, 84, 84)) -> the
    decoder's state tensors; ``decoder_step``: y_prev (B,) and those tensors -> logits (B, V),
    the changed state tensors (``*_out``) and, with attention, the attention weights
    ``attention`` (B, S) (S: the source length, or the caption model's 49 grid cells)."""
    S, B = 5, 2
    attention = model.decoder.attention
    if attention is not None and attention.uses_previous:
        raise ExportError(
            "rnnkit export: location-aware attention (--model.attention location) is not "
            "exported yet: its step carries the previous weights, which the graphs do not"
        )
    names = _decoder_state_names(model)
    batch_axis = {n: {0: "batch"} for n in names}
    for n in ("memory", "keys", "mask"):
        if n in batch_axis:
            batch_axis[n] = {0: "batch", 1: "source"}
    if hasattr(model, "encoder"):
        inputs = ["src", "lengths"]
        args = (torch.ones(S, B, dtype=torch.long), torch.tensor([S, S - 2]))
        axes = {"src": {0: "source", 1: "batch"}, "lengths": {0: "batch"}, **batch_axis}
    else:
        from rnnkit.tasks.caption_data import CANVAS

        inputs, args = ["images"], (torch.rand(B, 1, CANVAS, CANVAS),)
        axes = {"images": {0: "batch"}, **batch_axis}
    encoder = export_graph(_Encoder(model), args, inputs, names, axes, loops=True)
    with torch.no_grad():
        flat = _Encoder(model).eval()(*args)
    step = _DecoderStep(model, names)
    carried = [f"{n}_out" for n in names[: step.n_carried()]]
    outputs = ["logits", *carried]
    out_axes = {"y_prev": {0: "batch"}, "logits": {0: "batch"}, **batch_axis}
    out_axes.update({n: {0: "batch"} for n in carried})
    if model.decoder.attention is not None:
        outputs.append("attention")
        out_axes["attention"] = {0: "batch", 1: "source"}
    y_prev = torch.ones(B, dtype=torch.long)
    decoder = export_graph(
        step, (y_prev, *flat), ["y_prev", *names], outputs, out_axes, loops=False
    )
    return {"encoder": encoder, "decoder_step": decoder}
