"""The compiled inner step: each kernel step's element-wise work in one compiled call.

A kernel's step is one recurrent matrix product (left to torch's BLAS) and the element-wise gate
work, which in PyTorch ops is several small passes over (B, G·H) per step, forward and backward.
``fused_step.cpp`` (shipped beside this file) does that work as one loop per call, with the same
equations as the Python code it replaces (each kernel's module docstring). It is plain C++ with
a C ABI, compiled once with the machine's C++ compiler (``$CXX``, else ``c++``/``g++``) into
``~/.cache/rnnkit/fused`` (``$RNNKIT_CACHE`` overrides ``~/.cache/rnnkit``), named by a hash of
the source, flags and compiler, and loaded with ctypes: the build takes a few seconds, later
imports only load the file. Why this and not a torch C++ extension or numba:
docs/compiled_step.md.

The switch (``rnnkit.kernels.backends``, ``"fused"``; initial value from ``$RNNKIT_FUSED``):

- ``"auto"`` (default): the compiled step where it builds, for float32 and float64 CPU tensors;
  the PyTorch ops otherwise. Without a compiler (or if the build fails) it says so in one line on
  stderr, once per process, and runs the PyTorch ops.
- ``"compiled"``: the compiled step, and an error if it cannot be built.
- ``"torch"``: the PyTorch ops always.

A kernel asks ``step_ops(tensor)`` once per sequence: ``None`` means run its PyTorch ops; else
the returned ``Ops`` has one method per fused step. Both paths compute the same function and are
tested equal in values and gradients (tests/kernels/test_fused_step.py).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from rnnkit.kernels.backends import get_backend

SOURCE = Path(__file__).with_name("fused_step.cpp")
SOURCES = (SOURCE, Path(__file__).with_name("sample_step.cpp"))
"""Compiled into one library: the kernels' steps and the language-model sampler's token step."""
COMPILE_FLAGS = (
    "-O3",
    "-march=native",
    "-mprefer-vector-width=512",
    "-ffast-math",
    "-fno-finite-math-only",
    "-D__FAST_MATH__",
    "-fopenmp-simd",
    "-fPIC",
    "-std=c++17",
    "-pthread",
)
"""-mprefer-vector-width=512: GCC's tuning for recent Intel cores makes 256-bit vectors by default,
and the element-wise loops run faster with 512-bit ones (docs/compiled_step.md); ignored where
the CPU has none. -ffast-math lets exp and tanh vectorize; it is not passed to the link step,
which would link crtfastmath.o and flush denormals to zero in the whole process.
-fno-finite-math-only keeps inf and NaN as IEEE has them (with it, a diverging run's saturated
gates turned into NaN where the PyTorch ops give 0 or 1); -D__FAST_MATH__ keeps glibc's headers
declaring the vector exp and tanh (libmvec) that this macro guards."""

NONLINEARITY_CODE = {"tanh": 0, "relu": 1, "sigmoid": 2, "identity": 3}

_state: dict[str, object] = {}  # "lib": the loaded library or None; "said": the line printed


def compiler() -> str | None:
    """The C++ compiler: ``$CXX``, else ``c++`` or ``g++`` on the PATH; None if there is none."""
    cxx = os.environ.get("CXX")
    if cxx:
        return shutil.which(cxx)
    return shutil.which("c++") or shutil.which("g++")


def cache_dir() -> Path:
    """Where the built library lives: ``$RNNKIT_CACHE/fused``, default ``~/.cache/rnnkit/fused``."""
    root = os.environ.get("RNNKIT_CACHE") or Path.home() / ".cache" / "rnnkit"
    return Path(root) / "fused"


def _cpu() -> bytes:
    """The CPU's feature flags (-march=native builds for them), where Linux lists them."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return b""
    return next((line for line in text.splitlines() if line.startswith("flags")), "").encode()


def build(cxx: str) -> Path:
    """Compile ``SOURCES`` with ``cxx`` into the cache (once: the file name is a hash of the
    sources, flags, compiler version and CPU flags) and return the library's path."""
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256(
        b"".join(source.read_bytes() for source in SOURCES)
        + " ".join(COMPILE_FLAGS).encode()
        + version.encode()
        + _cpu()
    ).hexdigest()[:16]
    target = cache_dir() / f"fused_step_{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        objs = [str(Path(tmp) / f"{source.stem}.o") for source in SOURCES]
        lib = Path(tmp) / "fused_step.so"
        compiles = [
            [cxx, *COMPILE_FLAGS, "-c", str(source), "-o", obj]
            for source, obj in zip(SOURCES, objs, strict=True)
        ]
        for cmd in (*compiles, [cxx, "-shared", "-pthread", *objs, "-o", str(lib), "-lm"]):
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()[-500:]}")
        os.replace(lib, target)  # atomic: a concurrent build of the same key writes the same file
    return target


