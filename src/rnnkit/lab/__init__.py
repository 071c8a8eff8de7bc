"""The RNN lab: experiments the lectures spend their pages on, as commands with plots.

    rnnkit lab NAME [options]      (rnnkit lab --help lists them; rnnkit lab NAME --help)

Each experiment is a module here with ``main(argv: list[str]) -> int`` and a one-line summary;
``EXPERIMENTS`` maps the command name to (module, summary). Modules are imported on use, so
``rnnkit lab --help`` stays fast.
"""

from __future__ import annotations

import importlib

from rnnkit.errors import UserError

# name -> (module under rnnkit.lab, one-line summary)
EXPERIMENTS: dict[str, tuple[str, str]] = {
    "compare": ("compare", "cells against sequence length T on adding/copy: table and plot"),
    "gradflow": ("gradflow", "||dL/dh_t|| against t per cell, at initialisation and trained"),
    "explode": ("explode", "Elman RNN, recurrent weights > 1: no clipping, by norm, by value"),
    "logistic": ("logistic", "f(x) = 3.5x(1-x): iterates, |d f^n/dx| against n, Lyapunov"),
    "activations": ("activations", "hidden units of a trained char LM over a text, as heat maps"),
    "teacher-forcing": ("teacher", "teacher forcing vs free running vs scheduled sampling"),
}


def run(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: rnnkit lab NAME [options]   (rnnkit lab NAME --help for each)\n")
        print("experiments:")
        for name, (_, text) in EXPERIMENTS.items():
            print(f"  {name:12} {text}")
        return 0
    name = argv[0]
    if name not in EXPERIMENTS:
        raise UserError(f"unknown lab experiment {name!r}; experiments: {', '.join(EXPERIMENTS)}")
    module = importlib.import_module(f"rnnkit.lab.{EXPERIMENTS[name][0]}")
    return module.main(argv[1:])
