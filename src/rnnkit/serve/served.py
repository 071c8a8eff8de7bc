"""The models a server holds: each run loaded once by its task's ``TaskSpec.load``, in eval mode,
and the operations on it (sample, score, predict, activations), written over the functions the
commands use (``rnnkit sample``, ``score``, ``predict``, ``lab activations``; pictures and sounds
in ``media``); no HTTP here.

State: the parameters are only read (eval mode, ``torch.inference_mode``); every recurrent state
is made inside the call that uses it, and every sampling call draws from a ``torch.Generator`` of
its own, seeded from the request; a picture or sound is written to a temporary folder of its
own request. So concurrent calls on one model share nothing mutable and need
no lock. (The library's predict functions set ``model.eval()`` or restore ``model.train(False)``
on a model that is already in eval mode: no change.)"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rnnkit.errors import UserError

KINDS = {
    "language model": ("sample", "score"),
    "seq2seq": ("predict",),
    "tagger": ("predict",),
    "classifier": ("predict",),
    "line reader": ("predict",),  # ocr: a picture of a text line
    "speech": ("predict",),  # spoken digits
    "captioner": ("predict",),  # caption: a scene picture
    "other": (),
}


HINTS = {
    "sample": "sample and score are for language models (charlm, wordlm)",
    "score": "sample and score are for language models (charlm, wordlm)",
    "predict": "predict serves seq2seq, tagger, classifier, ocr, speech and caption runs",
    "activations": "activations is for character-level language models (charlm)",
}


class Unsupported(Exception):
    """The model's task has no such operation (HTTP 400); the message names the task."""


def kind_of(loaded) -> str:
    from rnnkit.serve.media import kind_of_media
    from rnnkit.tasks.runs import LoadedRun
    from rnnkit.tasks.seq2seq_commands import LoadedSeq2Seq
    from rnnkit.tasks.tagger_commands import LoadedTagger
    from rnnkit.tasks.text_classify import LoadedClassifier

    for cls, kind in [
        (LoadedRun, "language model"),
        (LoadedSeq2Seq, "seq2seq"),
        (LoadedTagger, "tagger"),
        (LoadedClassifier, "classifier"),
    ]:
        if isinstance(loaded, cls):
            return kind
    return kind_of_media(loaded) or "other"


def run_metrics(run: Path) -> dict:
    """The last validation record of the run's log.jsonl (without ``split``), else {}."""
    log = run / "log.jsonl" if run.is_dir() else run.parent / "log.jsonl"
    if not log.is_file():
        return {}
    last: dict = {}
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("split") == "val":
            last = {k: v for k, v in record.items() if k != "split"}
    return last


