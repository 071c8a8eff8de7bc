"""The speech front end: any WAV file -> 8 kHz mono samples -> 40 log-mel filterbank energies
every 10 ms, normalised per utterance.

Reading (``read_wav``): any sample rate and channel count soundfile reads; channels are
averaged to mono, and the samples are resampled to ``SAMPLE_RATE`` (8 kHz, the telephone band
the task is trained in) with ``scipy.signal.resample_poly`` (a polyphase FIR low-pass, up/down
by the rates' ratio over their greatest common divisor). Files longer than ``MAX_SECONDS`` are
refused: a digit string of up to 7 digits lasts a few seconds, and the bidirectional model holds
the whole utterance in memory.

Features (``log_mel``), HTK's recipe (Young et al., *The HTK Book*, 2006, ch. 5):

    x'[n] = x[n] - 0.97 x[n-1]                                  (pre-emphasis)
    X_t[k] = Σ_n w[n] x'[t·hop + n] e^{-2πikn/N}                (torch.stft, Hamming w of 25 ms,
                                                                  hop 10 ms, N = 256, no centring)
    E_t[m] = Σ_k M[m, k] |X_t[k]|²                              (the mel matrix below)
    F_t[m] = log(E_t[m] + ε),  ε = 1e-8 (silence floor)

``mel_matrix`` builds M on the HTK mel scale, mel(f) = 2595 log10(1 + f/700): ``n_mels + 2``
points equally spaced in mel between ``fmin`` and ``fmax`` give the edges and centres of
triangular filters, evaluated at the FFT bin frequencies f_k = k·sr/N (the construction of
librosa's ``mel(htk=True, norm=None)``):

    M[m, k] = max(0, min((f_k - c_{m-1}) / (c_m - c_{m-1}), (c_{m+1} - f_k) / (c_{m+1} - c_m)))

Vocal tract length perturbation (``warps``, training only; Jaitly & Hinton 2013, "Vocal tract
length perturbation (VTLP) improves speech recognition"): the filters are evaluated at warped
bin frequencies, the piecewise-linear warp (``vtlp``) with factor α near 1,

    φ(f) = α f                                          for f ≤ f_0 = F_hi min(α, 1) / α
    φ(f) = F_nyq - (F_nyq - F_hi min(α, 1)) (F_nyq - f) / (F_nyq - f_0)    above it

(continuous at f_0, φ(F_nyq) = F_nyq; F_hi = 3.4 kHz), so a formant at f moves as if the vocal
tract were 1/α as long, independently of the speaking rate (speed perturbation moves both).

A signal of n samples gives 1 + ⌊(n - W)/hop⌋ frames (W = 200 samples at 8 kHz); fewer than W
samples give none. Per-utterance normalisation: every filterbank channel is shifted and scaled
to mean 0 and standard deviation 1 over the utterance's frames (cepstral mean and variance
normalisation, applied to log-mel energies), which removes the channel's gain and most of its
spectral tilt.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rnnkit.errors import UserError

SAMPLE_RATE = 8000  # Hz: everything is resampled to the telephone band
N_MELS = 40
WINDOW = 200  # samples: 25 ms at 8 kHz
HOP = 80  # samples: 10 ms at 8 kHz
N_FFT = 256
PREEMPHASIS = 0.97
FLOOR = 1e-8
VTLP_HIGH = 3400.0  # Hz: F_hi, where the warp's second, pinning segment begins
MAX_SECONDS = 60.0  # longest WAV ``read_wav`` accepts


def hz_to_mel(f):
    """HTK's mel scale: 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def vtlp(f, alpha: float, high: float = VTLP_HIGH, nyquist: float = SAMPLE_RATE / 2):
    """The VTLP warp φ(f) of frequencies ``f`` (Hz) by factor ``alpha`` (see above)."""
    f = np.asarray(f, dtype=np.float64)
    knee = high * min(alpha, 1.0) / alpha
    upper = nyquist - (nyquist - high * min(alpha, 1.0)) * (nyquist - f) / (nyquist - knee)
    return np.where(f <= knee, alpha * f, upper)


def mel_matrix(
    n_mels: int = N_MELS,
    n_fft: int = N_FFT,
    sample_rate: int = SAMPLE_RATE,
    fmin: float = 0.0,
    fmax: float | None = None,
    warp: float = 1.0,
) -> Tensor:
    """Triangular filters on the HTK mel scale, (n_mels, n_fft // 2 + 1) float32 (see above);
    ``warp`` α ≠ 1 evaluates them at the bins' VTLP-warped frequencies φ(f_k)."""
    fmax = sample_rate / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= sample_rate/2, got {fmin}, {fmax}")
    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    if warp != 1.0:
        bins = vtlp(bins, warp, nyquist=sample_rate / 2)
    c = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    rising = (bins[None, :] - c[:-2, None]) / (c[1:-1] - c[:-2])[:, None]
    falling = (c[2:, None] - bins[None, :]) / (c[2:] - c[1:-1])[:, None]
    return torch.as_tensor(np.maximum(0.0, np.minimum(rising, falling)), dtype=torch.float32)


def num_frames(samples: int) -> int:
    """Frames of a signal of ``samples`` samples: 1 + (n - W) // hop, 0 if shorter than W."""
    return 0 if samples < WINDOW else 1 + (samples - WINDOW) // HOP


_MEL: dict[torch.device, Tensor] = {}


