"""Hidden units of a trained character language model over a text, as heat maps: which units
fire on newlines, spaces, capitals, inside [stage directions] or quotes, or count the position
in the line (Karpathy, Johnson & Fei-Fei, "Visualizing and understanding recurrent networks",
2015, the lectures' pictures).

    rnnkit lab activations RUN [--text "..." | --text-file F] [--state h|c] [--out DIR]

RUN is a ``rnnkit train charlm`` run directory (or checkpoint). The model reads a line start and
then the text one character at a time, carrying its state; after each character we keep every
layer's hidden state h (or, ``--state c``, the LSTM's cell state). For each character class
below that the text has (at least one character in it and one not) we pick the unit whose
activation has the largest Pearson correlation |r| with the class indicator (a different unit
for each class) and draw those units.

Writes activations.png (the text laid out in lines, each character's cell coloured by one
unit's activation, one panel per unit, for the --panels units with the largest |r|),
activations_heatmap.png (units x characters, the characters along the axis) and results.json
(per class: the unit, its r, and the best r of every layer).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from rnnkit.config import option
from rnnkit.errors import UserError
from rnnkit.lab.experiment import DPI, check_int, lab_parser, out_dir, parse, write_json
from rnnkit.plots import figure, save_figure
from rnnkit.tasks.runs import LoadedRun, load_run

DEFAULT_TEXT = """CLEOPATRA.
Is he married?
I cannot hate thee worser than I do
If thou again say 'Yes.'

MESSENGER.
He's married, madam.

[Exit CHARMIAN.]

CLEOPATRA.
The gods confound thee! dost thou hold there still?
He said "I will not come", and so (they say) he went.
"""


def _brackets(text: str, open_: str, close: str) -> np.ndarray:
    """1 for the characters from an opening mark up to and including its closing one."""
    inside, depth = np.zeros(len(text)), 0
    for i, ch in enumerate(text):
        if ch == open_:
            depth += 1
        if depth > 0:
            inside[i] = 1.0
        if ch == close and depth > 0:
            depth -= 1
    return inside


def _quotes(text: str) -> np.ndarray:
    inside, open_ = np.zeros(len(text)), False
    for i, ch in enumerate(text):
        if ch == '"':
            open_ = not open_
            inside[i] = 1.0
        elif open_:
            inside[i] = 1.0
    return inside


def _speaker_lines(text: str) -> np.ndarray:
    """Characters of the lines that name a speaker: at least two letters, all capitals."""
    mask, pos = np.zeros(len(text)), 0
    for line in text.split("\n"):
        letters = [c for c in line if c.isalpha()]
        if len(letters) >= 2 and all(c.isupper() for c in letters) and "[" not in line:
            mask[pos : pos + len(line)] = 1.0
        pos += len(line) + 1
    return mask


def _line_position(text: str) -> np.ndarray:
    pos, col = np.zeros(len(text)), 0
    for i, ch in enumerate(text):
        pos[i] = col
        col = 0 if ch == "\n" else col + 1
    return pos


def character_classes(text: str) -> dict[str, np.ndarray]:
    """Indicator (or, for the line position, count) per character of the text, by class."""
    chars = np.array(list(text))

    def where(predicate) -> np.ndarray:
        return np.array([1.0 if predicate(c) else 0.0 for c in chars])

    return {
        "newline": where(lambda c: c == "\n"),
        "space": where(lambda c: c == " "),
        "vowel": where(lambda c: c.lower() in "aeiou"),
        "capital": where(str.isupper),
        "punctuation": where(lambda c: bool(re.match(r"[^\w\s]", c))),
        "end of line next": np.array(
            [1.0 if text[i + 1 : i + 2] == "\n" else 0.0 for i in range(len(text))]
        ),
        "speaker line": _speaker_lines(text),
        "inside [ ]": _brackets(text, "[", "]"),
        "inside ( )": _brackets(text, "(", ")"),
        'inside " "': _quotes(text),
        "position in line": _line_position(text),
    }


def correlations(acts: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Pearson r of each unit's activation (N, U) with ``target`` (N,): (U,), 0 for a unit that
    never changes."""
    a = acts - acts.mean(0)
    t = target - target.mean()
    denom = np.sqrt((a * a).sum(0) * (t * t).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * t[:, None]).sum(0) / denom
    return np.where(denom > 0, r, 0.0)


