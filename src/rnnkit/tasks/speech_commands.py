"""What the speech task adds to the command line: loading a run back, ``rnnkit predict RUN
file.wav ...`` (the digits heard, optionally the column picture) and ``rnnkit eval RUN`` (word
and character error rates on each held-out set, greedy and with ``--beam K``, with
``--vote RUN,...`` the string most of several runs hear: ``vote``, and with ``--tta`` the string
one run hears most often in the utterance played at several speeds: ``transcribe_tta``).

Error rates: WER is the edit distance between the digit sequences (one spoken digit a word)
over the reference digits, summed over a set; CER is jiwer's character error rate of the digit
strings, which for digit strings is the same number (one character a word) and is printed
because the issue asks for both; the string error rate is the share of utterances with any
error.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rnnkit.errors import UserError
from rnnkit.tasks.runs import load_task_run
from rnnkit.tasks.speech_model import BLANK, SpeechConfig, SpeechModel, digits_of
from rnnkit.train.restore import LoadedModel, model_loader


@dataclass
class LoadedSpeech(LoadedModel):
    model: SpeechModel
    vocab: None  # the ten digits and the blank are fixed: no vocabulary is saved
    cfg: SpeechConfig


def build_model(cfg: SpeechConfig, _) -> SpeechModel:
    return SpeechModel(cfg.model)


# a speech run's checkpoint (``TaskSpec.load``): the model in eval mode and its config
load_speech = model_loader(LoadedSpeech, SpeechConfig, build_model)


def load_speech_run(run: str) -> LoadedSpeech:
    return load_task_run(run, load_speech, "a speech run")


@torch.no_grad()
def transcribe(model, inputs, beam: int = 0, batch_size: int = 32):
    """The digit strings heard (greedy, or prefix beam search of width ``beam``), and per input
    its features (T, 40) and log-probabilities (T', 11). ``inputs``: 8 kHz signals (numpy
    arrays), or feature tensors (T, 40) already made (the TIDIGITS cepstra)."""
    from rnnkit.ctc import greedy_decode
    from rnnkit.tasks.speech_features import featurise

    hyps, details = [], []
    for s in range(0, len(inputs), batch_size):
        chunk = inputs[s : s + batch_size]
        if isinstance(chunk[0], torch.Tensor):
            frames = torch.tensor([len(f) for f in chunk])
            x = torch.nn.utils.rnn.pad_sequence(chunk)  # (T, B, 40)
        else:
            x, frames = featurise(chunk)
        log_probs, steps = model(x, frames)
        if beam:
            from rnnkit.ctc import beam_search

            found = beam_search(log_probs, steps, beam_width=beam, blank=BLANK)
            labels = [best[0][0] for best in found]
        else:
            labels = greedy_decode(log_probs, steps, blank=BLANK)
        hyps += [digits_of(y) for y in labels]
        for b in range(len(labels)):
            details.append((x[: frames[b], b], log_probs[: steps[b], b]))
    return hyps, details


TTA_SPEEDS = "0.85,0.9,0.95,1.05,1.1,1.15"  # --tta's default: within training's 0.8-1.25


def tta_speeds(text: str, flag: str = "--tta") -> list[float]:
    """The speed factors of a ``--tta`` value ("0.9,1.1"), each in [0.5, 2] and not 1."""
    speeds = []
    for part in text.split(","):
        try:
            speed = float(part)
        except ValueError:
            speed = float("nan")
        if not 0.5 <= speed <= 2.0 or round(100 * speed) == 100:
            raise UserError(
                f"{flag} takes comma-separated speed factors in [0.5, 2] other than 1 "
                f"(e.g. {TTA_SPEEDS}), got {part.strip()!r}"
            )
        speeds.append(speed)
    return speeds


def resped(waves: list, speed: float) -> list:
    """8 kHz signals played ``speed`` times as fast, tempo and pitch together (the training's
    speed perturbation, ``speech_data.augment``): resampled by 100 / round(100 · speed)."""
    from scipy.signal import resample_poly

    return [resample_poly(w, 100, round(100 * speed)).astype(np.float32) for w in waves]


def transcribe_tta(model, waves: list, beam: int = 0, speeds=()) -> tuple[list[str], list]:
    """Test-time augmentation: each signal transcribed as it is and at each of ``speeds``
    (``resped``), and per utterance the string heard most often (``vote``, a tie to the
    unchanged signal). The details are the unchanged signal's (``transcribe``)."""
    hyps, details = transcribe(model, waves, beam)
    if speeds:
        hyps = vote([hyps, *(transcribe(model, resped(waves, s), beam)[0] for s in speeds)])
    return hyps, details


