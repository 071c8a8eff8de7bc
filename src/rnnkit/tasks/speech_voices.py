"""The voices that speak the digit strings, and the engines behind them.

Synthesis (``synthesise``) calls the ``espeak-ng`` binary (``--stdout``, 22,050 Hz), ``flite``
(16 kHz; ``kal`` 8 kHz) or festival's ``text2wave`` (16 kHz; ``slt_hts`` 32 kHz) on the words of
a string of 1-7 digits (``spoken``: 0 said "zero" or, a quarter of the time, "oh"), at a random
speed, pitch and word gap (espeak-ng), duration stretch and f0 (flite) or duration stretch
(festival's diphone voice; the HTS voice ignores it), and resamples the result to 8 kHz (the
telephone band).

Voices (``voices(split)``): every English espeak-ng voice (``espeak-ng --voices=en``, the eSpeak
voices; the MBROLA ones need a package that is not installed) with every variant (``espeak-ng
--voices=variant``: m1..m8, f1..f5, klatt, whisper, ...), flite's voices, and when asked two of
festival's (``ked``, a US male diphone voice, and ``slt_hts``, an HTS voice of the speaker of
flite's ``slt``), for training only. A fixed, hashed ~15% of the espeak variants and one flite
voice (``awb``, or ``--data.held_out_flite``) are held out: they speak only the held-out sets.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnkit.errors import UserError
from rnnkit.tasks.speech_features import resample

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MAX_DIGITS = 7
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
# festival's voices (Debian: festival festvox-kdlpc16k festvox-us-slt-hts), trained only: the
# name used here -> festival's voice function
FESTIVAL_VOICES = {"ked": "ked_diphone", "slt_hts": "cmu_us_slt_arctic_hts"}
FESTIVAL_PACKAGES = "festival festvox-kdlpc16k festvox-us-slt-hts"
# the default held-out flite voice; --data.held_out_flite chooses another. Not slt: it is
# flite's only female voice, and training without it tripled the error on the (female) real voice
HELD_OUT_FLITE = "awb"
HELD_OUT_PERCENT = 15  # of the espeak variants, by a hash of the name


def require(binary: str, packages: str = "") -> str:
    path = shutil.which(binary)
    if path is None:
        raise UserError(
            f"{binary} is not installed (needed to synthesise the training speech): "
            f"apt-get install {packages or binary}"
        )
    return path


def require_festival() -> None:
    """text2wave and both festival voices, or one line saying what to install."""
    listed = subprocess.run(
        [require("festival", FESTIVAL_PACKAGES), "--pipe"],
        input="(print (voice.list))",
        capture_output=True,
        text=True,
    ).stdout
    missing = [v for v in FESTIVAL_VOICES.values() if v not in listed]
    if missing or shutil.which("text2wave") is None:
        raise UserError(
            f"festival's voices {', '.join(missing) or 'and text2wave'} are missing (needed "
            f"by option 'data.festival_share'): apt-get install {FESTIVAL_PACKAGES}"
        )


@dataclass(frozen=True)
class Voice:
    engine: str  # "espeak", "flite" or "festival"
    name: str  # espeak: "en-us+f3"; flite: "slt"; festival: "ked"

    def __str__(self) -> str:
        return f"{self.engine}:{self.name}"


def _listing(flag: str) -> list[list[str]]:
    out = subprocess.run(
        [require("espeak-ng"), f"--voices={flag}"], capture_output=True, text=True, check=True
    ).stdout
    return [line.split() for line in out.splitlines()[1:] if line.strip()]


def espeak_voices() -> tuple[list[str], list[str]]:
    """(English eSpeak voices by language name, variant names), as this espeak-ng lists them."""
    bases = sorted({row[1] for row in _listing("en") if row[4].startswith("gmw/")})
    variants = sorted({row[4].split("/", 1)[1] for row in _listing("variant")})
    return bases, variants


def held_out_variant(name: str) -> bool:
    digest = hashlib.blake2b(f"speech:{name}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") % 100 < HELD_OUT_PERCENT


def voices(
    split: str, flite: bool = True, held_out_flite: str = HELD_OUT_FLITE, festival: bool = False
) -> list[Voice]:
    """The voices of a split: "train" or "held_out" (variants and the flite voice
    ``held_out_flite``, never trained). ``festival``: festival's voices in "train"."""
    bases, variants = espeak_voices()
    keep = [v for v in variants if held_out_variant(v) == (split == "held_out")]
    out = [Voice("espeak", b) for b in bases] if split == "train" else []  # plain base voices
    out += [Voice("espeak", f"{b}+{v}") for b in bases for v in keep]
    if flite and shutil.which("flite"):
        names = [v for v in FLITE_VOICES if (v == held_out_flite) == (split == "held_out")]
        out += [Voice("flite", v) for v in names]
    if festival and split == "train":
        require_festival()
        out += [Voice("festival", v) for v in FESTIVAL_VOICES]
    return out