def hidden_states(loaded: LoadedRun, text: str, state: str = "h") -> np.ndarray:
    """The model's state after each character of ``text``: (L, N, H) for N characters.

    The model first reads a line start (its usual context), then the text one character at a
    time with its state carried, exactly as when sampling.
    """
    if loaded.level != "char":
        raise UserError(
            f"{loaded.path} is a {loaded.level}-level model; activations needs a "
            "character-level run (rnnkit train charlm)"
        )
    try:
        ids = torch.from_numpy(loaded.vocab.encode(text))
    except UserError as e:
        raise UserError(f"option --text: {e}") from None
    model = loaded.model
    is_lstm = (
        isinstance(getattr(model.rnn, "state_sizes", ()), tuple) and len(model.rnn.state_sizes) == 2
    )
    if state == "c" and not is_lstm:
        raise UserError("option --state c: the cell state exists only for an LSTM run")
    kept = []
    with torch.no_grad():
        _, s = model.step(torch.tensor(loaded.start_ids()[-1:]), None)
        for i in ids.unbind(0):
            _, s = model.step(i.view(1), s)
            part = (s[0] if state == "h" else s[1]) if isinstance(s, tuple) else s  # (L, 1, H)
            kept.append(part[:, 0])
    return torch.stack(kept, dim=1).numpy()  # (L, N, H)


def pick_units(acts: np.ndarray, classes: dict[str, np.ndarray]) -> list[dict]:
    """For each class the text exhibits, the unit (layer, index) with the largest |r|, each unit
    used once. ``acts`` (L, N, H)."""
    L, N, H = acts.shape
    flat = acts.transpose(1, 0, 2).reshape(N, L * H)  # (N, L*H), unit k = layer k // H
    taken: set[int] = set()
    picks = []
    for name, target in classes.items():
        if target.std() == 0:
            continue  # the text has no character of the class (or only such)
        r = correlations(flat, target)
        order = np.argsort(-np.abs(r), kind="stable")
        k = next(int(u) for u in order if int(u) not in taken)
        taken.add(k)
        per_layer = np.abs(r).reshape(L, H).max(1)
        picks.append(
            {
                "class": name,
                "layer": k // H,
                "unit": k % H,
                "r": float(r[k]),
                "best_abs_r_by_layer": [float(v) for v in per_layer],
                "characters_in_class": int((target > 0).sum()),
            }
        )
    return picks


def _shown(ch: str) -> str:
    return {"\n": "↵", " ": "·", "\t": "→", "$": r"\$"}.get(ch, ch)


def draw_text_panels(
    text: str, acts: np.ndarray, picks: list[dict], path: Path, width: int, vmax: float
) -> Path:
    """Karpathy's picture: the text in lines, each character's cell coloured by a unit."""
    rows: list[list[int]] = [[]]  # character indices per displayed line
    for i, ch in enumerate(text):
        if len(rows[-1]) >= width:
            rows.append([])
        rows[-1].append(i)
        if ch == "\n":
            rows.append([])
    if not rows[-1]:
        rows.pop()
    cols = max(len(r) for r in rows)
    n = len(picks)
    fig, axes = figure(
        (min(0.13 * cols + 1.5, 16), (0.2 * len(rows) + 0.5) * n + 0.3), n, 1, dpi=DPI
    )
    for ax, pick in zip(axes[:, 0], picks, strict=True):
        values = acts[pick["layer"], :, pick["unit"]]
        grid = np.full((len(rows), cols), np.nan)
        for y, row in enumerate(rows):
            grid[y, : len(row)] = values[row]
        image = ax.imshow(
            grid, cmap="coolwarm", vmin=-vmax, vmax=vmax, aspect="auto", interpolation="nearest"
        )
        for y, row in enumerate(rows):
            for x, i in enumerate(row):
                ax.text(
                    x, y, _shown(text[i]), ha="center", va="center", fontsize=7, family="monospace"
                )
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(
            f"layer {pick['layer'] + 1} unit {pick['unit']}: {pick['class']} "
            f"(r = {pick['r']:+.2f})",
            fontsize=9,
            loc="left",
        )
        fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01)
    return save_figure(fig, path)