def error_rates(refs: list[str], hyps: list[str]) -> dict[str, float]:
    """WER, CER and string error rate of digit strings (see the module's docstring)."""
    from rnnkit.ctc import cer, wer

    return {
        "wer": wer([" ".join(r) for r in refs], [" ".join(h) for h in hyps]),
        "cer": cer(refs, hyps),
        "string_error": sum(r != h for r, h in zip(refs, hyps, strict=True)) / len(refs),
        "utterances": len(refs),
    }


def breakdown_line(b: dict, shown: int = 5) -> str:
    """``rnnkit.ctc.error_breakdown``'s figures in one line: the digit error rate by position in
    the string and the most common confusions (∅: nothing, a deletion or an insertion)."""
    where = ", ".join(
        f"{k} {100 * v['rate']:.1f}%" for k, v in b["by_position"].items() if v["tokens"]
    )
    most = ", ".join(f"{r or '∅'}→{h or '∅'} ×{c}" for r, h, c in b["confusions"][:shown])
    return (
        f"    errors by position: {where}; insertions {b['insertions']}; most common: {most or '-'}"
    )


def vote(candidates: list[list[str]]) -> list[str]:
    """Per utterance, the string most of the runs heard (``candidates``: one list per run, in
    the same order); a tie goes to the earliest run among the most heard. A ROVER-like vote on
    whole strings: the CTC posteriors of separately trained models peak at different frames,
    so averaging them frame by frame loses labels (measured: docs/speech.md)."""
    out = []
    for heard in zip(*candidates, strict=True):
        counts = Counter(heard)
        most = max(counts.values())
        out.append(next(h for h in heard if counts[h] == most))
    return out


def predict_one(loaded: LoadedSpeech, text: str) -> str:
    """``TaskSpec.predict``: the digits heard in the WAV file named ``text`` (greedy)."""
    from rnnkit.tasks.speech_features import read_wav

    return transcribe(loaded.model, [read_wav(text)])[0][0]


def cmd_predict(argv: list[str]) -> int:
    from rnnkit.plots import check_writable
    from rnnkit.tasks.speech_features import read_wav

    p = argparse.ArgumentParser(prog="rnnkit predict", description="The digits spoken in WAVs.")
    p.add_argument("run", help="a speech run directory or a .safetensors checkpoint")
    p.add_argument("wavs", nargs="+", help="WAV files (any sample rate, mono or stereo)")
    p.add_argument("--beam", type=int, default=0, help="prefix beam search of this width")
    p.add_argument(
        "--columns",
        default=None,
        metavar="PNG",
        help="draw the spectrogram, frame posteriors and alignment to this PNG",
    )
    add_tta_option(p)
    a = p.parse_args(argv)
    if a.beam < 0:
        raise UserError(f"--beam must be >= 0, got {a.beam}")
    speeds = [] if a.tta is None else tta_speeds(a.tta)
    if a.columns:
        check_writable(a.columns, "--columns")
    waves = [read_wav(w) for w in a.wavs]  # every file checked before any decoding
    loaded = load_speech_run(a.run)
    hyps, details = transcribe_tta(loaded.model, waves, a.beam, speeds)
    for i, (wav, hyp) in enumerate(zip(a.wavs, hyps, strict=True)):
        print(f"{wav}\t{hyp}")
        if a.columns:
            from rnnkit.tasks.speech_plots import plot_columns

            path = Path(a.columns)
            if len(a.wavs) > 1:
                path = path.with_name(f"{path.stem}_{i + 1}{path.suffix}")
            feats, log_probs = details[i]
            print(plot_columns(feats, log_probs, hyp, path, title=f"{Path(wav).name}: {hyp!r}"))
    return 0