def _say(line: str) -> None:
    if "said" not in _state:
        _state["said"] = line
        print(line, file=sys.stderr)


def library() -> ctypes.CDLL | None:
    """The compiled library, built and loaded on first use; None (said once) when it cannot be
    built. Raises under the ``"compiled"`` setting instead of returning None."""
    if "lib" not in _state:
        cxx = compiler()
        try:
            if cxx is None:
                raise RuntimeError("no C++ compiler found ($CXX, c++, g++)")
            _state["lib"] = ctypes.CDLL(str(build(cxx)))
        except (OSError, RuntimeError) as error:
            _state["lib"] = None
            _state["error"] = str(error)
            if get_backend("fused") != "compiled":
                _say(f"rnnkit: the compiled step is unavailable ({error}); using PyTorch ops")
    if _state["lib"] is None and get_backend("fused") == "compiled":
        raise RuntimeError(f"fused backend 'compiled' cannot be built: {_state['error']}")
    return _state["lib"]  # type: ignore[return-value]


def available() -> bool:
    """Whether the compiled step builds and loads here (building it if needed)."""
    try:
        return library() is not None
    except RuntimeError:
        return False


_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_ops: dict[torch.dtype, Ops] = {}


def step_ops(t: Tensor) -> Ops | None:
    """The compiled steps for tensors like ``t``, or None: run the PyTorch ops (setting
    ``"torch"``, a dtype other than float32/float64, a device other than the CPU, or no build)."""
    setting = get_backend("fused")
    if setting == "torch" or t.dtype not in _SUFFIX or t.device.type != "cpu":
        return None
    lib = library()
    if lib is None:
        return None
    if t.dtype not in _ops:
        _ops[t.dtype] = Ops(lib, _SUFFIX[t.dtype])
    return _ops[t.dtype]


def _rows(t: Tensor) -> Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _pair(t: Tensor) -> tuple[int, int]:
    return t.data_ptr(), t.stride(0)


def _ptrs(ts: tuple) -> tuple:
    """Data pointers of contiguous 1-D tensors (the cell's parameters), None for None."""
    return tuple(None if t is None else t.data_ptr() for t in ts)


def _mask(m: Tensor | None) -> tuple[int | None, int]:
    return (None, 0) if m is None else (m.data_ptr(), m.stride(0))


