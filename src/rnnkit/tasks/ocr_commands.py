"""What ``rnnkit train ocr`` adds to the command line: loading a run back, ``rnnkit predict``
(the text of line images) and ``rnnkit eval`` (held-out error rates).

Any PNG/JPEG (anything Pillow opens) of one text line is read as grey levels, turned so that
the ink is bright if its background is light (median above mid-grey), scaled to height 32
keeping its aspect ratio and stretched to [0, 1] like the training lines
(``ocr_data.normalise``). Its width at height 32 must be at most ``MAX_WIDTH`` = 4,096 pixels
(1,024 frames at the default stride of 4): cut longer lines.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rnnkit.errors import UserError
from rnnkit.files import atomic_write
from rnnkit.tasks import ocr_data as D
from rnnkit.tasks.ocr_model import LineReader, stride
from rnnkit.tasks.ocr_task import (
    MAX_WIDTH,
    TEST_SEED,
    VAL_SEED,
    Alphabet,
    Lines,
    OCRConfig,
    by_width,
    collate,
    error_sums,
    load_alphabet,
)
from rnnkit.tasks.runs import load_task_run
from rnnkit.train.restore import LoadedModel, model_loader


@dataclass
class LoadedOCR(LoadedModel):
    model: LineReader
    vocab: Alphabet
    cfg: OCRConfig

    @property
    def alphabet(self) -> Alphabet:
        return self.vocab


def build_model(cfg: OCRConfig, alphabet: Alphabet) -> LineReader:
    return LineReader(len(alphabet), cfg.model)


# an OCR checkpoint (``TaskSpec.load``): the model in eval mode and its alphabet
load_ocr = model_loader(LoadedOCR, OCRConfig, build_model, load_alphabet)


def load_ocr_run(run) -> LoadedOCR:
    return load_task_run(run, load_ocr, "an OCR run")


def read_line(path) -> np.ndarray:
    """The image file ``path`` as a line the model reads: uint8 (32, W), ink high (see the
    module docstring); a missing file, a file that is not an image or a line too wide is a
    UserError naming the file."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file" + (" (a directory)" if path.is_dir() else ""))
    try:
        with Image.open(path) as im:
            im.load()
            grey = im.convert("L")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UserError(f"{path}: not an image Pillow can read (PNG, JPEG, ...): {e}") from None
    w, h = grey.size
    width = max(1, round(w * D.HEIGHT / h))
    if width > MAX_WIDTH:
        raise UserError(
            f"{path}: the line is {width:,} pixels wide at height {D.HEIGHT} ({w}x{h}); the "
            f"limit is {MAX_WIDTH:,}: cut it into shorter lines"
        )
    if width < 8:
        raise UserError(f"{path}: {w}x{h} is too narrow for a line ({width} px at height 32)")
    x = np.asarray(grey.resize((width, D.HEIGHT), Image.BILINEAR), dtype=np.float32) / 255.0
    if np.median(x) > 0.5:  # dark ink on a light background
        x = 1.0 - x
    return np.round(D.normalise(x) * 255).astype(np.uint8)


def make_lm(lm_run, alphabet: Alphabet):
    """``rnnkit.ctc.CharLM`` of the charlm run ``lm_run`` over the CTC labels."""
    from rnnkit.ctc import CharLM

    try:
        return CharLM.from_run(lm_run, ["\0", *alphabet.chars])
    except ValueError as e:
        raise UserError(f"--lm {lm_run}: {e}") from None


@torch.no_grad()
def posteriors(loaded: LoadedOCR, images: list[np.ndarray], batch_size: int = 32) -> list:
    """Per image, its per-frame log-probabilities (T_i, C) as a float32 tensor."""
    out: list = [None] * len(images)
    lines = [(img, "") for img in images]
    for rows in by_width(lines, batch_size):
        b = collate([lines[i] for i in rows], loaded.alphabet)
        log_probs, lengths = loaded.model(b.x, b.widths)
        for j, i in enumerate(rows):
            out[i] = log_probs[: int(lengths[j]), j].float()
    return out