def draw_heatmap(
    text: str, acts: np.ndarray, picks: list[dict], path: Path, max_chars: int, vmax: float
) -> Path:
    """Units (rows) against characters (columns, every one labelled)."""
    n_chars = min(len(text), max_chars)
    matrix = np.stack([acts[p["layer"], :n_chars, p["unit"]] for p in picks])
    fig, axes = figure((min(0.12 * n_chars + 3.5, 20), 0.35 * len(picks) + 1.6), 1, 1, dpi=DPI)
    ax = axes[0, 0]
    image = ax.imshow(
        matrix, cmap="coolwarm", vmin=-vmax, vmax=vmax, aspect="auto", interpolation="nearest"
    )
    ax.set_xticks(range(n_chars))
    ax.set_xticklabels([_shown(c) for c in text[:n_chars]], fontsize=7, family="monospace")
    ax.set_yticks(range(len(picks)))
    ax.set_yticklabels(
        [f"L{p['layer'] + 1} u{p['unit']} {p['class']} ({p['r']:+.2f})" for p in picks], fontsize=8
    )
    ax.set_title(f"hidden units over the first {n_chars} characters", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01)
    return save_figure(fig, path)


def run(
    loaded: LoadedRun,
    text: str,
    state: str,
    out: Path,
    width: int = 64,
    max_chars: int = 150,
    panels: int = 6,
) -> dict:
    start = time.perf_counter()
    acts = hidden_states(loaded, text, state)
    picks = pick_units(acts, character_classes(text))
    if not picks:
        raise UserError(
            "option --text: the text shows no character class (it needs at least "
            "two different characters)"
        )
    vmax = 1.0 if state == "h" else float(max(np.abs(acts).max(), 1e-6))
    L, N, H = acts.shape
    result = {
        "run": str(loaded.path),
        "cell": loaded.meta["config"]["model"]["cell"],
        "state": state,
        "layers": L,
        "hidden_size": H,
        "characters": N,
        "units": picks,
        "seconds": 0.0,
    }
    strongest = sorted(picks, key=lambda p: -abs(p["r"]))[:panels]
    draw_text_panels(text, acts, strongest, out / "activations.png", width, vmax)
    draw_heatmap(text, acts, picks, out / "activations_heatmap.png", max_chars, vmax)
    result["seconds"] = time.perf_counter() - start
    write_json(out / "results.json", result)
    return result


@dataclass
class ActivationsOptions:
    """The options of ``rnnkit lab activations``."""

    run: str = field(metadata={"help": "a `rnnkit train charlm` run directory or checkpoint"})
    text: str | None = option(None, "the text to read (default: a passage in the corpus's style)")
    text_file: str | None = option(None, "read the text from this UTF-8 file instead")
    state: Literal["h", "c"] = option("h", "h: hidden state; c: the LSTM's cell state")
    width: int = option(64, "characters per line in the picture")
    max_chars: int = option(150, "characters in the heat map")
    panels: int = option(6, "activations.png: the units with the largest |r|, one panel each")


def main(argv: list[str]) -> int:
    p = lab_parser("activations", __doc__.split("\n\n")[0], ActivationsOptions)
    args = parse(p, argv)
    if args is None:
        return 0
    if args.text is not None and args.text_file is not None:
        raise UserError("options --text and --text-file: give one, not both")
    if args.text_file is not None:
        try:
            text = Path(args.text_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"option --text-file: cannot read {args.text_file} ({e})") from None
    else:
        text = DEFAULT_TEXT if args.text is None else args.text
    if not text:
        raise UserError("option --text: the text is empty")
    check_int("--width", args.width, 8, 400)
    check_int("--max-chars", args.max_chars, 1, 2000)
    check_int("--panels", args.panels, 1, 64)
    check_int("--text length", len(text), 1, 5000)
    loaded = load_run(Path(args.run))
    out = out_dir(args.out)
    result = run(loaded, text, args.state, out, args.width, args.max_chars, args.panels)
    print(
        f"{result['cell']} x {result['layers']} layer(s) x {result['hidden_size']} units, "
        f"state {args.state}, {result['characters']} characters; the unit most correlated "
        "with each character class:"
    )
    for u in result["units"]:
        print(
            f"  {u['class']:18} layer {u['layer'] + 1} unit {u['unit']:4d}  r = {u['r']:+.3f}"
            f"  ({u['characters_in_class']} characters)"
        )
    print(
        f"wrote {out / 'activations.png'}, {out / 'activations_heatmap.png'}, "
        f"{out / 'results.json'}"
    )
    return 0