class Ops:
    """The compiled steps of one dtype. Each method takes (B, ·) tensors and writes its outputs
    in place; outputs must have unit column stride (the kernels' own buffers), inputs may have
    any strides. ``mask`` is a (B, 1) bool tensor or None. See fused_step.cpp for each one's
    equations."""

    def __init__(self, lib: ctypes.CDLL, suffix: str) -> None:
        def fn(name: str, n_args: int):
            f = getattr(lib, f"{name}_{suffix}")
            f.argtypes = [ctypes.c_int64] * 2 + [ctypes.c_void_p, ctypes.c_int64] * n_args
            f.restype = None
            return f

        self._gru_fwd, self._gru_bwd = fn("gru_fwd", 6), fn("gru_bwd", 7)
        self._mingru_fwd, self._mingru_bwd = fn("mingru_fwd", 4), fn("mingru_bwd", 6)
        self._elman_bwd = fn("elman_bwd", 4)
        self._grub_gates, self._grub_state = fn("grub_gates", 4), fn("grub_state", 6)
        self._grub_bwd_a, self._grub_bwd_b = fn("grub_bwd_a", 5), fn("grub_bwd_b", 7)
        self._grub_factors = getattr(lib, f"grub_factors_{suffix}")
        self._grub_factors.argtypes = [ctypes.c_int64] * 2 + [ctypes.c_void_p] * 4
        self._grub_factors.restype = None
        self._gru_factors = getattr(lib, f"gru_factors_{suffix}")
        self._gru_factors.argtypes = [ctypes.c_int64] * 2 + [ctypes.c_void_p] * 5
        self._gru_factors.restype = None
        self._lstm_factors = getattr(lib, f"lstm_factors_{suffix}")
        self._lstm_factors.argtypes = [ctypes.c_int64] * 2 + [ctypes.c_void_p] * 7
        self._lstm_factors.restype = None
        self._elman_fwd = getattr(lib, f"elman_fwd_{suffix}")
        self._elman_fwd.argtypes = [ctypes.c_int64] * 3 + [ctypes.c_void_p, ctypes.c_int64] * 3
        self._elman_fwd.restype = None
        self._lstm_fwd = getattr(lib, f"lstm_fwd_{suffix}")
        P, I = ctypes.c_void_p, ctypes.c_int64
        self._lstm_fwd.argtypes = [I, I, *[P, I] * 6, P, P, P, *[P, I] * 3, P, *[P, I] * 2]
        self._lstm_fwd.argtypes += [P, P, ctypes.c_double, P, I]
        self._lstm_fwd.restype = None
        self._lstm_bwd = getattr(lib, f"lstm_bwd_{suffix}")
        self._lstm_bwd.argtypes = [I, I, *[P, I] * 9, P, P, P, *[P, I] * 2, P, *[P, I] * 3]
        self._lstm_bwd.restype = None

    def gru_forward(self, P: Tensor, x: Tensor, h: Tensor, n: Tensor, h_out: Tensor, mask) -> None:
        """GRU (reset_after) step: P <- [r, z, p_n], n <- n, h_out <- h' (h where masked)."""
        x, h = _rows(x), _rows(h)
        B, H = h.shape
        self._gru_fwd(
            B, H, P.data_ptr(), P.stride(0), x.data_ptr(), x.stride(0), h.data_ptr(), h.stride(0),
            n.data_ptr(), n.stride(0), h_out.data_ptr(), h_out.stride(0), *_mask(mask),
        )  # fmt: skip

    def gru_factors(self, gates: Tensor, n: Tensor, h_prev: Tensor, dP: Tensor, dn: Tensor) -> None:
        """GRU (reset_after) backward factors over every row at once, all tensors contiguous
        (T, B, ·): dn <- (1 - z)(1 - n²), dP <- [dn p_n r (1 - r), (h_prev - n) z (1 - z), dn r]
        from gates = [r, z, p_n]."""
        H = n.shape[-1]
        assert all(t.is_contiguous() for t in (gates, n, h_prev, dP, dn))
        self._gru_factors(
            n.numel() // H, H, gates.data_ptr(), n.data_ptr(), h_prev.data_ptr(), dP.data_ptr(),
            dn.data_ptr(),
        )  # fmt: skip

    def lstm_factors(
        self, gates: Tensor, c_prev: Tensor, tanh_c: Tensor, gamma_c: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """LSTM backward factors over every row at once (contiguous (T, B, ·) inputs): D =
        [g σ'(i), c_{t-1} σ'(f), i tanh'(g), tanh(ĉ) σ'(o)], Q = o tanh'(ĉ) and Q γ_c (Q itself
        when ``gamma_c`` is None), new tensors."""
        assert all(t.is_contiguous() for t in (gates, c_prev, tanh_c))
        gain = None if gamma_c is None else gamma_c.contiguous()  # alive through the call
        H = c_prev.shape[-1]
        D, Q = torch.empty_like(gates), torch.empty_like(c_prev)
        Qg = Q if gamma_c is None else torch.empty_like(c_prev)
        self._lstm_factors(
            c_prev.numel() // H, H, gates.data_ptr(), c_prev.data_ptr(), tanh_c.data_ptr(),
            None if gain is None else gain.data_ptr(), D.data_ptr(),
            Q.data_ptr(), Qg.data_ptr(),
        )  # fmt: skip
        return D, Q, Qg

    def gru_backward(
        self, dh: Tensor, gy: Tensor, gates: Tensor, dP: Tensor, g: Tensor, carry: Tensor, mask
    ) -> None:
        """GRU (reset_after) step back: g <- m (gy + dh), dP <- g ⊙ dP, carry <- g ⊙ z (dh
        where masked)."""
        dh, gy, gates = _rows(dh), _rows(gy), _rows(gates)
        B, H = dh.shape
        self._gru_bwd(
            B, H, dh.data_ptr(), dh.stride(0), gy.data_ptr(), gy.stride(0), gates.data_ptr(),
            gates.stride(0), dP.data_ptr(), dP.stride(0), g.data_ptr(), g.stride(0),
            carry.data_ptr(), carry.stride(0), *_mask(mask),
        )  # fmt: skip

    def gru_reset_before_gates(self, A: Tensor, x: Tensor, h: Tensor, s: Tensor) -> None:
        """GRU (reset_after=False) step, first half: A <- [r, z] = σ(A + x), s <- r ⊙ h, where A
        holds h W_h{rz}ᵀ and x the input gates [x_r, x_z] with b_h{rz}."""
        x, h = _rows(x), _rows(h)
        B, H = h.shape
        self._grub_gates(B, H, *_pair(A), *_pair(x), *_pair(h), *_pair(s))

    def gru_reset_before_state(
        self, N: Tensor, x: Tensor, z: Tensor, h: Tensor, h_out: Tensor, mask
    ) -> None:
        """GRU (reset_after=False) step, second half: N <- n = tanh(N + x), h_out <- n + z (h - n)
        (h where masked), where N holds s W_hnᵀ and x the input gate x_n with b_hn."""
        x, z, h = _rows(x), _rows(z), _rows(h)
        B, H = h.shape
        self._grub_state(
            B, H, *_pair(N), *_pair(x), *_pair(z), *_pair(h), *_pair(h_out), *_mask(mask)
        )

    def gru_reset_before_factors(
        self, gates: Tensor, n: Tensor, h_prev: Tensor, dA: Tensor
    ) -> None:
        """GRU (reset_after=False) backward factors over every row at once, all contiguous
        (T, B, ·): dA <- [h_prev r (1 - r), (h_prev - n) z (1 - z), (1 - z)(1 - n²)] from
        gates = [r, z]."""
        H = n.shape[-1]
        assert all(t.is_contiguous() for t in (gates, n, h_prev, dA))
        self._grub_factors(
            n.numel() // H, H, gates.data_ptr(), n.data_ptr(), h_prev.data_ptr(), dA.data_ptr()
        )

    def gru_reset_before_backward_a(
        self, dh: Tensor, gy: Tensor, dA: Tensor, g: Tensor, mask
    ) -> None:
        """GRU (reset_after=False) step back, first half: g <- m (gy + dh), dA's z and n parts
        <- g ⊙ their factors (the whole row zero where masked)."""
        dh, gy = _rows(dh), _rows(gy)
        B, H = dh.shape
        self._grub_bwd_a(B, H, *_pair(dh), *_pair(gy), *_pair(dA), *_pair(g), *_mask(mask))

    def gru_reset_before_backward_b(
        self, ds: Tensor, g: Tensor, gates: Tensor, dh: Tensor, dA: Tensor, carry: Tensor, mask
    ) -> None:
        """GRU (reset_after=False) step back, second half, from ds = ∂L/∂s: dA's r part <- ds ⊙
        its factor, carry <- g ⊙ z + ds ⊙ r (dh where masked)."""
        ds, g, gates, dh = _rows(ds), _rows(g), _rows(gates), _rows(dh)
        B, H = ds.shape
        self._grub_bwd_b(
            B, H, *_pair(ds), *_pair(g), *_pair(gates), *_pair(dh), *_pair(dA), *_pair(carry),
            *_mask(mask),
        )  # fmt: skip

    def elman_forward(self, a: Tensor, h: Tensor, nonlinearity: str, mask) -> None:
        """Elman step: a <- f(a) (h where masked)."""
        h = _rows(h)
        B, H = a.shape
        f = NONLINEARITY_CODE[nonlinearity]
        self._elman_fwd(B, H, f, a.data_ptr(), a.stride(0), h.data_ptr(), h.stride(0), *_mask(mask))

    def elman_backward(self, gy: Tensor, dh: Tensor, fprime: Tensor | None, da: Tensor) -> None:
        """Elman step back: da <- f' ⊙ (gy + dh) (f' = 1 when ``fprime`` is None)."""
        gy, dh = _rows(gy), _rows(dh)
        B, H = da.shape
        fp, sfp = None, 0
        if fprime is not None:  # (B, H), or (B, 1) when it is the mask alone
            fprime = _rows(fprime.expand(B, H))
            fp, sfp = fprime.data_ptr(), fprime.stride(0)
        self._elman_bwd(
            B, H, gy.data_ptr(), gy.stride(0), dh.data_ptr(), dh.stride(0), fp, sfp,
            da.data_ptr(), da.stride(0),
        )  # fmt: skip

    def minimal_gru_forward(self, A: Tensor, c: Tensor, c_out: Tensor, mask) -> None:
        """Minimal GRU step: A <- [u, c~], c_out <- c + u (c~ - c) (c where masked)."""
        c = _rows(c)
        B, H = c.shape
        self._mingru_fwd(
            B, H, A.data_ptr(), A.stride(0), c.data_ptr(), c.stride(0), c_out.data_ptr(),
            c_out.stride(0), *_mask(mask),
        )  # fmt: skip

    def minimal_gru_backward(
        self, dc: Tensor, gy: Tensor, gates: Tensor, dA: Tensor, carry: Tensor, mask
    ) -> None:
        """Minimal GRU step back: dA <- g ⊙ dA with g = m (gy + dc), carry <- g ⊙ (1 - u)
        (dc where masked)."""
        dc, gy, gates = _rows(dc), _rows(gy), _rows(gates)
        B, H = dc.shape
        self._mingru_bwd(
            B, H, dc.data_ptr(), dc.stride(0), gy.data_ptr(), gy.stride(0), gates.data_ptr(),
            gates.stride(0), dA.data_ptr(), dA.stride(0), carry.data_ptr(), carry.stride(0),
            *_mask(mask),
        )  # fmt: skip

    def lstm_forward(
        self, z: Tensor, c: Tensor, h: Tensor, c_new: Tensor, h_new: Tensor, tanh_c: Tensor,
        peephole: tuple, layer_norm: tuple | bool | None, eps: float, mask,
    ) -> None:  # fmt: skip
        """LSTM step: z <- [i, f, g, o], c_new <- c', tanh_c <- tanh(ĉ), h_new <- h' ((h, c)
        where masked). ``peephole``: (w_ci, w_cf, w_co), each None without peepholes;
        ``layer_norm``: (a = W_hh h, LN(a) out, its 1/σ out, γ_hh, LN(c') out, its 1/σ out, γ_c,
        β_c), or False/None, in which case z already holds the recurrent product."""
        c, h = _rows(c), _rows(h)
        B, H = c.shape
        w = _ptrs(peephole)
        if not layer_norm:
            ln = [None, 0, None, 0, None, 0, None, None, 0, None, 0, None, None]
        else:
            a, an, ar, ghh, cn, cr, gc, bc = layer_norm
            ln = [*_pair(a), *_pair(an), *_pair(ar), ghh.data_ptr(), *_pair(cn), *_pair(cr)]
            ln += [gc.data_ptr(), bc.data_ptr()]
        self._lstm_fwd(
            B, H, *_pair(z), *_pair(c), *_pair(h), *_pair(c_new), *_pair(h_new), *_pair(tanh_c),
            *w, *ln, eps, *_mask(mask),
        )  # fmt: skip

    def lstm_backward(
        self, dh: Tensor, dy: Tensor, dc: Tensor, d_h: Tensor, D: Tensor, Q: Tensor,
        gates: Tensor, d_a: Tensor, carry: Tensor, peephole: tuple,
        layer_norm: tuple | bool | None, mask,
    ) -> None:  # fmt: skip
        """LSTM step back: d_h <- Δh, D <- ∂L/∂z, dc <- δc_{t-1} (in place), d_a <- ∂L/∂a
        (with the gate norm), carry <- 0 (dh where masked), so that δh_{t-1} = carry + d_a W_hh.
        ``peephole`` as in ``lstm_forward``; ``layer_norm``: (LN(a), its 1/σ, γ_hh, LN(c), its
        1/σ), or False/None."""
        dh, dy, Q, gates = _rows(dh), _rows(dy), _rows(Q), _rows(gates)
        B, H = dh.shape
        w = _ptrs(peephole)
        if not layer_norm:
            ln = [None, 0, None, 0, None, None, 0, None, 0]
        else:
            an, ar, ghh, cn, cr = layer_norm
            ln = [*_pair(an), *_pair(ar), ghh.data_ptr(), *_pair(cn), *_pair(cr)]
        self._lstm_bwd(
            B, H, *_pair(dh), *_pair(dy), *_pair(dc), *_pair(d_h), *_pair(D), *_pair(Q),
            *_pair(gates), *_pair(d_a), *_pair(carry), *w, *ln, *_mask(mask),
        )  # fmt: skip