def log_mel(
    waves: Tensor, lengths: Tensor | None = None, warps: list[float] | None = None
) -> tuple[Tensor, Tensor]:
    """Normalised log-mel features of a batch of 8 kHz signals.

    Args:
        waves: (B, N) float samples (padding after each signal's end), or one (N,) signal.
        lengths: (B,) samples in each signal; None: all N.
        warps: B VTLP factors (training's augmentation), one per signal; None: no warp.

    Returns:
        features (T, B, 40), time-major, zero beyond each utterance's frames, and frames (B,)
        int64 (``num_frames`` of each length).
    """
    if waves.dim() == 1:
        waves = waves.unsqueeze(0)
    B, N = waves.shape
    if lengths is None:
        lengths = torch.full((B,), N, dtype=torch.long)
    frames = torch.tensor([num_frames(int(n)) for n in lengths], dtype=torch.long)
    if N < WINDOW:
        return waves.new_zeros(0, B, N_MELS), frames
    x = torch.cat([waves[:, :1], waves[:, 1:] - PREEMPHASIS * waves[:, :-1]], dim=1)
    window = torch.hamming_window(WINDOW, periodic=False, dtype=x.dtype, device=x.device)
    # torch.stft centres the W-sample window in each N-sample frame: pad (N - W)/2 on each
    # side so that frame t windows exactly the samples [t·hop, t·hop + W)
    side = (N_FFT - WINDOW) // 2
    x = torch.nn.functional.pad(x, (side, side))
    spec = torch.stft(x, N_FFT, HOP, WINDOW, window, center=False, return_complex=True)
    spec = spec[..., : int(frames.max())]  # (B, F, T)
    if warps is not None:  # a warped filter bank for each signal
        M = torch.stack([mel_matrix(warp=float(a)) for a in warps]).to(x)  # (B, M, F)
    else:
        if x.device not in _MEL:
            _MEL[x.device] = mel_matrix().to(x.device)
        M = _MEL[x.device]
    energy = M @ spec.abs().square()  # (B, M, T)
    feats = torch.log(energy + FLOOR).permute(2, 0, 1)  # (T, B, M)
    T = feats.shape[0]
    mask = (torch.arange(T)[:, None] < frames[None, :]).to(feats.device)[..., None]  # (T, B, 1)
    count = frames.clamp(min=1).to(feats)[:, None]  # (B, 1)
    mean = (feats * mask).sum(0) / count
    var = ((feats - mean).square() * mask).sum(0) / count
    feats = (feats - mean) / (var + 1e-5).sqrt()
    return feats * mask, frames


def spec_augment(
    feats: Tensor,
    frames: Tensor,
    rng: np.random.Generator,
    bands: int = 2,
    max_band: int = 8,
    spans: int = 2,
    max_span: int = 10,
) -> Tensor:
    """SpecAugment's masks (Park et al. 2019, "SpecAugment: a simple data augmentation method
    for automatic speech recognition"), without time warping: in each utterance of ``feats``
    (T, B, M), ``bands`` bands of 0..``max_band`` consecutive mel channels and ``spans`` spans
    of 0..``max_span`` consecutive frames (within its ``frames``) are set to 0, the mean of the
    normalised features. A span is at most 100 ms, shorter than a spoken digit, so no word is
    masked whole."""
    out = feats.clone()
    M = feats.shape[2]
    for b in range(feats.shape[1]):
        for _ in range(bands):
            width = int(rng.integers(0, max_band + 1))
            start = int(rng.integers(0, M - width + 1))
            out[:, b, start : start + width] = 0.0
        n = int(frames[b])
        for _ in range(spans):
            width = min(int(rng.integers(0, max_span + 1)), n)
            start = int(rng.integers(0, n - width + 1))
            out[start : start + width, b, :] = 0.0
    return out


def pad(waves: list[np.ndarray]) -> tuple[Tensor, Tensor]:
    """Signals as a zero-padded (B, N) float tensor and their lengths (B,)."""
    lengths = torch.tensor([len(w) for w in waves], dtype=torch.long)
    out = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        out[i, : len(w)] = torch.from_numpy(np.asarray(w, dtype=np.float32))
    return out, lengths


def featurise(waves: list[np.ndarray], warps: list[float] | None = None) -> tuple[Tensor, Tensor]:
    """(features (T, B, 40), frames (B,)) of a list of 8 kHz signals (``warps``: ``log_mel``)."""
    return log_mel(*pad(waves), warps=warps)


# ---- reading any WAV -------------------------------------------------------------------------
def resample(x: np.ndarray, rate: int, to: int = SAMPLE_RATE) -> np.ndarray:
    """``x`` from ``rate`` Hz to ``to`` Hz (scipy's polyphase resampler), float32."""
    from scipy.signal import resample_poly

    if rate == to:
        return x.astype(np.float32, copy=False)
    g = math.gcd(int(rate), int(to))
    return resample_poly(x, to // g, int(rate) // g).astype(np.float32)


def read_wav(path: str | Path, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """The samples of a WAV file (any rate, any channels) as 8 kHz mono float32 in [-1, 1].

    Raises:
        UserError: the file is missing, empty (0 bytes), not a sound file soundfile reads,
            holds no frames, is shorter than one 25 ms window, or lasts over ``max_seconds``.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the file is empty (0 bytes), not a WAV file")
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as e:
        reason = " ".join(str(e).split())
        raise UserError(f"{path}: not a WAV file soundfile can read ({reason})") from None
    if info.frames <= 0:
        raise UserError(f"{path}: the WAV file holds no audio frames")
    seconds = info.frames / info.samplerate
    if seconds > max_seconds:
        raise UserError(
            f"{path}: {seconds:.1f} s of audio; the limit is {max_seconds:g} s (a spoken digit "
            "string lasts a few seconds: cut the file into utterances)"
        )
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    x = resample(data.mean(axis=1), rate)
    if len(x) < WINDOW:
        raise UserError(
            f"{path}: {seconds * 1000:.0f} ms of audio is shorter than one 25 ms analysis window"
        )
    return x