def spoken(digits: list[int], rng: np.random.Generator) -> str:
    """The words of a digit string: 0 is "oh" a quarter of the time; a comma now and then."""
    words = [("oh" if d == 0 and rng.random() < 0.25 else WORDS[d]) for d in digits]
    return " ".join(
        w + ("," if rng.random() < 0.1 and i < len(words) - 1 else "") for i, w in enumerate(words)
    )


def _speak(voice: Voice, text: str, cmd: list[str], out: Path | None = None, stdin: str = ""):
    """(samples, rate) of ``cmd``'s WAV (its standard output, or the file ``out``); a failing
    engine or an unreadable result is one line naming the voice and the text."""
    import soundfile as sf

    done = subprocess.run(cmd, input=stdin.encode(), capture_output=True)
    try:
        if done.returncode:
            raise RuntimeError(f"exit status {done.returncode}")
        return sf.read(io.BytesIO(done.stdout) if out is None else str(out), dtype="float32")
    except (RuntimeError, OSError, sf.LibsndfileError) as e:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        why = " ".join(str(e).split()) + (f": {said[-1]}" if said else "")
        raise UserError(f"{voice} could not say {text!r} ({why})") from None


def synthesise(voice: Voice, text: str, rng: np.random.Generator) -> np.ndarray:
    """``text`` spoken by ``voice`` at a random speed and pitch: 8 kHz float32 samples."""
    if voice.engine == "espeak":
        speed, pitch, gap = rng.integers(110, 221), rng.integers(15, 86), rng.integers(0, 8)
        cmd = [
            require("espeak-ng"),
            "-v",
            voice.name,
            "-s",
            str(speed),
            "-p",
            str(pitch),
            "-g",
            str(gap),
            "--stdout",
            text,
        ]
        data, rate = _speak(voice, text, cmd)
    elif voice.engine == "festival":
        stretch = rng.uniform(0.8, 1.35)  # the HTS voice ignores it
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.wav"
            cmd = [
                require("text2wave", FESTIVAL_PACKAGES),
                "-eval",
                f"(voice_{FESTIVAL_VOICES[voice.name]})",
                "-eval",
                f"(Parameter.set 'Duration_Stretch {stretch:.3f})",
                "-o",
                str(out),
            ]
            data, rate = _speak(voice, text, cmd, out, stdin=text)
    else:
        stretch, f0 = rng.uniform(0.8, 1.35), rng.uniform(90, 190)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.wav"
            cmd = [
                require("flite"),
                "-voice",
                voice.name,
                "--setf",
                f"duration_stretch={stretch:.3f}",
                "--setf",
                f"int_f0_target_mean={f0:.1f}",
                "-t",
                text,
                "-o",
                str(out),
            ]
            data, rate = _speak(voice, text, cmd, out)
    if data.ndim == 2:
        data = data.mean(axis=1)
    return resample(data, rate)
