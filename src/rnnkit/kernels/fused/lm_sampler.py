"""A language model's batch-1 sampling loop with one compiled call per token.

Model: token → embedding row → a stack of plain LSTM or GRU (``reset_after=True``) layers →
linear head → the next token, chosen as ``rnnkit.decoding.choose`` does (greedy; or
temperature, top-k, top-p, and a draw). ``lm_sample_step_f32`` (sample_step.cpp, where the
equations are) does all of it per token; the weights are packed once (``PackedLM``), layer 0's
input product becomes a table lookup T[token] with T = E W_ih^T + b_ih when the table is small
(``TABLE_BYTES``).

The draw is torch.multinomial's: it takes argmax_k p_k / q_k with q ~ Exp(1) drawn by
``exponential_`` on a (1, V) float32 tensor; here the same q is drawn from the same generator
and passed to the call, so a seed gives the same tokens as ``rnnkit.decoding.sample_sequence``
on the model (up to float32 rounding of p, which can only matter at a near tie of p_k / q_k).

Applies (``packed_model``) to float32 CPU models whose recurrent layer is a one-direction,
non-residual rnnkit.LSTM (no peephole, no layer norm) or rnnkit.GRU (reset_after), or the
torch.nn twins, not in training mode with dropout; otherwise it returns None and the caller
takes the generic loop.
"""

from __future__ import annotations

import ctypes
import os
import weakref
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from rnnkit.cells.gru import GRUCell
from rnnkit.cells.lstm import LSTMCell
from rnnkit.kernels import fused
from rnnkit.kernels.backends import get_backend

TABLE_BYTES = 64 * 2**20
"""Layer 0's table T (V_in, G·H) is made only up to this size (a word vocabulary may be large);
else layer 0 multiplies W_ih by the embedding row per token."""

_P, _I, _D = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double


class _Model(ctypes.Structure):
    """sample_step.cpp's ``struct Model``, field by field."""

    _fields_ = [
        *((name, _I) for name in ("L", "H", "cell", "V", "E")),
        *((name, _P) for name in ("table", "emb", "W_ih", "W_hh", "b_ih", "b_hh", "W_o", "b_o")),
        *((name, _P) for name in ("h", "c", "gi", "gh", "logits", "probs", "work", "order")),
        ("greedy", _I),
        ("top_k", _I),
        ("temperature", _D),
        ("top_p", _D),
        ("bf16", _I),
    ]