@dataclass
class ServedModel:
    name: str
    task: str
    kind: str
    path: Path
    loaded: object
    metrics: dict = field(default_factory=dict)

    @property
    def operations(self) -> tuple[str, ...]:
        char_lm = self.kind == "language model" and getattr(self.loaded, "level", "") == "char"
        return KINDS[self.kind] + (("activations",) if char_lm else ())

    @property
    def config(self) -> dict:
        return self.loaded.meta.get("config", {})

    def need(self, operation: str) -> None:
        """Raise ``Unsupported`` naming the task unless the model has ``operation``."""
        if operation in self.operations:
            return
        hint = HINTS[operation]
        if operation == "predict" and self.kind == "language model":
            hint += "; for the likeliest continuation use sample with greedy true"
        elif operation == "predict" and self.kind == "other":
            hint += f"; for {self.task} use rnnkit predict"
        raise Unsupported(f"model {self.name!r} is a {self.task!r} run: no {operation}; {hint}")

    # ---- language models ---------------------------------------------------------------------
    def sample(self, prime: str, length: int, seed: int | None, **choose) -> tuple[str, int]:
        """(the text, the seed used); without a seed one is drawn (never torch's global RNG).
        The text is ``sample_stream``'s pieces joined: one code path, the same draws."""
        pieces, seed = self.sample_stream(prime, length, seed, **choose)
        return "".join(pieces), seed

    def sample_stream(
        self, prime: str, length: int, seed: int | None, **choose
    ) -> tuple[Iterator[str], int]:
        """(the text as it is drawn: the prime, then each token's text; the seed used). Bad
        input raises here, before the first piece. The iterator holds the request's recurrent
        state and generator; each ``next`` runs in inference mode on its own (the mode is per
        thread, and a server may call ``next`` from a different thread each time)."""
        from rnnkit.tasks.lm_commands import generate_pieces

        self.need("sample")
        seed = secrets.randbits(63) if seed is None else seed
        with torch.inference_mode():
            pieces = generate_pieces(self.loaded, prime, length, seed=seed, **choose)
        return _each_in_inference_mode(pieces), seed

    def score(self, text: str) -> dict:
        from rnnkit.tasks.lm_commands import score_text

        self.need("score")
        with torch.inference_mode():
            total, n = score_text(self.loaded, text)
        if n == 0:
            raise UserError(f"nothing to score in {text!r}: give a non-empty text")
        return {
            "text": text,
            "log_prob": total,
            "tokens": n,
            "bits_per_token": -total / math.log(2) / n,
            "perplexity": math.exp(-total / n),
        }

    def activations(self, text: str, state: str, top: int) -> dict:
        """The hidden units (``state`` h, or c for an LSTM) most correlated with the character
        features of ``rnnkit lab activations`` (one unit per feature the text shows), ranked by
        |r|, the ``top`` first, each with its activation after every character of ``text``."""
        from rnnkit.lab.activations import character_classes, hidden_states, pick_units

        self.need("activations")
        try:
            self.loaded.vocab.encode(text)
        except UserError as e:
            raise UserError(f"text: {e}") from None
        sizes = getattr(self.loaded.model.rnn, "state_sizes", ())
        if state == "c" and not (isinstance(sizes, tuple) and len(sizes) == 2):
            raise UserError("state: the cell state c exists only for an LSTM run; use h")
        with torch.inference_mode():
            acts = hidden_states(self.loaded, text, state)  # (L, N, H)
        picks = sorted(pick_units(acts, character_classes(text)), key=lambda p: -abs(p["r"]))
        if not picks:
            raise UserError("text: it shows no character feature (give two different characters)")
        units = [
            {
                "feature": p["class"],
                "layer": p["layer"],
                "unit": p["unit"],
                "r": p["r"],
                "characters_in_feature": p["characters_in_class"],
                "activations": acts[p["layer"], :, p["unit"]].tolist(),
            }
            for p in picks[:top]
        ]
        L, _, H = acts.shape
        return {
            "state": state,
            "layers": L,
            "hidden_size": H,
            "characters": list(text),
            "units": units,
        }

    # ---- predict -----------------------------------------------------------------------------
    def predict(
        self, input: str | None = None, image: bytes | None = None, audio: bytes | None = None
    ) -> dict:
        """The answer to a predict request, which gives exactly one of the three: ``input`` (a
        text) for seq2seq, taggers, classifiers; ``image`` (PNG bytes) for ocr and caption;
        ``audio`` (WAV bytes) for speech."""
        from rnnkit.serve.media import FIELDS, predict_media

        self.need("predict")
        wanted = FIELDS.get(self.kind, ("input", ""))[0]
        given = {"input": input, "image": image, "audio": audio}
        if given[wanted] is None:
            what = {"input": "a text", "image": "a PNG picture", "audio": "a WAV sound"}[wanted]
            sent = next(k for k, v in given.items() if v is not None)
            raise UserError(
                f"{sent}: a {self.task!r} run reads {what}: give {wanted!r} instead of {sent!r}"
            )
        if wanted != "input":
            return predict_media(self.kind, self.loaded, given[wanted])
        with torch.inference_mode():
            return getattr(self, f"_predict_{self.kind.replace(' ', '_')}")(input)

    def _predict_seq2seq(self, text: str) -> dict:
        from rnnkit.tasks.seq2seq_task import attention_map, predict

        m = self.loaded
        options = {"method": "greedy", "max_len": m.cfg.decode.max_len}
        output = predict(m.model, m.vocab, [text], **options)[0][0][0]
        found = attention_map(m.model, m.vocab, text, output)
        out = {"output": output}
        if found is not None:
            weights, source, target = found
            out.update(attention=weights.tolist(), source_tokens=source, output_tokens=target)
        return out

    def _predict_tagger(self, text: str) -> dict:
        from rnnkit.tasks.tagger import tag_sentences

        tokens = text.split()
        if not tokens:
            raise UserError("input: the sentence is empty")
        tags = tag_sentences(self.loaded.model, self.loaded.vocab, [tokens])[0]
        return {"output": " ".join(tags), "tokens": tokens, "tags": tags}

    def _predict_classifier(self, text: str) -> dict:
        from rnnkit.tasks.text_classify import classify

        c = classify(self.loaded, [text])[0]
        return {
            "output": c.label,
            "label": c.label,
            "probabilities": c.probabilities,
            "tokens": c.tokens,
            "token_attention": c.attention,
        }


def _each_in_inference_mode(items: Iterator[str]) -> Iterator[str]:
    while True:
        with torch.inference_mode():
            item = next(items, None)
        if item is None:
            return
        yield item


def model_name(run: Path) -> str:
    return run.parent.name if run.is_file() else run.name


def load_models(runs: list[Path]) -> dict[str, ServedModel]:
    """Each run (a run directory or a checkpoint) loaded once, named by its directory."""
    from rnnkit.tasks.runs import load_run

    models: dict[str, ServedModel] = {}
    for run in map(Path, runs):
        name = model_name(run)
        if name in models:
            raise UserError(f"two runs are named {name!r} ({models[name].path}, {run}): rename one")
        loaded = load_run(run, loader=None)
        loaded.model.eval()
        task = loaded.meta.get("task", "?")
        models[name] = ServedModel(name, task, kind_of(loaded), run, loaded, run_metrics(run))
    return models
