"""What rnnkit.LSTM's forward costs around torch's fused op, against torch.nn.LSTM's: one
thread, forward under ``no_grad``, side by side in one process, at config B's shapes of
``rnnkit bench speed`` (batch 32, input and hidden 128, one layer).

Four rows take turns, round-robin, ``--repeats`` times: torch's op called directly
(``torch._VF.lstm``, the floor), torch.nn.LSTM, rnnkit.LSTM on the same weights, and
rnnkit.LSTM's outputs checked equal to torch.nn.LSTM's once. At T = 2 the difference to the
floor is the layer's fixed per-call cost; at T = 100 it is what config B sees. The figures are
medians of the rounds, in µs a call, and the median of the per-round ratio torch.nn / rnnkit.
To compare two versions of rnnkit, run the script with ``PYTHONPATH`` pointing at each one's
``src``.

    OMP_NUM_THREADS=1 python benchmarks/lstm_call_cost.py --json docs/lstm_call_cost.json
"""

from __future__ import annotations

import statistics

import torch

import rnnkit
from rnnkit.bench.common import mean_ms, script_args, write_json

B, E, H = 32, 128, 128


def one_length(T: int, repeats: int) -> dict:
    theirs = torch.nn.LSTM(E, H)
    ours = rnnkit.LSTM(E, H)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(T, B, E)
    params = list(theirs._flat_weights)
    hx = (torch.zeros(1, B, H), torch.zeros(1, B, H))
    rows = {
        "torch op alone": lambda: torch._VF.lstm(x, hx, params, True, 1, 0.0, False, False, False),
        "torch.nn.LSTM": lambda: theirs(x),
        "rnnkit.LSTM": lambda: ours(x),
    }
    calls = max(1, 2000 // T)  # about the same time a round for every length
    us: dict[str, list[float]] = {name: [] for name in rows}
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], theirs(x)[0])
        for fn in rows.values():
            mean_ms(fn, calls)  # warm-up
        for _ in range(repeats):
            for name, fn in rows.items():
                us[name].append(mean_ms(fn, calls) * 1e3)
    ratios = [a / b for a, b in zip(us["torch.nn.LSTM"], us["rnnkit.LSTM"], strict=True)]
    return {
        "T": T,
        "calls_a_round": calls,
        "us": {name: round(statistics.median(v), 1) for name, v in us.items()},
        "torch_nn_over_rnnkit": round(statistics.median(ratios), 4),
    }


def main(argv: list[str] | None = None, lengths: tuple[int, ...] = (2, 100)) -> dict:
    a = script_args(__doc__, argv, repeats=41)
    rows = []
    for T in lengths:
        rows.append(one_length(T, a.repeats))
        times = ", ".join(f"{k} {v:.1f} µs" for k, v in rows[-1]["us"].items())
        print(f"T = {T}: {times}; torch.nn / rnnkit {rows[-1]['torch_nn_over_rnnkit']:.3f}")
    result = {
        "torch": torch.__version__,
        "rnnkit": rnnkit.__version__,
        "threads": 1,
        "repeats": a.repeats,
        "shapes": {"B": B, "E": E, "H": H},
        "rows": rows,
    }
    if a.json:
        write_json(a.json, result)
    return result


if __name__ == "__main__":
    main()
