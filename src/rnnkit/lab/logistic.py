"""The lectures' iterated function f(x) = r x (1 - x), r = 3.5: a one-unit recurrent network
without input, h_t = f(h_{t-1}), whose backward pass through time is a product of derivatives.

    x_{k+1} = f(x_k) = r x_k (1 - x_k),            f'(x) = r (1 - 2x)
    d f^n / dx (x_0) = f'(x_{n-1}) f'(x_{n-2}) ... f'(x_0)           (the chain rule through time)
    λ(r) = lim_n (1/n) ln |d f^n/dx (x_0)| = lim_n (1/n) Σ_k ln |f'(x_k)|   (Lyapunov exponent)

So |d f^n/dx| ≈ e^{λ n}: where the orbit settles on an attracting fixed point or cycle (λ < 0)
the gradient vanishes geometrically; where the map is chaotic (λ > 0, most r above
r_∞ ≈ 3.5699) it explodes. At r = 3.5 the attractor is a 4-cycle; the period doublings are at
r = 3, 1 + √6 ≈ 3.449, ≈ 3.544, ... (Feigenbaum 1978; May, "Simple mathematical models with very
complicated dynamics", Nature 1976). The same picture for RNNs: Bengio, Simard & Frasconi 1994;
Pascanu, Mikolov & Bengio 2013 (§2.2, the dynamical-systems view).

    rnnkit lab logistic [--r 3.5] [--x0 0.1,0.3,0.6,0.9] [--n 60] [--rs 2.8,3.2,...] [--out DIR]

Writes logistic.png (cobweb, iterates, |d f^n/dx| against n for several x0 and several r, the
bifurcation diagram and λ(r)) and results.json.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnkit.config import option
from rnnkit.errors import UserError
from rnnkit.lab.experiment import (
    DPI,
    check_float,
    check_int,
    lab_parser,
    out_dir,
    parse,
    progress,
    write_json,
)
from rnnkit.plots import figure, save_figure

R_INF = 3.5699456718695445  # the accumulation point of the period doublings (Feigenbaum)


def logistic(x, r: float):
    """f(x) = r x (1 - x)."""
    return r * x * (1.0 - x)


def logistic_derivative(x, r: float):
    """f'(x) = r (1 - 2x)."""
    return r * (1.0 - 2.0 * x)


def iterates(x0, r: float, n: int) -> np.ndarray:
    """x_0, x_1 = f(x_0), ..., x_n: shape (n + 1, *shape of x0), float64."""
    xs = [np.asarray(x0, dtype=np.float64)]
    for _ in range(n):
        xs.append(logistic(xs[-1], r))
    return np.stack(xs)


def log_abs_derivative(x0, r: float, n: int) -> np.ndarray:
    """ln |d f^k/dx (x_0)| for k = 0..n, as the running sum of ln |f'(x_j)|, j < k (the product
    of the chain rule in log space, so no overflow or underflow for long orbits). Shape
    (n + 1, *shape of x0); -inf once an orbit hits x = 1/2 (f' = 0) exactly."""
    xs = iterates(x0, r, n)
    with np.errstate(divide="ignore"):
        terms = np.log(np.abs(logistic_derivative(xs[:-1], r)))
    return np.concatenate([np.zeros((1, *xs.shape[1:])), np.cumsum(terms, axis=0)])


def iterate_derivative(x0, r: float, n: int) -> np.ndarray:
    """d f^k/dx (x_0) for k = 0..n, signed: the product f'(x_{k-1}) ... f'(x_0)."""
    xs = iterates(x0, r, n)
    factors = logistic_derivative(xs[:-1], r)
    return np.concatenate([np.ones((1, *xs.shape[1:])), np.cumprod(factors, axis=0)])