def decode(loaded: LoadedOCR, log_probs: list, beam: int, lm=None, alpha=0.0, beta=0.0):
    """Texts of the per-line log-probabilities: greedy (beam 0) or prefix beam search."""
    from rnnkit.ctc import beam_search, greedy_decode

    texts = []
    for start in range(0, len(log_probs), 32):
        chunk = log_probs[start : start + 32]
        lengths = torch.tensor([lp.shape[0] for lp in chunk])
        padded = torch.nn.utils.rnn.pad_sequence(chunk)  # (T, B, C)
        if beam:
            fusion = (alpha, beta) if lm is not None else (0.0, 0.0)
            results = beam_search(padded, lengths, beam, 0, lm, *fusion)
            texts += [loaded.alphabet.decode(r[0][0]) for r in results]
        else:
            texts += [loaded.alphabet.decode(y) for y in greedy_decode(padded, lengths)]
    return texts


def decode_parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("run", help="an OCR run directory or a .safetensors checkpoint")
    p.add_argument("--beam", type=int, default=0, help="prefix beam search of this width")
    p.add_argument("--lm", default=None, help="a charlm run fused into the beam search")
    p.add_argument("--alpha", type=float, default=0.5, help="--lm: the LM's weight")
    p.add_argument("--beta", type=float, default=1.0, help="--lm: the bonus per character")
    return p


def check_decode_args(a) -> None:
    if a.beam < 0 or a.beam > 1000:
        raise UserError(f"--beam must be in 0-1000 (0: greedy), got {a.beam}")
    for name in ("alpha", "beta"):
        if not math.isfinite(getattr(a, name)):
            raise UserError(f"--{name} must be a finite number, got {getattr(a, name)}")
    if a.lm and not a.beam:
        a.beam = 10  # the LM is fused into a beam search


def cmd_predict(argv: list[str]) -> int:
    p = decode_parser("rnnkit predict", "The text of line images (PNG, JPEG, ...).")
    p.add_argument("images", nargs="+", help="images of one text line each")
    p.add_argument("--columns", default=None, help="draw the first line's frame posteriors here")
    a = p.parse_args(argv)
    check_decode_args(a)
    if a.columns:
        from rnnkit.plots import check_writable

        check_writable(a.columns, "--columns")
    images = [read_line(path) for path in a.images]
    loaded = load_ocr_run(a.run)
    lm = make_lm(a.lm, loaded.alphabet) if a.lm else None
    log_probs = posteriors(loaded, images)
    texts = decode(loaded, log_probs, a.beam, lm, a.alpha, a.beta)
    for path, text in zip(a.images, texts, strict=True):
        print(text if len(a.images) == 1 else f"{path}\t{text}")
    if a.columns:
        print(f"columns: {draw_columns(loaded, images[0], log_probs[0], texts[0], a.columns)}")
    return 0


def draw_columns(loaded: LoadedOCR, image, log_probs, text: str, path) -> Path:
    from rnnkit.ctc import forced_align
    from rnnkit.tasks.ocr_plots import plot_columns

    labels = loaded.alphabet.encode(text)
    try:
        alignment = forced_align(log_probs, labels) if labels else [0] * log_probs.shape[0]
    except ValueError:  # an output longer than its frames can carry (cannot come from decoding)
        alignment = [0] * log_probs.shape[0]
    s = stride(loaded.cfg.model.conv)
    return plot_columns(image, log_probs.numpy(), loaded.alphabet.chars, alignment, text, s, path)


