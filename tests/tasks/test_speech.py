"""The speech task: the front end against independent references, the synthesis cache, training
through the command line (the loss goes down), predict on a WAV the test synthesises (with the
column picture), eval, and one-line errors for bad WAV files and a missing espeak-ng.

espeak-ng is a system package (``apt-get install espeak-ng``). Where CI is set, its absence
fails these tests (CI installs it); elsewhere they are skipped with that reason.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from matplotlib.image import imread

from rnnkit.cli import main
from rnnkit.errors import UserError
from rnnkit.tasks import speech_data, speech_features, speech_voices
from rnnkit.tasks.speech_features import mel_matrix, num_frames, read_wav

QUIET = ["--train.progress", "false"]

if shutil.which("espeak-ng") is None:
    if os.environ.get("CI"):
        raise RuntimeError("espeak-ng is missing on CI: apt-get install espeak-ng")
    pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)", allow_module_level=True)


# ---- the front end ---------------------------------------------------------------------------
def test_mel_scale_and_matrix_against_the_htk_formula():
    assert speech_features.hz_to_mel(1000.0) == pytest.approx(1000.0, abs=0.1)  # by design
    assert speech_features.mel_to_hz(speech_features.hz_to_mel(3210.0)) == pytest.approx(3210.0)
    n_mels, n_fft, sr = 40, 256, 8000
    M = mel_matrix(n_mels, n_fft, sr).numpy()
    assert M.shape == (40, 129)
    # an independent loop, as The HTK Book writes the filters (mel = 1127 ln(1 + f/700))
    top = 1127.0 * math.log(1 + 4000 / 700)
    centres = [700 * (math.exp(top * i / (n_mels + 1) / 1127.0) - 1) for i in range(n_mels + 2)]
    for m in range(n_mels):
        lo, c, hi = centres[m], centres[m + 1], centres[m + 2]
        for k in range(129):
            f = k * sr / n_fft
            want = (
                (f - lo) / (c - lo) if lo <= f <= c else (hi - f) / (hi - c) if c < f <= hi else 0
            )
            assert M[m, k] == pytest.approx(want, abs=1e-5), (m, k)
    # the filters tile the spectrum: inside the first and last centres they sum to 1
    inside = (np.arange(129) * sr / n_fft > centres[1]) & (
        np.arange(129) * sr / n_fft < centres[-2]
    )
    assert np.allclose(M.sum(0)[inside], 1.0, atol=1e-5)


def test_frame_count_for_25_ms_windows_every_10_ms():
    assert [num_frames(n) for n in (0, 199, 200, 279, 280, 8000)] == [0, 0, 1, 1, 2, 98]
    for n in (200, 1000, 8000, 12345):  # what torch.stft gives without centring
        feats, frames = speech_features.log_mel(torch.randn(n) * 0.1)
        assert feats.shape == (num_frames(n), 1, 40) and int(frames[0]) == num_frames(n)


def test_features_are_normalised_per_utterance_and_zero_in_padding():
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(4000) * 0.3, rng.standard_normal(2400) * 0.001]
    feats, frames = speech_features.featurise(waves)
    assert frames.tolist() == [48, 28]
    for b, n in enumerate(frames.tolist()):
        real = feats[:n, b]
        assert torch.allclose(real.mean(0), torch.zeros(40), atol=1e-4)
        assert torch.allclose(real.std(0, unbiased=False), torch.ones(40), atol=1e-2)
        assert not feats[n:, b].any()
    # gain does not matter after normalisation (well above the silence floor)
    quieter, _ = speech_features.featurise([waves[0] * 0.1])
    assert torch.allclose(quieter[:48, 0], feats[:48, 0], atol=1e-3)


def test_read_wav_resamples_and_mixes_to_mono(tmp_path):
    t = np.arange(44100) / 44100
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    sf.write(tmp_path / "stereo.wav", np.stack([tone, tone], 1), 44100)
    x = read_wav(tmp_path / "stereo.wav")
    assert x.dtype == np.float32 and abs(len(x) - 8000) <= 1
    spectrum = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spectrum) * 8000 / len(x) - 440) < 2  # the tone survives resampling


@pytest.mark.parametrize(
    "name, make, expected",
    [
        ("empty.wav", lambda p: p.write_bytes(b""), "0 bytes"),
        ("noframes.wav", lambda p: sf.write(p, np.zeros((0, 1)), 8000), "no audio frames"),
        ("text.wav", lambda p: p.write_text("not a sound\n"), "not a WAV file"),
        ("long.wav", lambda p: sf.write(p, np.zeros(8000 * 600, np.int16), 8000), "limit is 60"),
        ("click.wav", lambda p: sf.write(p, np.zeros(50), 8000), "shorter than one 25 ms"),
    ],
)
def test_bad_wav_files_are_one_line(tmp_path, name, make, expected):
    path = tmp_path / name
    make(path)
    with pytest.raises(UserError, match=expected) as e:
        read_wav(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_missing_wav(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_wav(tmp_path / "nowhere.wav")


# ---- synthesis -------------------------------------------------------------------------------
def test_held_out_voices_never_train():
    train = {str(v) for v in speech_data.voices("train")}
    held = {str(v) for v in speech_data.voices("held_out")}
    assert train.isdisjoint(held) and len(held) >= 10 and len(train) > 5 * len(held)
    trained_variants = {v.split("+")[1] for v in train if "+" in v}
    assert all(v.split("+")[1] not in trained_variants for v in held if "+" in v)


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed")
def test_the_held_out_flite_voice_is_chosen_and_refused_when_unknown(tmp_path, capsys):
    for name in speech_data.FLITE_VOICES:
        train = {str(v) for v in speech_data.voices("train", held_out_flite=name)}
        held = {str(v) for v in speech_data.voices("held_out", held_out_flite=name)}
        flite = {v for v in train | held if v.startswith("flite:")}
        assert flite == {f"flite:{v}" for v in speech_data.FLITE_VOICES}
        assert f"flite:{name}" in held and f"flite:{name}" not in train
    args = ["train", "speech", "--preset", "tiny", "--data.held_out_flite", "bob"]
    assert main([*args, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "data.held_out_flite" in err and "slt" in err and "'bob'" in err


FESTIVAL = shutil.which("text2wave") is not None
if not FESTIVAL and os.environ.get("CI"):
    raise RuntimeError(
        f"festival is missing on CI: apt-get install {speech_voices.FESTIVAL_PACKAGES}"
    )


@pytest.mark.skipif(not FESTIVAL, reason="festival is not installed")
def test_festival_voices_speak_in_training_only(tmp_path):
    train = {str(v) for v in speech_data.voices("train", festival=True)}
    held = {str(v) for v in speech_data.voices("held_out", festival=True)}
    assert {"festival:ked", "festival:slt_hts"} <= train
    assert not any(v.startswith("festival") for v in held)
    assert not any(v.startswith("festival") for v in map(str, speech_data.voices("train")))
    for name in speech_voices.FESTIVAL_VOICES:
        voice = speech_data.Voice("festival", name)
        one = speech_voices.synthesise(voice, "one", np.random.default_rng(0))
        three = speech_voices.synthesise(voice, "one two three", np.random.default_rng(0))
        assert one.dtype == np.float32 and 0.2 < len(one) / 8000 < len(three) / 8000 < 4
        assert float(np.sqrt(np.mean(three**2))) > 0.01
    pool = speech_data.synthesise_pool(
        "train", 12, 5, tmp_path, 0.25, progress=False, festival_share=0.5
    )
    engines = [pool.voice_names[i].split(":")[0] for i in pool.voice_ids]
    assert 2 <= engines.count("festival") <= 10, engines
    plain = speech_data.synthesise_pool("train", 12, 5, tmp_path, 0.25, progress=False)
    assert not any(n.startswith("festival") for n in plain.voice_names)
    val = speech_data.synthesise_pool("val", 4, 5, tmp_path, 0.25, progress=False,
                                      festival_share=0.5)  # fmt: skip
    assert not any(n.startswith("festival") for n in val.voice_names)


def test_festival_options_are_checked_in_one_line(tmp_path, capsys, monkeypatch):
    args = ["train", "speech", "--preset", "tiny", "--out", str(tmp_path / "r")]
    assert main([*args, "--data.festival_share", "0.9"]) == 2  # with flite's 0.25: above 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "data.festival_share" in err and "at most 1" in err
    bin_dir = tmp_path / "bin"  # espeak-ng and flite, but no festival
    bin_dir.mkdir()
    for tool in ("espeak-ng", "flite"):
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    monkeypatch.setenv("PATH", str(bin_dir))
    assert main([*args, "--data.festival_share", "0.2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "festival is not installed" in err
    assert f"apt-get install {speech_voices.FESTIVAL_PACKAGES}" in err


def test_the_cache_is_reused_without_calling_espeak(tmp_path, monkeypatch):
    first = speech_data.synthesise_pool("train", 4, 3, tmp_path, 0.0, progress=False)
    assert len(first) == 4 and all(1 <= len(y) <= 7 for y in first.labels)

    def no_synthesis(*args, **kwargs):
        raise AssertionError("espeak-ng was called although the pool is cached")

    monkeypatch.setattr(speech_data, "synthesise", no_synthesis)
    again = speech_data.synthesise_pool("train", 4, 3, tmp_path, 0.0, progress=False)
    assert again.labels == first.labels and np.array_equal(again.audio, first.audio)


def test_missing_espeak_is_one_line_with_the_install_command(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng (nor anything else) on the path
    assert main(["train", "speech", "--preset", "tiny", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "espeak-ng is not installed" in err
    assert "apt-get install espeak-ng" in err


def test_real_voice_set_is_fixed():
    waves, labels = speech_data.real_set(5, seed=0)
    again, labels2 = speech_data.real_set(5, seed=0)
    assert labels == labels2 and all(
        np.array_equal(a, b) for a, b in zip(waves, again, strict=True)
    )
    assert all(len(w) > 0.3 * 8000 * len(y) for w, y in zip(waves, labels, strict=True))


# ---- training, predict, eval -----------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("speech")
    out = base / "run"
    code = main(["train", "speech", "--preset", "tiny", "--out", str(out), *QUIET,
                 "--data.cache", str(base / "cache"), "--data.flite", "false"])  # fmt: skip
    assert code == 0
    return out


def test_training_lowers_the_loss(run):
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in records if r["split"] == "train"]
    assert train[-1] < 0.5 * train[0]
    val = [r for r in records if r["split"] == "val"]
    assert val and all(0 <= r["wer"] and 0 <= r["string_error"] <= 1 for r in val)


def test_predict_a_synthesised_wav_with_columns(run, tmp_path, capsys):
    wav = tmp_path / "three.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "three one four"], check=True)
    png = tmp_path / "columns.png"
    assert main(["predict", str(run), str(wav), "--columns", str(png)]) == 0
    lines = capsys.readouterr().out.splitlines()
    path, _, digits = lines[0].partition("\t")
    assert path == str(wav) and set(digits) <= set("0123456789")
    image = imread(png)
    assert image.ndim == 3 and image.shape[0] > 200 and image[..., :3].std() > 0.05
    assert main(["predict", str(run), str(wav), "--beam", "3"]) == 0


def test_predict_refuses_a_bad_wav_in_one_line(run, tmp_path, capsys):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"")
    assert main(["predict", str(run), str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "0 bytes" in err


def test_eval_prints_each_set(run, capsys):
    assert main(["eval", str(run), "--limit", "4", "--beam", "2", "--sets", "espeak,real"]) == 0
    out = capsys.readouterr().out
    assert "espeak    greedy" in out and "real      beam2" in out
    result = json.loads((run / "eval.json").read_text())
    assert set(result["sets"]) == {"espeak", "real"}
    for scores in result["sets"]["real"].values():
        assert scores["utterances"] == 4 and 0 <= scores["string_error"] <= 1
    assert out.count("errors by position: ") == 4  # a line for each set and decoding
    for scores in [*result["sets"]["real"].values(), *result["sets"]["espeak"].values()]:
        where = scores["errors"]["by_position"].values()  # the breakdown adds up to the WER
        digits = sum(w["tokens"] for w in where)
        wrong = sum(w["errors"] for w in where) + scores["errors"]["insertions"]
        assert wrong == round(scores["wer"] * digits)
        counted = sum(c for _, _, c in scores["errors"]["confusions"])  # the 10 most common
        assert counted == wrong or (len(scores["errors"]["confusions"]) == 10 and counted < wrong)


def test_a_failing_engine_is_one_line_naming_the_voice():
    with pytest.raises(UserError, match=r"espeak:nosuchvoice could not say 'one two' \(exit"):
        speech_voices.synthesise(speech_data.Voice("espeak", "nosuchvoice"), "one two",
                                 np.random.default_rng(0))  # fmt: skip


def test_vote_takes_the_string_most_runs_heard_and_ties_to_the_first():
    from rnnkit.tasks.speech_commands import vote

    runs = [["12", "5", "7", "0"], ["13", "5", "8", "1"], ["13", "6", "9", "1"]]
    assert vote(runs) == ["13", "5", "7", "1"]
    assert vote([["4", "44"]]) == ["4", "44"]


def test_eval_votes_with_other_runs(run, capsys, tmp_path):
    args = ["eval", str(run), "--limit", "5", "--sets", "espeak"]
    assert main([*args, "--vote", f"{run},{run}"]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert len(result["vote"]) == 2 and result["vote"][0].endswith("best.safetensors")
    result = result["sets"]["espeak"]
    assert set(result) == {"greedy", "greedy+vote"}  # three copies of one run: the same strings
    assert result["greedy+vote"]["wer"] == result["greedy"]["wer"]
    capsys.readouterr()
    assert main([*args, "--vote", str(tmp_path / "nowhere"), "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "nowhere" in err
    other = tmp_path / "other"  # a run that holds out another flite voice
    assert main(["train", "speech", "--preset", "tiny", "--out", str(other), *QUIET,
                 "--train.max_steps", "2", "--data.cache", str(run.parent / "cache"),
                 "--data.flite", "false", "--data.held_out_flite", "slt"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main([*args, "--vote", str(other), "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "holds out flite's 'slt'" in err


def test_resped_plays_a_tone_faster_and_higher():
    from rnnkit.tasks.speech_commands import resped

    t = np.arange(8000) / 8000.0
    tone = np.sin(2 * np.pi * 500 * t).astype(np.float32)  # one second at 500 Hz
    for speed, hz in ((1.25, 625), (0.8, 400)):
        (y,) = resped([tone], speed)
        assert abs(len(y) - 8000 / speed) <= 1
        spectrum = np.abs(np.fft.rfft(y))
        assert abs(np.argmax(spectrum) * 8000 / len(y) - hz) < 2


def test_tta_speeds_are_checked_in_one_line():
    from rnnkit.tasks.speech_commands import TTA_SPEEDS, tta_speeds

    assert tta_speeds("0.9, 1.1") == [0.9, 1.1] and len(tta_speeds(TTA_SPEEDS)) == 6
    for bad in ("fast", "1.0", "0.9,3", "0.2", ""):
        with pytest.raises(UserError, match="--tta takes comma-separated speed factors"):
            tta_speeds(bad)


def test_tta_keeps_the_string_heard_most_often_over_the_speeds(monkeypatch):
    from rnnkit.tasks import speech_commands as sc

    def by_length(model, waves, beam=0):  # "long" for signals stretched past 8,000 samples
        return ["long" if len(w) > 8000 else "short" for w in waves], [None] * len(waves)

    monkeypatch.setattr(sc, "transcribe", by_length)
    waves = [np.zeros(8000, np.float32), np.zeros(4000, np.float32)]
    assert sc.transcribe_tta(None, waves, 0, [0.9, 0.8])[0] == ["long", "short"]  # 2 of 3
    assert sc.transcribe_tta(None, waves, 0, [0.9])[0] == ["short", "short"]  # a tie: unchanged
    assert sc.transcribe_tta(None, waves, 0, [1.1, 1.2])[0] == ["short", "short"]
    assert sc.transcribe_tta(None, waves, 0, [])[0] == ["short", "short"]


def test_tta_in_eval_and_predict(run, capsys, tmp_path):
    assert main(["eval", str(run), "--limit", "6", "--sets", "espeak,tidigits", "--tta",
                 "0.9,1.1", "--beam", "2"]) == 0  # fmt: skip
    result = json.loads((run / "eval.json").read_text())
    assert result["tta_speeds"] == [0.9, 1.1]
    assert set(result["sets"]["espeak"]) == {"greedy", "beam2", "greedy+tta", "beam2+tta"}
    assert set(result["sets"]["tidigits"]) == {"greedy", "beam2"}  # cepstra: no signal to resample
    wav = tmp_path / "two.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "two nine"], check=True)
    capsys.readouterr()
    assert main(["predict", str(run), str(wav), "--tta"]) == 0
    assert capsys.readouterr().out.startswith(f"{wav}\t")
    assert main(["predict", str(run), str(wav), "--tta", ""]) == 2  # not silently off
    assert "--tta" in capsys.readouterr().err
    assert main(["predict", str(run), str(wav), "--tta", "quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--tta" in err and "'quick'" in err


def test_tidigits_cepstra_become_normalised_log_mel_frames(tmp_path):
    from rnnkit.tasks.speech_tidigits import cepstra_to_log_mel, read_sphinx_mfc, tidigits_set

    feats, refs = tidigits_set()
    assert len(feats) == len(refs) == 31 and refs[0] == "111" and refs[3] == "350"
    assert all(f.shape[1] == 40 and torch.allclose(f.mean(0), torch.zeros(40), atol=1e-4)
               for f in feats)  # fmt: skip
    # a flat spectrum (c0 alone) stays flat across the channels
    flat = np.zeros((5, 13))
    flat[:, 0] = np.arange(5)
    assert torch.allclose(cepstra_to_log_mel(flat)[:, 0], cepstra_to_log_mel(flat)[:, 39])
    bad = tmp_path / "bad.mfc"
    bad.write_bytes(np.array([7], ">i4").tobytes() + np.zeros(7, ">f4").tobytes())
    with pytest.raises(UserError, match="not a Sphinx MFCC file"):
        read_sphinx_mfc(bad)


def test_isolated_words_are_spliced_with_pauses():
    voice = speech_data.Voice("espeak", "en-us")
    x = speech_data.isolated_words(voice, [1, 2, 3], np.random.default_rng(0))
    silent = np.flatnonzero(x == 0)
    runs = np.split(silent, np.flatnonzero(np.diff(silent) != 1) + 1)
    pauses = [len(r) for r in runs if len(r) >= 0.05 * 8000]  # two pauses of 50-400 ms
    assert len(pauses) >= 2 and all(len(r) <= 0.45 * 8000 for r in runs)


def test_spec_augment_masks_bands_and_short_spans_within_each_utterance():
    rng = np.random.default_rng(0)
    feats = torch.randn(50, 6, 40) + 5.0  # no value is 0 before masking
    frames = torch.tensor([50, 40, 30, 20, 12, 3])
    feats[40:, 1] = 0.0  # padding beyond utterance 1's frames
    out = speech_features.spec_augment(
        feats, frames, rng, bands=2, max_band=8, spans=2, max_span=10
    )
    assert not torch.equal(out, feats) and torch.equal(
        feats[:40, 1] != 0, torch.ones(40, 40, dtype=torch.bool)
    )
    for b in range(6):
        n = int(frames[b])
        masked_frames = (out[:n, b] == 0).all(1)  # a span masks every channel of a frame
        open_rows = out[:n, b][~masked_frames]
        masked_channels = (open_rows == 0).all(0) if len(open_rows) else torch.zeros(40).bool()
        assert int(masked_channels.sum()) <= 16 and int(masked_frames.sum()) <= min(20, n)
        kept = ~masked_channels[None, :] & ~masked_frames[:, None]
        torch.testing.assert_close(out[:n, b][kept], feats[:n, b][kept])  # the rest untouched
    again = speech_features.spec_augment(feats, frames, np.random.default_rng(0))
    assert torch.equal(again, out)  # seeded


def test_speed_perturbation_follows_its_range():
    x = np.sin(np.arange(8000) / 8000 * 2 * np.pi * 200).astype(np.float32)  # 1 s
    lengths = [len(speech_data.augment(x, np.random.default_rng(s), 1.2, 1.25)) for s in range(5)]
    # 1 s at 1.2-1.25x lasts 0.8-0.83 s, plus 0-0.4 s of silence on each side
    assert all(0.8 * 8000 - 2 <= n <= (0.834 + 0.8) * 8000 for n in lengths), lengths
    slow = [len(speech_data.augment(x, np.random.default_rng(s), 0.8, 0.8)) for s in range(5)]
    assert all(n >= 1.25 * 8000 - 2 for n in slow), slow


def test_vtlp_warp_and_the_warped_filters():
    """φ: α f up to the knee, continuous there, Nyquist fixed, increasing; the filters of a warp
    α > 1 sit at lower bins (a longer vocal tract's formants), α = 1 is the plain matrix, and
    features with warps 1 are the unwarped features."""
    f = np.linspace(0.0, 4000.0, 801)
    for alpha in (0.9, 0.95, 1.05, 1.1):
        phi = speech_features.vtlp(f, alpha)
        knee = speech_features.VTLP_HIGH * min(alpha, 1.0) / alpha
        below = f <= knee
        assert np.allclose(phi[below], alpha * f[below])
        assert phi[-1] == pytest.approx(4000.0) and np.all(np.diff(phi) > 0)
        assert speech_features.vtlp(knee + 1e-9, alpha) == pytest.approx(alpha * knee, abs=1e-5)
    assert torch.equal(mel_matrix(warp=1.0), mel_matrix())
    peaks = mel_matrix().argmax(1).numpy()
    assert (mel_matrix(warp=1.1).argmax(1).numpy() <= peaks).all()
    assert (mel_matrix(warp=1.1).argmax(1).numpy() < peaks).sum() > 20
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(4000) * 0.3, rng.standard_normal(2400) * 0.3]
    plain, _ = speech_features.featurise(waves)
    same, _ = speech_features.featurise(waves, [1.0, 1.0])
    warped, _ = speech_features.featurise(waves, [1.1, 0.9])
    torch.testing.assert_close(same, plain)
    assert (warped - plain).abs().max() > 0.1


def test_vtlp_is_drawn_only_when_asked_and_refused_out_of_range(tmp_path, capsys):
    args = ["train", "speech", "--preset", "tiny", "--data.vtlp", "0.5"]
    assert main([*args, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "data.vtlp" in err


def test_training_batches_warp_with_vtlp(run):
    """``--data.vtlp`` warps each training utterance's filters: the same utterances (the warps
    are drawn after the waves' augmentation), other features."""
    from rnnkit.tasks.speech import SpeechTask, tiny

    cfg = tiny()
    cfg.data.cache, cfg.data.flite = str(run.parent / "cache"), False
    plain = SpeechTask(cfg).train_batch(0)
    cfg.data.vtlp = 0.1
    warped = SpeechTask(cfg).train_batch(0)
    assert torch.equal(plain[1], warped[1]) and plain[2] == warped[2]
    assert (plain[0] - warped[0]).abs().max() > 0.1


def test_training_batches_mask_bands_as_wide_as_asked(run, capsys):
    """``--data.spec_max_band W``: SpecAugment's bands of masked mel channels are 0..W wide in
    the training batches (W = 0: no band); out of range is a one-line error."""
    from rnnkit.tasks.speech import SpeechTask, tiny

    cfg = tiny()
    cfg.data.cache, cfg.data.flite, cfg.data.spec_augment = str(run.parent / "cache"), False, True
    widest = {}
    for w in (0, 20):
        cfg.data.spec_max_band = w
        task = SpeechTask(cfg)
        x, frames, _ = task.train_batch(0)
        widest[w] = 0
        for b in range(x.shape[1]):
            rows = x[: frames[b], b]
            rows = rows[~(rows == 0).all(1)]  # frames not in a masked span
            widest[w] = max(widest[w], int((rows == 0).all(0).sum()))
    assert widest[0] == 0 and 8 < widest[20] <= 40  # two bands of up to 20, here wider than 8
    assert main(["train", "speech", "--preset", "tiny", "--data.spec_max_band", "21"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "data.spec_max_band" in err