def add_tta_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tta",
        nargs="?",
        const=TTA_SPEEDS,
        default=None,
        metavar="SPEEDS",
        help="test-time augmentation: also hear each utterance played at these speeds and keep "
        f"the string heard most often (alone: {TTA_SPEEDS})",
    )


SETS = {
    "espeak": "held-out espeak-ng variants",
    "flite": "the held-out flite voice (data.held_out_flite)",
    "real": "real voice (Asterisk prompts, spliced)",
    "tidigits": "31 TIDIGITS utterances from Sphinx MFCCs (approximate front end)",
}
TEST_FLITE_SHARE = 0.25  # the synthetic test set is one for every run, with or without flite


def held_out_sets(cfg, which: list[str], limit: int = 0) -> dict[str, tuple[list, list[str]]]:
    """The fixed test sets, each (inputs, digit strings): "espeak" and "flite" (the voices held
    out of training, from one synthesised test pool of ``data.test_size`` utterances, a quarter
    of them flite's), "real" (``data.real_size`` strings spliced from the real voice) and
    "tidigits" (features from cepstra: ``speech_tidigits``)."""
    from rnnkit.tasks.speech_data import real_set, synthesise_pool

    d, out = cfg.data, {}
    if {"espeak", "flite"} & set(which):
        pool = synthesise_pool(
            "test",
            d.test_size,
            d.seed,
            d.cache_dir(),
            TEST_FLITE_SHARE,
            held_out_flite=d.held_out_flite,
        )
        for engine in ("espeak", "flite"):
            rows = [
                i
                for i in range(len(pool))
                if pool.voice_names[pool.voice_ids[i]].startswith(engine)
            ]
            rows = rows[: limit or len(rows)]
            if engine in which and rows:
                out[engine] = (
                    [pool.wave(i) for i in rows],
                    ["".join(map(str, pool.labels[i])) for i in rows],
                )
    if "real" in which:
        waves, labels = real_set(d.real_size, seed=0)
        n = min(limit or len(waves), len(waves))
        out["real"] = (waves[:n], ["".join(map(str, y)) for y in labels[:n]])
    if "tidigits" in which:
        from rnnkit.tasks.speech_tidigits import tidigits_set

        feats, refs = tidigits_set()
        out["tidigits"] = (feats[: limit or len(feats)], refs[: limit or len(refs)])
    return out