def pack(W: Tensor) -> Tensor:
    """(R, K) → (ceil(R / 64), K, 64): panels of 64 rows, column by column, rows past R zero."""
    R, K = W.shape
    padded = torch.zeros(-(-R // 64) * 64, K)
    padded[:R] = W
    return padded.view(-1, 64, K).transpose(1, 2).contiguous()


HUGE_PAGE = 2**21


_teams: weakref.WeakSet = weakref.WeakSet()
"""The Steppers that have a team of threads, for ``_after_fork``."""


def _after_fork() -> None:
    for stepper in list(_teams):
        stepper._alone()
    _teams.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS says, else the count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def arena(parts: list[Tensor], huge_pages: bool = True) -> list[Tensor]:
    """Copies of ``parts`` (float32) one after another in one buffer, each 64-byte aligned.
    With ``huge_pages`` the buffer starts on a 2 MiB boundary and is marked for transparent huge
    pages (Linux ``madvise(MADV_HUGEPAGE)``) before it is touched: the per-token stream over ~12
    MB of weights then walks a few TLB entries instead of thousands (no effect elsewhere)."""
    sizes = [-(-p.numel() // 16) * 16 for p in parts]
    length = -(-sum(sizes) * 4 // HUGE_PAGE) * HUGE_PAGE if huge_pages else 4 * sum(sizes)
    flat = torch.empty((length + (HUGE_PAGE if huge_pages else 64)) // 4)
    start = (-flat.data_ptr() % (HUGE_PAGE if huge_pages else 64)) // 4
    if huge_pages:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.madvise(ctypes.c_void_p(flat.data_ptr() + 4 * start), ctypes.c_size_t(length), 14)
        except (OSError, AttributeError):
            pass  # not Linux: ordinary pages
    out = []
    for part, size in zip(parts, sizes, strict=True):
        view = flat[start : start + part.numel()].view(part.shape)
        view.copy_(part)
        out.append(view)
        start += size
    return out


def _cell_kind(rnn: nn.Module) -> int | None:
    """0 for a plain LSTM stack, 1 for a GRU (reset_after) stack, None for anything else."""
    if getattr(rnn, "bidirectional", True) or getattr(rnn, "residual", False):
        return None
    if type(rnn) is nn.LSTM:
        return 0 if rnn.proj_size == 0 else None
    if type(rnn) is nn.GRU:
        return 1
    cells = getattr(rnn, "_cells", None)
    if not cells:
        return None
    if all(type(c) is LSTMCell and not c.peephole and not c.layer_norm for c in cells):
        return 0
    if all(type(c) is GRUCell and c.reset_after for c in cells):
        return 1
    return None


WEIGHTS = ("float32", "bfloat16")
"""How the packed matrices are stored: float32, or bfloat16 (half the bytes a token reads; the
model is then the float32 one with W_ih, W_hh and the head's weight rounded to bfloat16)."""


def to_bfloat16(W: Tensor) -> Tensor:
    """W rounded to bfloat16 (to nearest, ties to even), as float32."""
    return W.to(torch.bfloat16).float()


class PackedLM:
    """The weights of embedding → layers → head, packed once for ``lm_sample_step_f32``.
    Read-only after construction, so one PackedLM serves any number of ``Stepper``s.

    ``weights="bfloat16"`` stores the packed matrices (every layer's W_ih and W_hh, the head's
    weight) in bfloat16, widened to float32 as a token reads them: the same function as the
    float32 model with those matrices rounded to bfloat16 (``to_bfloat16``), in half the bytes.
    The embedding, the layer-0 table (made from the rounded W_ih) and the biases stay float32.
    """

    def __init__(
        self,
        embedding: nn.Embedding,
        rnn: nn.Module,
        head: nn.Linear,
        huge_pages: bool = True,
        weights: str = "float32",
    ) -> None:
        kind = _cell_kind(rnn)
        if kind is None:
            raise ValueError(f"rnn must be a plain one-direction LSTM or GRU stack, got {rnn}")
        if weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {list(WEIGHTS)}, got {weights!r}")
        self.weights = weights
        bf16 = weights == "bfloat16"

        def matrix(W: Tensor) -> Tensor:  # as the step multiplies by it (float32 values)
            W = W.detach().float()
            return to_bfloat16(W) if bf16 else W

        def packed(W: Tensor) -> Tensor:  # panels; bfloat16's bits two to a float32's storage
            P = pack(matrix(W))
            return P.to(torch.bfloat16).view(torch.int16).view(torch.float32) if bf16 else P

        self.lib = fused.library()
        if self.lib is None:
            raise RuntimeError("the compiled sampler needs the compiled step, which does not build")
        self.cell, self.L, self.H = kind, rnn.num_layers, rnn.hidden_size
        G = 4 if kind == 0 else 3
        self.G = G
        with torch.no_grad():
            emb = embedding.weight.detach().float()  # (V_in, E)
            self.E = emb.shape[1]
            W_ih, W_hh, b_ih, b_hh = ([] for _ in range(4))
            for k in range(self.L):
                for name, out in (("weight_ih", W_ih), ("weight_hh", W_hh)):
                    out.append(packed(getattr(rnn, f"{name}_l{k}")))
                for name, out in (("bias_ih", b_ih), ("bias_hh", b_hh)):
                    b = getattr(rnn, f"{name}_l{k}", None)
                    out.append(None if b is None else b.detach().float())
            table = None
            if emb.shape[0] * G * self.H * 4 <= TABLE_BYTES:
                table = emb @ matrix(rnn.weight_ih_l0).T
                table = table if b_ih[0] is None else table + b_ih[0]
                W_ih[0] = None  # not read
            W_o = packed(head.weight)
            b_o = None if head.bias is None else head.bias.detach().float()
            # In the order a token reads them; the embedding and the biases at the end.
            parts = {"table": table}
            for k in range(self.L):
                parts.update({f"W_ih{k}": W_ih[k], f"W_hh{k}": W_hh[k]})
            parts.update({"W_o": W_o, "emb": emb, "b_o": b_o})
            for k in range(self.L):
                parts.update({f"b_ih{k}": b_ih[k], f"b_hh{k}": b_hh[k]})
            keys = [key for key, t in parts.items() if t is not None]
            get = dict(zip(keys, arena([parts[k] for k in keys], huge_pages), strict=True)).get
        self.table, self.W_o, self.emb, self.b_o = get("table"), get("W_o"), get("emb"), get("b_o")
        self.W_ih, self.W_hh, self.b_ih, self.b_hh = (
            [get(f"{name}{k}") for k in range(self.L)] for name in ("W_ih", "W_hh", "b_ih", "b_hh")
        )
        self.V = head.weight.shape[0]
        self.n_in = self.emb.shape[0]
        ptrs = ctypes.c_void_p * self.L
        self._lists = [  # kept alive: the struct holds their addresses
            ptrs(*(None if t is None else t.data_ptr() for t in ts))
            for ts in (self.W_ih, self.W_hh, self.b_ih, self.b_hh)
        ]
        fn = self.lib.lm_sample_step_f32
        fn.argtypes = [ctypes.POINTER(_Model), _I, _I, _P]
        fn.restype = _I
        self.fn = fn
        lib = self.lib
        lib.lm_team_new.argtypes, lib.lm_team_new.restype = [ctypes.POINTER(_Model), _I], _P
        lib.lm_team_free.argtypes, lib.lm_team_free.restype = [_P], None
        lib.lm_sample_team_step.argtypes = [_P, _I, _I, _P]
        lib.lm_sample_team_step.restype = _I

    def team_size(self, threads: int) -> int:
        """The threads a step can share out of ``threads``: each takes whole blocks of 64 hidden
        units, so 1 unless H is a multiple of 64, and at most H / 64; and no more than the CPUs
        this process may run on (the team's threads wait for each other spinning)."""
        return 1 if self.H % 64 else max(1, min(threads, self.H // 64, usable_cpus()))

    def fields(self) -> dict:
        """The struct's weight fields."""

        def ptr(t: Tensor | None) -> int | None:
            return None if t is None else t.data_ptr()

        W_ih, W_hh, b_ih, b_hh = (ctypes.cast(a, _P) for a in self._lists)
        return dict(
            L=self.L, H=self.H, cell=self.cell, V=self.V, E=self.E, table=ptr(self.table),
            emb=ptr(self.emb), W_ih=W_ih, W_hh=W_hh, b_ih=b_ih, b_hh=b_hh, W_o=ptr(self.W_o),
            b_o=ptr(self.b_o), bf16=int(self.weights == "bfloat16"),
        )  # fmt: skip


class Stepper:
    """One sampling run's state (h, c of every layer, zero at the start) and buffers over a
    ``PackedLM``. ``step(token, emit, q)`` feeds a token; with ``emit`` it returns the next one
    (q: the (1, V) Exp(1) draws, None when greedy). ``logits`` (V,) and ``probs`` (V,) hold the
    last emitting step's logits (after temperature and filtering, unless greedy) and p.

    ``threads`` (default ``torch.get_num_threads()``): a step shares its products and state
    update among this many threads (``PackedLM.team_size`` of them: this one and workers the
    Stepper starts, which spin between tokens and sleep after 2 ms idle, and stop when the
    Stepper is collected; in a child process after ``fork`` it steps alone). The weights a
    token reads are split between the cores' paths to the shared cache; every float is
    computed as with one thread, so the tokens are the same.
    """

    def __init__(
        self,
        packed: PackedLM,
        *,
        greedy: bool = False,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        threads: int | None = None,
    ) -> None:
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)):
            raise ValueError(f"threads must be an integer (or None: torch's), got {threads!r}")
        P, V = packed, packed.V
        width = -(-P.G * P.H // 64) * 64
        self.packed = P
        self.h, self.c = torch.zeros(P.L, P.H), torch.zeros(P.L, P.H)
        self._gi, self._gh = torch.zeros(width), torch.zeros(width)
        self._logits = torch.zeros(-(-V // 64) * 64)
        self.logits = self._logits[:V]
        self.probs = torch.zeros(V)
        self._work = torch.zeros(V, dtype=torch.float64)
        self._order = torch.zeros(V, dtype=torch.int64)
        self._m = _Model(
            **P.fields(), h=self.h.data_ptr(), c=self.c.data_ptr(), gi=self._gi.data_ptr(),
            gh=self._gh.data_ptr(), logits=self._logits.data_ptr(), probs=self.probs.data_ptr(),
            work=self._work.data_ptr(), order=self._order.data_ptr(), greedy=int(greedy),
            top_k=top_k or 0, temperature=temperature, top_p=1.0 if top_p is None else top_p,
        )  # fmt: skip
        self._ref = ctypes.byref(self._m)
        self._fn = P.fn
        n = P.team_size(torch.get_num_threads() if threads is None else threads)
        team = P.lib.lm_team_new(self._ref, n) if n > 1 else None
        self.threads = n if team else 1
        if team:  # the team's step in place of the one-thread step; the workers end with self
            self._done = weakref.finalize(self, P.lib.lm_team_free, team)
            self._fn, self._ref = P.lib.lm_sample_team_step, team
            _teams.add(self)

    def _alone(self) -> None:
        """Back to the one-thread step: in a child process after ``fork`` the team's workers do
        not exist (only the forking thread is copied), and its barriers would wait for ever.
        The team is left as it is (its threads cannot be joined there)."""
        self._done.detach()
        self._fn, self._ref, self.threads = self.packed.fn, ctypes.byref(self._m), 1

    def step(self, token: int, emit: bool = True, q: Tensor | None = None) -> int:
        if not 0 <= token < self.packed.n_in:
            raise ValueError(f"token must be in [0, {self.packed.n_in}), got {token}")
        if emit and q is None and not self._m.greedy:
            raise ValueError("q (the draws of Exp(1)) is needed to emit a token unless greedy")
        return self._fn(self._ref, token, int(emit), None if q is None else q.data_ptr())


def sample(packed: PackedLM, prime: list[int], length: int, **options) -> list[int]:
    """``rnnkit.decoding.sample_sequence`` from a zero state, compiled: ``length`` tokens after
    ``prime`` (at least one token; options checked by the caller), the same random draws.
    ``options``: those of ``sample_steps`` (``greedy``, ``temperature``, ``top_k``, ``top_p``,
    ``generator``, ``threads``), whose list this is."""
    return list(sample_steps(packed, prime, length, **options))


def sample_steps(
    packed: PackedLM,
    prime: list[int],
    length: int,
    *,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    threads: int | None = None,
) -> Iterator[int]:
    """``sample`` one token at a time: each id yielded as soon as it is drawn (``sample`` is
    the list), so the same draws. Nothing runs before the first ``next``; the state lives in
    the iterator, and no grad mode is held across a ``yield`` (the consumer may change thread)."""
    if length == 0:
        return
    run = Stepper(
        packed, greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p, threads=threads
    )
    for token in prime[:-1]:
        run.step(token, emit=False)
    q = None if greedy else torch.empty(1, packed.V)
    token = prime[-1]
    n_in = packed.n_in
    if not 0 <= token < n_in:
        raise ValueError(f"token must be in [0, {n_in}), got {token}")
    for _ in range(length):  # run._fn read each token: a fork in between changes it
        if q is None:
            token = run._fn(run._ref, token, 1, None)
        else:
            q.exponential_(generator=generator)  # torch.multinomial's draw (see the module doc)
            token = run._fn(run._ref, token, 1, q.data_ptr())
        yield token


def packed_model(model: nn.Module, weights: str = "float32") -> PackedLM | None:
    """The packed weights of a ``LanguageModel`` (``embedding``, ``rnn``, ``head``), stored as
    ``weights`` (``PackedLM``), cached on the model and rebuilt when a parameter changes; None
    where the compiled sampler does not apply (see the module doc) or does not build."""
    parts = [getattr(model, name, None) for name in ("embedding", "rnn", "head")]
    if not (
        isinstance(parts[0], nn.Embedding)
        and isinstance(parts[2], nn.Linear)
        and _cell_kind(parts[1]) is not None
        and not (model.training and getattr(parts[1], "dropout", 0) > 0)
        and not (model.training and getattr(getattr(model, "drop", None), "p", 0) > 0)
    ):
        return None
    params = list(model.parameters())
    if any(p.dtype != torch.float32 or p.device.type != "cpu" for p in params):
        return None
    if get_backend("fused") == "torch" or not fused.available():
        return None
    key = tuple((id(p), p.data_ptr(), 0 if p.is_inference() else p._version) for p in params)
    key += (weights,)
    cached = model.__dict__.get("_packed_lm")
    if cached is None or cached[0] != key:
        cached = (key, PackedLM(*parts, weights=weights))
        model.__dict__["_packed_lm"] = cached
    return cached[1]
