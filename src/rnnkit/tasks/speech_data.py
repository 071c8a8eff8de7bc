"""Spoken digit strings: synthesised (``speech_voices``), cached, augmented on the fly; and the
real voice (Asterisk's prompts) spliced into digit strings for testing.

A pool of ``data.pool`` training utterances is synthesised once (one process: the machine's
cores are for training) in the training voices (``speech_voices.voices``): a share
``data.flite_share`` by flite's, ``data.festival_share`` by festival's, the rest by espeak-ng's,
and a share ``data.isolated_share`` said word by word. It is cached as ``<cache>/pool-<key>.npz``
(int16 samples, their offsets, the digits and the voice of each), the key a hash of everything
the audio depends on, so a second run with the same options reads it back without calling
espeak. Training batches draw from the pool and augment each utterance afresh (``augment``):
speed perturbation, leading and trailing silence, a random band-pass (telephone channels),
spectral tilt, gain with clipping, and additive white/pink/brown noise at a random SNR;
optionally (``spec_augment``) masks on the features (``speech_features.spec_augment``).

The real voice (``real_set``): the recordings ``digits/0.wav`` .. ``9.wav`` (and
``letters/o.wav`` for "oh") of Allison Smith's Asterisk prompts (8 kHz, a professional voice,
never used in training), trimmed of silence and spliced into strings of 1-7 digits with random
pauses filled with the recordings' own background noise: a fixed set, seeded.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnkit.config import option
from rnnkit.errors import UserError
from rnnkit.tasks.speech_features import SAMPLE_RATE
from rnnkit.tasks.speech_voices import (
    FLITE_VOICES,
    HELD_OUT_FLITE,
    MAX_DIGITS,
    WORDS,
    Voice,
    require,
    spoken,
    synthesise,
    voices,
)

CACHE_VERSION = 1  # bump when synthesis changes what it writes
REAL_DIR = Path("../shared/data/speech/asterisk_en")


@dataclass
class SpeechDataConfig:
    pool: int = option(6000, "training utterances synthesised once (and cached)")
    flite: bool = option(True, "synthesise with flite's voices too (besides espeak-ng's)")
    flite_share: float = option(0.25, "the share of the pool spoken by flite's voices")
    festival_share: float = option(
        0.0,
        "the share of the training pool spoken by festival's voices ked and slt_hts (0: none; "
        "never in the held-out sets)",
    )
    held_out_flite: str = option(
        HELD_OUT_FLITE,
        "flite's voice held out of training (it speaks only the held-out sets): "
        + ", ".join(FLITE_VOICES),
    )
    isolated_share: float = option(
        0.0, "the share of the pool said word by word (each digit alone, spliced with pauses)"
    )
    augment: bool = option(True, "distort each training utterance afresh (speed, noise, ...)")
    speed_min: float = option(
        0.85, "augment: the slowest speed factor (resampling: tempo and pitch)"
    )
    speed_max: float = option(1.15, "augment: the fastest speed factor (> 1: faster and higher)")
    spec_augment: bool = option(
        False, "augment: mask 2 random bands of mel channels and 2 spans of frames (SpecAugment)"
    )
    spec_max_band: int = option(
        8, "augment: SpecAugment's widest band, in mel channels of 40 (each band 0..this wide)"
    )
    vtlp: float = option(
        0.0,
        "augment: vocal tract length perturbation, each utterance's mel filters warped by a "
        "factor in [1 - v, 1 + v] (0: off)",
    )
    batch_size: int = option(32, "B, utterances per batch")
    epoch_batches: int = option(500, "batches per (nominal) epoch")
    val_size: int = option(300, "validation utterances (held-out voices)")
    test_size: int = option(500, "test utterances (held-out voices; rnnkit eval)")
    real_size: int = option(500, "real-voice test strings (rnnkit eval)")
    cache: str = option(
        "",
        "where synthesised speech is cached ('': $RNNKIT_CACHE_DIR/speech, else "
        "~/.cache/rnnkit/speech)",
    )
    seed: int = option(0, "seed of the synthesis and of the training batches")

    def cache_dir(self) -> Path:
        if self.cache:
            return Path(self.cache)
        from rnnkit.data.corpus import default_cache_dir

        return default_cache_dir() / "speech"

    def share(self) -> float:
        """The share of flite's voices in every synthesised set (0 without flite)."""
        return self.flite_share if self.flite else 0.0