def by_length(refs: list[str], hyps: list[str], width: int = 5) -> list[dict]:
    """CER, WER and lines right per bin of reference lengths (1-5, 6-10, ... characters)."""
    bins: dict[int, list[int]] = {}
    for i, r in enumerate(refs):
        bins.setdefault((max(len(r), 1) - 1) // width, []).append(i)
    rows = []
    for b in sorted(bins):
        s = error_sums([refs[i] for i in bins[b]], [hyps[i] for i in bins[b]])
        rows.append(
            {
                "lengths": f"{b * width + 1}-{(b + 1) * width}",
                "mid": b * width + (width + 1) / 2,
                "lines": len(bins[b]),
                "cer": s["char_errors"] / s["ref_chars"],
                "wer": s["word_errors"] / max(s["ref_words"], 1.0),
            }
        )
    return rows


def cmd_eval(argv: list[str]) -> int:
    from rnnkit.tasks.eval_files import add_out_options, eval_output
    from rnnkit.tasks.ocr_plots import plot_cer_by_length

    p = decode_parser("rnnkit eval", "CER/WER of an OCR run on its held-out lines.")
    p.add_argument("--lines", type=int, default=0, help="test lines per split (0: the run's)")
    add_out_options(p, "CER against line length", "ocr_eval_SPLIT")
    p.add_argument(
        "--split",
        choices=("test", "val"),
        default="test",
        help="test: the held-out test lines (and fonts); val: the validation lines",
    )
    a = p.parse_args(argv)
    check_decode_args(a)
    loaded = load_ocr_run(a.run)
    json_path = eval_output(a.run, a.out, a.split, a.force, stem="ocr_eval")
    png_path = json_path.with_suffix(".png")
    n = a.lines or loaded.cfg.data.test_lines
    if n < 1:
        raise UserError(f"--lines must be >= 1, got {a.lines}")
    lm = make_lm(a.lm, loaded.alphabet) if a.lm else None
    lines = Lines(loaded.cfg.data)
    splits = ["test"] if loaded.cfg.data.source == "digits" else ["test", "test_fonts"]
    if a.split == "val":  # for choosing --alpha and --beta without looking at the test lines
        splits = ["val"]
    decoders = {"greedy": (0, None)}
    if a.beam:
        decoders[f"beam {a.beam}"] = (a.beam, None)
    if lm is not None:
        decoders[f"beam {a.beam} + LM"] = (a.beam, lm)
    results: dict = {}
    for split in splits:
        drawn = lines.draw(split, n, VAL_SEED if split == "val" else TEST_SEED)
        refs = [t for _, t in drawn]
        log_probs = posteriors(loaded, [img for img, _ in drawn])
        results[split] = {}
        for name, (beam, model) in decoders.items():
            hyps = decode(loaded, log_probs, beam, model, a.alpha, a.beta)
            s = error_sums(refs, hyps)
            results[split][name] = {
                "cer": s["char_errors"] / s["ref_chars"],
                "wer": s["word_errors"] / max(s["ref_words"], 1.0),
                "line_accuracy": s["lines_right"] / s["lines"],
                "lines": len(refs),
                "by_length": by_length(refs, hyps),
            }
            r = results[split][name]
            print(
                f"{split:10} {name:14} CER {100 * r['cer']:6.2f}%  WER {100 * r['wer']:6.2f}%  "
                f"lines right {100 * r['line_accuracy']:5.1f}%  ({len(refs)} lines)"
            )
    for split in splits:
        print(f"{split}: CER (%) by line length (characters), greedy:")
        for row in results[split]["greedy"]["by_length"]:
            print(f"  {row['lengths']:>7}  {100 * row['cer']:6.2f}  ({row['lines']} lines)")
    meta = {"run": str(loaded.path), "lm": a.lm, "alpha": a.alpha, "beta": a.beta}
    atomic_write(json_path, json.dumps({**meta, "results": results}, indent=1))
    print(f"results: {json_path}")
    print(f"plot: {plot_cer_by_length(results, png_path)}")
    return 0


def predict_one(loaded: LoadedOCR, path: str) -> str:
    """``TaskSpec.predict``: the text of one line image (greedy)."""
    return decode(loaded, posteriors(loaded, [read_line(path)]), 0)[0]


def hooks() -> dict:
    """The ``TaskSpec`` fields of the OCR task that concern trained runs."""
    return {
        "load": load_ocr,
        "predict": predict_one,
        "run_commands": {
            "predict": (cmd_predict, "the text of line images (PNG/JPEG) read by an OCR run"),
            "eval": (cmd_eval, "CER/WER of an OCR run on held-out lines, greedy/beam/LM"),
        },
    }
