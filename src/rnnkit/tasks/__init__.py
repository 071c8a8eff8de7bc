"""Tasks: one module a task, each with its data, model, loss, metrics and presets.

The library never imports a task; tasks (and the command line) import the library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rnnkit.errors import UserError


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    presets: dict[str, Callable[[], object]]  # name -> a function returning a fresh config
    build: Callable  # (cfg, cache_dir, rank, world_size, vocab) -> a Task
    default_preset: str = "default"
    check: Callable | None = None  # (cfg) -> None, raises UserError for impossible options


def registry() -> dict[str, TaskSpec]:
    from rnnkit.tasks import charlm, dates, digits, g2p, longrange, translate, wordlm

    specs = (
        charlm.SPEC, wordlm.SPEC, *longrange.SPECS, digits.SPEC, dates.SPEC, g2p.SPEC,
        translate.SPEC,
    )  # fmt: skip
    return {spec.name: spec for spec in specs}


def get_task(name: str) -> TaskSpec:
    tasks = registry()
    if name not in tasks:
        raise UserError(f"unknown task {name!r}; tasks: {', '.join(sorted(tasks))}")
    return tasks[name]