def find_real_dir() -> Path:
    """``../shared/data/speech/asterisk_en`` as the other tasks resolve the shared data: from the
    working directory, else from the source tree's root's sibling."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        path = (base / REAL_DIR).resolve()
        if (path / "digits" / "0.wav").is_file():
            return path
    raise UserError(f"the real-speech test set is missing: {REAL_DIR}/digits/0.wav")


def isolated_words(voice: Voice, digits: list[int], rng: np.random.Generator) -> np.ndarray:
    """A digit string said word by word, as the real test set is made: each word synthesised
    alone (one speed and pitch for the utterance), trimmed of its silence and spliced with
    pauses of 50-400 ms (silence; augmentation adds the noise)."""
    seed = int(rng.integers(2**63))
    parts = []
    for i, d in enumerate(digits):
        word = "oh" if d == 0 and rng.random() < 0.25 else WORDS[d]
        parts.append(trim(synthesise(voice, word, np.random.default_rng(seed))))
        if i < len(digits) - 1:
            parts.append(np.zeros(int(rng.uniform(0.05, 0.4) * SAMPLE_RATE), np.float32))
    return np.concatenate(parts)


# ---- the cached pools ------------------------------------------------------------------------
@dataclass
class Pool:
    """Utterances: ``audio[offsets[i]:offsets[i+1]]`` (int16, 8 kHz) says ``labels[i]``."""

    audio: np.ndarray
    offsets: np.ndarray
    labels: list[list[int]]
    voice_ids: np.ndarray
    voice_names: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def wave(self, i: int) -> np.ndarray:
        return self.audio[self.offsets[i] : self.offsets[i + 1]].astype(np.float32) / 32768.0


def pool_key(
    split: str,
    n: int,
    seed: int,
    flite_share: float,
    voice_list: list[Voice],
    isolated: float,
    festival: float = 0.0,
) -> str:
    version = subprocess.run(
        [require("espeak-ng"), "--version"], capture_output=True, text=True
    ).stdout.strip()
    spec = (
        f"{CACHE_VERSION}|{split}|{n}|{seed}|{flite_share}|{version}|"
        f"{','.join(map(str, voice_list))}"
        + (f"|isolated {isolated}" if isolated else "")
        + (f"|festival {festival}" if festival else "")
    )
    return hashlib.blake2b(spec.encode(), digest_size=8).hexdigest()


def synthesise_pool(
    split: str,
    n: int,
    seed: int,
    cache: Path,
    flite_share: float = 0.25,
    progress: bool = True,
    isolated: float = 0.0,
    held_out_flite: str = HELD_OUT_FLITE,
    festival_share: float = 0.0,
) -> Pool:
    """``n`` utterances in the voices of ``split`` ("train"; "val" and "test": the held-out
    voices), a share ``flite_share`` of them by flite's voices (0: espeak-ng's only) and a share
    ``isolated`` spoken word by word (``isolated_words``), read back from ``cache`` if made
    before with the same arguments and the same espeak-ng. ``held_out_flite``: the flite voice
    that speaks only "val" and "test". ``festival_share``: the share spoken by festival's voices
    ("train" only; the pools without festival are drawn as before it existed)."""
    split_voices = "train" if split == "train" else "held_out"
    festival_share = festival_share if split == "train" else 0.0
    voice_list = voices(split_voices, flite_share > 0, held_out_flite, festival_share > 0)
    key = pool_key(split, n, seed, flite_share, voice_list, isolated, festival_share)
    path = Path(cache) / f"pool-{split}-{key}.npz"
    if path.is_file():
        return load_pool(path)
    from tqdm import tqdm

    from rnnkit.files import atomic_write

    engines = {
        e: [i for i, v in enumerate(voice_list) if v.engine == e]
        for e in ("espeak", "flite", "festival")
    }
    rng = np.random.default_rng([seed, {"train": 0, "val": 1, "test": 2}.get(split, 3)])
    waves, labels, ids = [], [], []
    for _ in tqdm(range(n), desc=f"synthesising {split} speech", disable=not progress, unit="utt"):
        engine = "flite" if engines["flite"] and rng.random() < flite_share else "espeak"
        if engine == "espeak" and engines["festival"]:  # of the rest: festival's share overall
            engine = "festival" if rng.random() * (1 - flite_share) < festival_share else engine
        v = int(rng.choice(engines[engine]))
        digits = [int(d) for d in rng.integers(0, 10, size=rng.integers(1, MAX_DIGITS + 1))]
        if isolated and rng.random() < isolated:
            x = isolated_words(voice_list[v], digits, rng)
        else:
            x = synthesise(voice_list[v], spoken(digits, rng), rng)
        x = x / max(float(np.abs(x).max()), 1e-6) * 0.7
        waves.append(np.round(x * 32767).astype(np.int16))
        labels.append(digits)
        ids.append(v)
    offsets = np.concatenate([[0], np.cumsum([len(w) for w in waves])]).astype(np.int64)
    flat = np.concatenate([np.asarray(d, np.int8) for d in labels])
    label_offsets = np.concatenate([[0], np.cumsum([len(d) for d in labels])]).astype(np.int64)
    arrays = {
        "audio": np.concatenate(waves),
        "offsets": offsets,
        "digits": flat,
        "digit_offsets": label_offsets,
        "voice_ids": np.asarray(ids, np.int32),
        "voice_names": np.asarray([str(v) for v in voice_list]),
    }

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write, what="the speech cache")
    return load_pool(path)


def load_pool(path: Path) -> Pool:
    with np.load(path) as z:
        d, o = z["digits"], z["digit_offsets"]
        labels = [d[o[i] : o[i + 1]].astype(int).tolist() for i in range(len(o) - 1)]
        return Pool(z["audio"], z["offsets"], labels, z["voice_ids"], z["voice_names"].tolist())


# ---- augmentation ----------------------------------------------------------------------------
def coloured_noise(n: int, beta: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with power spectrum ∝ 1/f^beta (0 white, 1 pink, 2 brown), unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spectrum / f ** (beta / 2), n)
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-12)


def augment(
    x: np.ndarray, rng: np.random.Generator, speed_min: float = 0.85, speed_max: float = 1.15
) -> np.ndarray:
    """One random distortion of an 8 kHz utterance (see the module's docstring)."""
    from scipy.signal import butter, lfilter, resample_poly, sosfilt

    speed = rng.uniform(speed_min, speed_max)  # > 1: faster and higher
    x = resample_poly(x, 100, int(round(100 * speed))).astype(np.float64)
    pad = rng.uniform(0.0, 0.4, size=2)
    x = np.concatenate(
        [np.zeros(int(pad[0] * SAMPLE_RATE)), x, np.zeros(int(pad[1] * SAMPLE_RATE))]
    )
    if rng.random() < 0.7:  # a telephone channel's band
        low, high = rng.uniform(50, 400), rng.uniform(2800, 3900)
        x = sosfilt(
            butter(int(rng.integers(1, 4)), [low, high], "bandpass", fs=SAMPLE_RATE, output="sos"),
            x,
        )
    if rng.random() < 0.5:  # spectral tilt: y[n] = x[n] - a x[n-1]
        x = lfilter([1.0, -rng.uniform(-0.6, 0.9)], [1.0], x)
    rms = max(float(np.sqrt(np.mean(x**2))), 1e-6)
    if rng.random() < 0.85:
        snr = rng.uniform(5, 40)
        beta = float(rng.choice([0.0, 1.0, 2.0]))
        x = x + coloured_noise(len(x), beta, rng) * rms * 10 ** (-snr / 20)
    gain = 10 ** (rng.uniform(-20, 6) / 20) * 0.25 / rms  # speech RMS about -12 dBFS ± the gain
    return np.clip(x * gain, -1.0, 1.0).astype(np.float32)


# ---- the real voice --------------------------------------------------------------------------
def trim(x: np.ndarray, threshold: float = 0.02) -> np.ndarray:
    """``x`` without the leading and trailing samples quieter than ``threshold`` of its peak
    (10 ms of margin kept on each side)."""
    loud = np.flatnonzero(np.abs(x) > threshold * np.abs(x).max())
    margin = SAMPLE_RATE // 100
    return x[max(loud[0] - margin, 0) : loud[-1] + margin]


def real_recordings() -> tuple[dict[str, np.ndarray], float]:
    """The trimmed recordings of each spoken digit word (keys "0".."9", "oh") and the RMS of
    their background (the first 40 ms of every file)."""
    from rnnkit.tasks.speech_features import read_wav

    root = find_real_dir()
    files = {str(d): root / "digits" / f"{d}.wav" for d in range(10)}
    files["oh"] = root / "letters" / "o.wav"
    raw = {k: read_wav(p) for k, p in files.items()}
    floor = float(np.sqrt(np.mean(np.concatenate([x[:320] for x in raw.values()]) ** 2)))
    return {k: trim(x) for k, x in raw.items()}, floor


def real_set(n: int = 500, seed: int = 0) -> tuple[list[np.ndarray], list[list[int]]]:
    """``n`` digit strings in the real voice, spliced with pauses of 50-400 ms (and 100-500 ms
    before and after), the silences filled with Gaussian noise at the recordings' own level."""
    words, floor = real_recordings()
    rng = np.random.default_rng([seed, 77])
    waves, labels = [], []
    for _ in range(n):
        digits = [int(d) for d in rng.integers(0, 10, size=rng.integers(1, MAX_DIGITS + 1))]
        parts = [rng.uniform(0.1, 0.5)]
        for i, d in enumerate(digits):
            key = "oh" if d == 0 and rng.random() < 0.25 else str(d)
            parts += [words[key], rng.uniform(0.05, 0.4) if i < len(digits) - 1 else None]
        parts[-1] = rng.uniform(0.1, 0.5)
        chunks = [
            p if isinstance(p, np.ndarray) else rng.standard_normal(int(p * SAMPLE_RATE)) * floor
            for p in parts
        ]
        waves.append(np.concatenate(chunks).astype(np.float32))
        labels.append(digits)
    return waves, labels
