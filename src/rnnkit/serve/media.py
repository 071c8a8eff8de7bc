"""``predict`` for the runs that read a picture or a sound rather than a text: ocr (one text
line), speech (spoken digits) and caption (an 84x84 scene).

The request carries the file base64-encoded in JSON (``schemas`` checks that it decodes, that it
is a PNG or a WAV by its first bytes, and its size). Here the bytes are written to a temporary
file and read by the task's own reader, so the checks and the preprocessing are exactly those
of ``rnnkit predict``: ``ocr_commands.read_line`` (grey, ink bright, height 32, at most 4,096
pixels wide), ``speech_features.read_wav`` (any rate and channels, to 8 kHz mono, at most 60 s)
and ``caption_data.read_scene`` (84x84, grey). A reader's one-line error names the request's
field instead of the temporary file (HTTP 422).

Answers:
- ocr and speech (CTC): the greedy decoding (``output``) and ``columns``: per output frame of
  the model (a few pixel columns of the line, a short step of the sound) the likeliest label
  (``<blank>`` for CTC's blank), its probability and the blank's probability;
- caption: the greedy caption, ``output_tokens`` (its words and ``<eos>``) and ``attention``,
  one row per output token over the 7x7 grid of image regions, row-major (each row sums to 1).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from rnnkit.errors import UserError

# the request field each kind of run reads, and the suffix its reader expects
FIELDS = {
    "line reader": ("image", ".png"),
    "speech": ("audio", ".wav"),
    "captioner": ("image", ".png"),
}


def kind_of_media(loaded) -> str | None:
    """The kind of a run that reads pictures or sounds, else None."""
    from rnnkit.tasks.caption_commands import LoadedCaption
    from rnnkit.tasks.ocr_commands import LoadedOCR
    from rnnkit.tasks.speech_commands import LoadedSpeech

    for cls, kind in [
        (LoadedOCR, "line reader"),
        (LoadedSpeech, "speech"),
        (LoadedCaption, "captioner"),
    ]:
        if isinstance(loaded, cls):
            return kind
    return None


@contextlib.contextmanager
def as_file(data: bytes, field: str, suffix: str) -> Iterator[Path]:
    """``data`` as a temporary file, removed afterwards; a ``UserError`` raised inside names
    ``field`` where it named the file."""
    with tempfile.TemporaryDirectory(prefix="rnnkit-serve-") as folder:
        path = Path(folder) / f"{field}{suffix}"
        path.write_bytes(data)
        try:
            yield path
        except UserError as e:
            raise UserError(str(e).replace(str(path), field)) from None


def columns(log_probs: torch.Tensor, labels: list[str]) -> dict:
    """Per frame of (T, C) CTC log-probabilities: the likeliest label, its probability and the
    blank's (label 0)."""
    probs = log_probs.float().exp()
    best, index = probs.max(dim=1)
    return {
        "labels": [labels[i] for i in index.tolist()],
        "probability": best.tolist(),
        "blank": probs[:, 0].tolist(),
    }


def predict_media(kind: str, loaded, data: bytes) -> dict:
    field, suffix = FIELDS[kind]
    with torch.inference_mode(), as_file(data, field, suffix) as path:
        return {"line reader": _ocr, "speech": _speech, "captioner": _caption}[kind](loaded, path)


def _ocr(loaded, path: Path) -> dict:
    from rnnkit.tasks.ocr_commands import decode, posteriors, read_line

    log_probs = posteriors(loaded, [read_line(path)])[0]  # (T, C)
    text = decode(loaded, [log_probs], 0)[0]
    labels = ["<blank>", *loaded.alphabet.chars]
    return {"output": text, "columns": columns(log_probs, labels)}


def _speech(loaded, path: Path) -> dict:
    from rnnkit.tasks.speech_commands import transcribe
    from rnnkit.tasks.speech_features import read_wav
    from rnnkit.tasks.speech_model import LABELS

    hyps, details = transcribe(loaded.model, [read_wav(path)])
    return {"output": hyps[0], "columns": columns(details[0][1], list(LABELS))}


def _caption(loaded, path: Path) -> dict:
    from rnnkit.tasks.caption_commands import attention_weights, caption_of
    from rnnkit.tasks.caption_data import read_scene

    image = read_scene(path)
    caption = caption_of(loaded, image)
    out: dict = {"output": caption}
    found = attention_weights(loaded, image, caption)
    if found is not None:
        words, alpha = found  # alpha (T, 7, 7)
        out.update(output_tokens=words, attention=alpha.reshape(len(words), -1).tolist())
    return out
