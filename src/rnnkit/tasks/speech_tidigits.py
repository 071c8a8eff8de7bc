"""The 31 TIDIGITS test utterances of ``../shared/data/speech/tidigits_mfcc/`` (Debian's
``pocketsphinx-testdata``), brought to this task's front end as well as 13 cepstra allow.

The files hold no audio, only Sphinx MFCCs: a big-endian int32 count, then float32 frames of 13
cepstra, 100 frames a second, computed by sphinxbase's front end at 16 kHz from 40 mel filters
between 133.33 and 6855.50 Hz with its "legacy" DCT,

    c_i = (1 / 2M) Σ_j β_j L_j cos(π i (j + ½) / M),  β_0 = ½, β_j = 1,  M = 40  (i ≥ 1)

(c_0 is the filters' mean log energy). Inverting it with the 13 coefficients kept gives a
smoothed log spectrum on Sphinx's 40 mel centres,

    L̂_j = c_0 + 4 Σ_{i=1}^{12} c_i cos(π i (j + ½) / M),

which is interpolated (linearly in Hz) at this task's 40 centres (0-4000 Hz, the telephone
band: Sphinx's filters above 4 kHz are dropped) and normalised per utterance like every other
input. What cannot be matched: the truncation to 13 cepstra removes the fine spectral structure
(pitch harmonics) that the model saw in training, Sphinx's filters are wider and spaced on
another grid, and the audio was never band-limited to 8 kHz sampling. The set is therefore a
test of how far the model carries across front ends, not of the model alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rnnkit.errors import UserError
from rnnkit.tasks.speech_features import N_MELS, SAMPLE_RATE, hz_to_mel, mel_to_hz

TIDIGITS = Path("../shared/data/speech/tidigits_mfcc")
SPHINX_FILTERS, SPHINX_LOW, SPHINX_HIGH, CEPSTRA = 40, 133.33334, 6855.4976, 13
WORD_DIGITS = {"zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
               "six": 6, "seven": 7, "eight": 8, "nine": 9}  # fmt: skip


def find_tidigits() -> Path:
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        path = (base / TIDIGITS).resolve()
        if (path / "tidigits.lsn").is_file():
            return path
    raise UserError(f"the TIDIGITS set is missing: {TIDIGITS}/tidigits.lsn")


def read_sphinx_mfc(path: Path) -> np.ndarray:
    """(T, 13) cepstra of a Sphinx feature file (big-endian int32 count, then float32s)."""
    raw = Path(path).read_bytes()
    count = int(np.frombuffer(raw[:4], dtype=">i4")[0])
    data = np.frombuffer(raw[4:], dtype=">f4")
    if count != len(data) or count % CEPSTRA:
        raise UserError(f"{path}: not a Sphinx MFCC file of {CEPSTRA} cepstra per frame")
    return data.reshape(-1, CEPSTRA).astype(np.float64)


def cepstra_to_log_mel(c: np.ndarray) -> torch.Tensor:
    """(T, 13) Sphinx cepstra -> (T, 40) normalised log-mel frames on this task's filters."""
    j = np.arange(SPHINX_FILTERS)
    i = np.arange(1, CEPSTRA)
    basis = np.cos(np.pi * i[:, None] * (j[None, :] + 0.5) / SPHINX_FILTERS)  # (12, 40)
    log_spec = c[:, :1] + 4.0 * c[:, 1:] @ basis  # (T, 40) on Sphinx's centres
    edges = np.linspace(hz_to_mel(SPHINX_LOW), hz_to_mel(SPHINX_HIGH), SPHINX_FILTERS + 2)
    theirs = mel_to_hz(edges[1:-1])
    ours = mel_to_hz(np.linspace(0.0, hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2)[1:-1])
    feats = np.stack([np.interp(ours, theirs, row) for row in log_spec])
    feats = (feats - feats.mean(0)) / np.sqrt(feats.var(0) + 1e-5)
    return torch.as_tensor(feats, dtype=torch.float32)


def tidigits_set() -> tuple[list[torch.Tensor], list[str]]:
    """The 31 utterances as (T, 40) feature tensors and their digit strings."""
    root = find_tidigits()
    feats, refs = [], []
    for line in (root / "tidigits.lsn").read_text().splitlines():
        if not line.strip():
            continue
        words, _, name = line.rpartition("(")
        feats.append(cepstra_to_log_mel(read_sphinx_mfc(root / f"{name.strip(' )')}.mfc")))
        refs.append("".join(str(WORD_DIGITS[w]) for w in words.split()))
    return feats, refs
