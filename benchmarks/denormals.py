"""Denormal floats in BPTT: training steps with denormals kept (IEEE's default), flushed on the
calling thread only (``torch.set_flush_denormal``), and flushed on every thread
(``rnnkit.flush_denormals``), side by side in one process, medians (``rnnkit.denormals``).

1. Layers at the adding problem's size (T 200, B 50, input 2, hidden 128), the loss on the last
   output only (many-to-one, so the gradient reaching early steps has vanished through up to 200
   steps): one forward and backward each of torch.nn.LSTM, torch.nn.GRU, rnnkit.LSTM, rnnkit.GRU,
   rnnkit.RNN and rnnkit.MinimalGRU, at one and two threads; with the share of the input
   gradient's entries that are denormal when they are kept.
2. The first 50 training steps of a fresh model of four task presets as the trainer takes them
   (the preset's optimiser, schedule and clipping), at one thread, the time a step, median of
   ``--repeats`` // 2 whole runs a mode: ``adding`` and ``fashion --preset pixel`` (784 steps
   read pixel by pixel, one loss at the end: vanishing gradients), ``charlm`` quick and ``g2p``
   (a loss at every step: few denormals; the flush should cost nothing there).

    python benchmarks/denormals.py --json docs/denormals.json
"""

from __future__ import annotations

import statistics
import time

import torch

import rnnkit
from rnnkit.bench.common import preset_steps, script_args, write_json
from rnnkit.denormals import flush_denormals

SHAPE = (200, 50, 2, 128)  # T, B, I, H: the adding problem's
LAYERS = {
    "torch.nn.LSTM": torch.nn.LSTM,
    "torch.nn.GRU": torch.nn.GRU,
    "rnnkit.LSTM": rnnkit.LSTM,
    "rnnkit.GRU": rnnkit.GRU,
    "rnnkit.RNN": rnnkit.RNN,
    "rnnkit.MinimalGRU": rnnkit.MinimalGRU,
}
TASKS = {"adding": "default", "fashion": "pixel", "charlm": "quick", "g2p": "default"}
TASK_STEPS = 50
SMALLEST_NORMAL = torch.finfo(torch.float32).tiny


def set_mode(mode: str) -> None:
    """kept: IEEE denormals everywhere; calling thread: torch's switch alone; all threads: ours."""
    flush_denormals(False)
    if mode == "calling thread":
        torch.set_flush_denormal(True)
    elif mode == "all threads":
        flush_denormals(True)


def medians(steps: dict[str, object], modes: list[str], repeats: int) -> dict[str, dict]:
    """Each step under each mode, interleaved: {step: {mode: median ms}}."""
    times = {name: {mode: [] for mode in modes} for name in steps}
    for mode in modes:  # warm-up
        set_mode(mode)
        for step in steps.values():
            step()
    for _ in range(repeats):
        for mode in modes:
            set_mode(mode)
            for name, step in steps.items():
                start = time.perf_counter()
                step()
                times[name][mode].append(time.perf_counter() - start)
    set_mode("kept")
    return {
        name: {mode: round(statistics.median(ts) * 1e3, 2) for mode, ts in by_mode.items()}
        for name, by_mode in times.items()
    }


def layer_rows(repeats: int, shape: tuple[int, int, int, int]) -> dict[str, dict]:
    T, B, I, H = shape
    x = torch.randn(T, B, I, requires_grad=True)
    steps, shares = {}, {}
    for name, make in LAYERS.items():
        layer = make(I, H)

        def step(layer=layer) -> torch.Tensor:
            ys, _ = layer(x)
            return torch.autograd.grad(ys[-1].sum(), [x, *layer.parameters()])[0]

        steps[name] = step
        set_mode("kept")
        g = step().abs()
        shares[name] = float(((g > 0) & (g < SMALLEST_NORMAL)).float().mean())
    rows = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        modes = (
            ["kept", "all threads"] if threads == 1 else ["kept", "calling thread", "all threads"]
        )
        for name, ms in medians(steps, modes, repeats).items():
            rows[f"{name}, {threads} thread(s)"] = {
                "ms": ms,
                "kept_over_flushed": round(ms["kept"] / ms["all threads"], 2),
                "denormal_share_of_input_gradient": round(shares[name], 4),
            }
    torch.set_num_threads(1)
    return rows


def task_rows(repeats: int, steps: int, tasks: dict[str, str]) -> dict[str, dict]:
    modes = ["kept", "all threads"]
    rows = {}
    for name, preset in tasks.items():
        times = {mode: [] for mode in modes}
        for _ in range(repeats):  # whole runs, the modes in turn
            for mode in modes:
                set_mode(mode)
                times[mode].append(preset_steps(name, preset, steps))
        set_mode("kept")
        ms = {mode: round(statistics.median(ts) * 1e3, 2) for mode, ts in times.items()}
        rows[f"{name} ({preset})"] = {
            "ms": ms,
            "kept_over_flushed": round(ms["kept"] / ms["all threads"], 2),
        }
    return rows


def main(
    argv: list[str] | None = None,
    shape: tuple[int, int, int, int] = SHAPE,
    tasks: dict[str, str] = TASKS,
    task_steps: int = TASK_STEPS,
) -> dict:
    a = script_args(__doc__, argv, repeats=7)
    result = {"torch": torch.__version__, "repeats": a.repeats, "layer_shape_TBIH": list(shape)}
    result["layers"] = layer_rows(a.repeats, shape)
    result["task_steps"] = task_steps
    result["tasks_1_thread"] = task_rows(max(1, a.repeats // 2), task_steps, tasks)
    for section in ("layers", "tasks_1_thread"):
        print(section)
        for name, r in result[section].items():
            ms = ", ".join(f"{mode} {v:.1f}" for mode, v in r["ms"].items())
            share = r.get("denormal_share_of_input_gradient")
            extra = "" if share is None else f"; {share:.1%} of ∂L/∂x denormal"
            print(f"  {name:32s} ms: {ms}  ({r['kept_over_flushed']:.2f}x{extra})")
    if a.json:
        write_json(a.json, result)
    return result


if __name__ == "__main__":
    main()