def lyapunov_exponent(r, x0: float = 0.3, transient: int = 1000, n: int = 2000) -> np.ndarray:
    """λ(r) ≈ (1/n) Σ ln |f'(x_k)| over n steps after a transient; r may be an array."""
    x = np.full(np.shape(r), x0, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    for _ in range(transient):
        x = logistic(x, r)
    total = np.zeros_like(x)
    with np.errstate(divide="ignore"):
        for _ in range(n):
            total += np.log(np.abs(logistic_derivative(x, r)))
            x = logistic(x, r)
    return total / n


def attractor_period(
    r: float, x0: float = 0.3, transient: int = 4000, max_period: int = 64, tol: float = 1e-6
) -> int:
    """The period of the cycle the orbit from x0 settles on (1: a fixed point), or 0 if none up
    to ``max_period`` (chaos, or a cycle longer than that)."""
    x = float(x0)
    for _ in range(transient):
        x = logistic(x, r)
    start = x
    for period in range(1, max_period + 1):
        x = logistic(x, r)
        if abs(x - start) < tol:
            return period
    return 0


def cycle_points(r: float, period: int, x0: float = 0.3, transient: int = 4000) -> list[float]:
    x = float(x0)
    for _ in range(transient):
        x = logistic(x, r)
    points = []
    for _ in range(period):
        points.append(x)
        x = logistic(x, r)
    return sorted(points)


def run(
    r: float,
    x0s: list[float],
    n: int,
    rs: list[float],
    r_range: tuple[float, float],
    points: int,
    out: Path,
    quiet: bool = False,
) -> dict:
    start = time.perf_counter()
    grid = np.linspace(*r_range, points)
    bif_x = np.full(points, 0.3)
    bar = progress(range(600), desc="bifurcation", quiet=quiet)
    for _ in bar:  # the transient
        bif_x = logistic(bif_x, grid)
    bif = iterates(bif_x, grid, 150)[1:]  # (150, points): the attractor at each r
    lyap = lyapunov_exponent(grid)

    by_x0 = log_abs_derivative(np.array(x0s), r, n)  # (n + 1, len(x0s))
    by_r = np.stack([log_abs_derivative(0.3, rr, n) for rr in rs], axis=1)  # (n + 1, len(rs))
    rows = []
    for i, rr in enumerate(rs):
        period = attractor_period(rr)
        lam = float(lyapunov_exponent(rr))
        rows.append(
            {
                "r": rr,
                "period": period,
                "lyapunov": lam,
                "log10_abs_dfn_dx": float(by_r[-1, i] / math.log(10)),
                "cycle": cycle_points(rr, period) if 0 < period <= 8 else None,
            }
        )
    period = attractor_period(r)
    result = {
        "r": r,
        "n": n,
        "x0": x0s,
        "period": period,
        "cycle": cycle_points(r, period) if 0 < period <= 16 else None,
        "lyapunov": float(lyapunov_exponent(r)),
        "log10_abs_dfn_dx_by_x0": {
            f"{x0:g}": float(v / math.log(10)) for x0, v in zip(x0s, by_x0[-1], strict=True)
        },
        "by_r": rows,
        "seconds": 0.0,
    }
    draw(result, grid, bif, lyap, by_x0, by_r, out / "logistic.png")
    result["seconds"] = time.perf_counter() - start
    write_json(out / "results.json", result)
    return result


def draw(result, grid, bif, lyap, by_x0, by_r, path: Path) -> Path:
    r, n, x0s, rs = result["r"], result["n"], result["x0"], [row["r"] for row in result["by_r"]]
    fig, axes = figure((11, 11), 3, 2, dpi=DPI)
    (cob, its), (dx0, dr), (bifax, lyax) = axes
    colors = [f"C{i}" for i in range(10)]

    # Cobweb from the first x0: vertical to the curve, horizontal to the diagonal.
    xs = np.linspace(0, 1, 400)
    cob.plot(xs, logistic(xs, r), color="k", lw=1.2, label=f"f(x) = {r:g} x (1 - x)")
    cob.plot(xs, xs, color="0.5", lw=1, ls="--", label="y = x")
    orbit = iterates(x0s[0], r, 40)
    px, py = [orbit[0]], [0.0]
    for a, b in zip(orbit[:-1], orbit[1:], strict=True):
        px += [a, b]
        py += [b, b]
    cob.plot(px, py, color="C3", lw=0.8, label=f"orbit of x0 = {x0s[0]:g}")
    cob.set(xlabel="x", ylabel="f(x)", title="cobweb", xlim=(0, 1), ylim=(0, 1))
    cob.legend(fontsize=8, loc="lower center")

    steps = min(n, 40)
    for i, x0 in enumerate(x0s):
        its.plot(
            iterates(x0, r, steps),
            marker="o",
            ms=2.5,
            lw=0.8,
            color=colors[i % 10],
            label=f"x0 = {x0:g}",
        )
    period = result["period"]
    attractor = f"{period}-cycle" if period > 1 else "fixed point" if period == 1 else "chaos"
    its.set(xlabel="n", ylabel="x_n", title=f"iterates at r = {r:g}: attractor {attractor}")
    its.legend(fontsize=8)

    ns = np.arange(n + 1)
    for i, x0 in enumerate(x0s):
        dx0.plot(ns, np.exp(by_x0[:, i]), color=colors[i % 10], lw=1.2, label=f"x0 = {x0:g}")
    lam = result["lyapunov"]
    dx0.plot(ns, np.exp(lam * ns), color="k", ls="--", lw=1, label=f"e^(λn), λ = {lam:.3f}")
    dx0.set(
        yscale="log",
        xlabel="n",
        ylabel="|d f^n/dx (x0)|",
        title=f"gradient through n steps, r = {r:g}",
    )
    dx0.legend(fontsize=8)

    for i, row in enumerate(result["by_r"]):
        dr.plot(
            ns,
            np.exp(by_r[:, i]),
            color=colors[i % 10],
            lw=1.2,
            label=f"r = {row['r']:g} (λ = {row['lyapunov']:+.2f})",
        )
    dr.axhline(1.0, color="0.5", lw=0.8)
    dr.set(
        yscale="log",
        xlabel="n",
        ylabel="|d f^n/dx (0.3)|",
        title="gradient through n steps, x0 = 0.3: vanishes (λ<0) or explodes (λ>0)",
    )
    dr.legend(fontsize=7, ncol=2)

    reps = np.broadcast_to(grid, bif.shape)
    bifax.plot(reps.ravel(), bif.ravel(), ",", color="k", alpha=0.35)
    for rr in rs:
        bifax.axvline(rr, color="C3", lw=0.5, alpha=0.6)
    bifax.set(
        xlabel="r",
        ylabel="x on the attractor",
        title="bifurcation diagram",
        xlim=(grid[0], grid[-1]),
    )

    lyax.plot(grid, np.maximum(lyap, -3), color="k", lw=0.7)
    lyax.axhline(0, color="C3", lw=0.8)
    lyax.axvline(R_INF, color="C0", lw=0.8, ls="--", label=f"r∞ = {R_INF:.4f}")
    lyax.fill_between(
        grid, 0, np.clip(lyap, 0, None), color="C3", alpha=0.3, label="λ > 0: gradients explode"
    )
    lyax.set(
        xlabel="r",
        ylabel="Lyapunov exponent λ (clipped at -3)",
        title="λ(r) = lim (1/n) ln|d f^n/dx|",
        xlim=(grid[0], grid[-1]),
    )
    lyax.legend(fontsize=8, loc="lower left")
    return save_figure(fig, path)


@dataclass
class LogisticOptions:
    """The options of ``rnnkit lab logistic``."""

    r: float = option(3.5, "the map's parameter")
    x0: tuple[float, ...] = option((0.1, 0.3, 0.6, 0.9), "starting points in (0, 1)")
    n: int = option(60, "iterates for the derivative panels")
    rs: tuple[float, ...] = option(
        (2.8, 3.2, 3.5, 3.56, 3.7, 3.9, 4.0), "r values for the derivative-against-n panel"
    )
    r_min: float = option(2.5, "bifurcation diagram: lowest r")
    r_max: float = option(4.0, "bifurcation diagram: highest r")
    points: int = option(800, "bifurcation diagram: r values")


def main(argv: list[str]) -> int:
    p = lab_parser("logistic", __doc__.split("\n\n")[0], LogisticOptions)
    args = parse(p, argv)
    if args is None:
        return 0
    check_float("--r", args.r, 0.0, 4.0)
    for x0 in args.x0:
        check_float("--x0", x0, 0.0, 1.0)
    for rr in args.rs:
        check_float("--rs", rr, 0.0, 4.0)
    check_int("--n", args.n, 1, 1000)
    check_int("--points", args.points, 2, 20000)
    check_float("--r-min", args.r_min, 0.0, 4.0)
    check_float("--r-max", args.r_max, 0.0, 4.0)
    if args.r_min >= args.r_max:
        raise UserError(
            f"options --r-min/--r-max: need r-min < r-max, got {args.r_min}, {args.r_max}"
        )
    out = out_dir(args.out)
    result = run(
        args.r,
        args.x0,
        args.n,
        args.rs,
        (args.r_min, args.r_max),
        args.points,
        out,
        quiet=args.quiet,
    )
    period = result["period"]
    cycle = ", ".join(f"{c:.4f}" for c in result["cycle"] or [])
    print(
        f"f(x) = {args.r:g} x (1 - x): attractor period {period} ({cycle}); "
        f"Lyapunov exponent {result['lyapunov']:.4f}"
    )
    for x0, v in result["log10_abs_dfn_dx_by_x0"].items():
        print(f"  x0 = {x0}: |d f^{args.n}/dx| = 10^{v:.1f}")
    print(f"{'r':>6} {'period':>6} {'lyapunov':>9}  log10|d f^{args.n}/dx(0.3)|")
    for row in result["by_r"]:
        print(
            f"{row['r']:6g} {row['period'] or 'chaos':>6} {row['lyapunov']:9.4f}  "
            f"{row['log10_abs_dfn_dx']:.1f}"
        )
    print(f"wrote {out / 'logistic.png'} and {out / 'results.json'}")
    return 0