def cmd_eval(argv: list[str]) -> int:
    from rnnkit.ctc import error_breakdown
    from rnnkit.files import atomic_write
    from rnnkit.tasks.eval_files import add_out_options, eval_output

    p = argparse.ArgumentParser(prog="rnnkit eval", description="WER of a speech run.")
    p.add_argument("run", help="a speech run directory or a .safetensors checkpoint")
    p.add_argument("--beam", type=int, default=0, help="also decode with a beam of width K")
    p.add_argument(
        "--sets",
        default="espeak,flite,real",
        help="comma-separated, of: " + "; ".join(f"{k} ({v})" for k, v in SETS.items()),
    )
    p.add_argument("--limit", type=int, default=0, help="only the first N of each set (0: all)")
    p.add_argument(
        "--vote",
        default="",
        metavar="RUN,RUN",
        help="other speech runs: also score the string most of the runs (this one first) "
        "hear, a tie to the earliest (rows 'greedy+vote', ...)",
    )
    add_tta_option(p)
    add_out_options(p, None, "eval")
    p.add_argument("--show", type=int, default=3, help="print this many errors per set")
    a = p.parse_args(argv)
    which = [s.strip() for s in a.sets.split(",") if s.strip()]
    unknown = [s for s in which if s not in SETS]
    if unknown or not which:
        raise UserError(f"--sets takes some of {', '.join(SETS)}, got {a.sets!r}")
    for flag, value in (("--beam", a.beam), ("--limit", a.limit), ("--show", a.show)):
        if value < 0:
            raise UserError(f"{flag} must be >= 0, got {value}")
    speeds = [] if a.tta is None else tta_speeds(a.tta)
    loaded = load_speech_run(a.run)
    names = [v.strip() for v in a.vote.split(",") if v.strip()]
    voters = [load_speech_run(v) for v in names]
    held = loaded.cfg.data.held_out_flite
    for name, voter in zip(names, voters, strict=True):
        if voter.cfg.data.held_out_flite != held:  # it trained on a voice this run holds out
            raise UserError(
                f"--vote: {name} holds out flite's {voter.cfg.data.held_out_flite!r}, "
                f"{a.run} holds out {held!r}: a vote needs runs that held out the same voice"
            )
    run = Path(a.run)
    out = eval_output(run, a.out, None, a.force)
    results: dict = {"checkpoint": str(loaded.path), "sets": {}}
    if voters:
        results["vote"] = [str(v.path) for v in voters]
    if speeds:
        results["tta_speeds"] = speeds
    for name, (waves, refs) in held_out_sets(loaded.cfg, which, a.limit).items():
        results["sets"][name] = {}
        methods = [("greedy", 0)] + ([(f"beam{a.beam}", a.beam)] if a.beam else [])
        plain = list(methods)
        methods += [(f"{m}+vote", b) for m, b in plain if voters]
        if not isinstance(waves[0], torch.Tensor):  # signals, not cepstra: they can be resped
            methods += [(f"{m}+tta", b) for m, b in plain if speeds]
        for method, beam in methods:
            start = time.perf_counter()
            tta = speeds if method.endswith("+tta") else ()
            hyps, _ = transcribe_tta(loaded.model, waves, beam, tta)
            if method.endswith("+vote"):
                others = [transcribe(v.model, waves, beam)[0] for v in voters]
                hyps = vote([hyps, *others])
            scores = error_rates(refs, hyps)
            seconds = time.perf_counter() - start
            audio = sum(len(w) / (100 if isinstance(w, torch.Tensor) else 8000) for w in waves)
            scores["seconds"] = round(seconds, 2)
            scores["audio_seconds"] = round(audio, 1)
            scores["ms_per_audio_second"] = round(1000 * seconds / audio, 2)
            results["sets"][name][method] = scores
            print(
                f"{name:9} {method:12} WER {100 * scores['wer']:.2f}%  CER "
                f"{100 * scores['cer']:.2f}%  string errors {100 * scores['string_error']:.1f}%"
                f"  ({len(refs)} utterances; {scores['ms_per_audio_second']:.1f} ms per "
                "second of audio: front end, model, decoding)"
            )
            scores["errors"] = error_breakdown(refs, hyps)
            print(breakdown_line(scores["errors"]))
            wrong = [(r, h) for r, h in zip(refs, hyps, strict=True) if r != h]
            for r, h in wrong[: a.show]:
                print(f"    heard {h!r} for {r!r}")
    text = json.dumps(results, indent=2) + "\n"
    atomic_write(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    print(f"results: {out}")
    return 0


def hooks() -> dict:
    return {
        "load": load_speech,
        "predict": predict_one,
        "run_commands": {
            "predict": (cmd_predict, "the digits spoken in WAV files (--columns: the picture)"),
            "eval": (cmd_eval, "WER/CER of a speech run on held-out voices and the real voice"),
        },
    }
