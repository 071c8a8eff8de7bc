"""What a task is, and the registry of tasks.

A task is one module in ``rnnkit/tasks/`` that ends with one registration line::

    SPEC = register(TaskSpec(name="copy", description="...", presets={...}, build=build))

``TaskSpec`` holds what the command line and the run machinery need: the name and description,
the presets (named functions returning a fresh config of the task's dataclasses), ``build``
(the data, the model, the loss and the metrics: a ``rnnkit.train.task.Task``), the range
checks, how a finished run is reported, how a checkpoint is loaded back, ``predict`` for one
input, and the commands the task adds: subcommands (``sample``, ``score`` for language models)
and run commands (``predict``, ``eval``), which ``rnnkit predict RUN`` dispatches by RUN's
task (``rnnkit plot RUN`` draws whatever a run's log holds, for every task alike). Everything
optional has a default that suits most tasks. ``cli.py`` knows no task: it dispatches through
``registry()``.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rnnkit.errors import UserError


@dataclass(frozen=True)
class TaskSpec:
    """A task, as ``rnnkit train NAME`` and ``load_run`` see it."""

    name: str
    description: str
    presets: dict[str, Callable[[], object]]  # name -> a function returning a fresh config
    build: Callable  # (cfg, cache_dir, rank, world_size, vocab) -> a rnnkit.train.task.Task
    default_preset: str = "default"
    check: Callable | None = None  # (cfg) -> None, raises UserError for impossible options
    # a checkpoint's saved vocabulary (meta["vocab"]) -> what ``build`` takes as ``vocab``
    load_vocab: Callable[[object], object] | None = None
    # (task, result, run_dir, dry_run) -> None: print the end of a run; None: task.report
    finish: Callable | None = None
    # (checkpoint, path) -> a loaded run (model in eval mode, vocabulary, config) for load_run
    load: Callable | None = None
    # (loaded run, input text) -> the output text: the model applied to one input
    predict: Callable[[object, str], str] | None = None
    # subcommands this task adds: name -> (function(argv) -> exit status, help line)
    commands: dict[str, tuple[Callable[[list[str]], int], str]] = field(default_factory=dict)
    # commands on a trained run, ``rnnkit NAME RUN ...`` (``predict``, ``eval``): the command
    # line dispatches each to the one of RUN's task; name -> (function(argv) -> status, help)
    run_commands: dict[str, tuple[Callable[[list[str]], int], str]] = field(default_factory=dict)

    def vocab_from_checkpoint(self, saved: object) -> object:
        return saved if self.load_vocab is None else self.load_vocab(saved)

    def finish_run(self, task, result: dict, run_dir: Path, dry_run: bool) -> None:
        if self.finish is not None:
            self.finish(task, result, run_dir, dry_run)
        else:
            print(task.report(result) + f"; checkpoints in {run_dir}")


class EpochBatches:
    """The Task protocol's (``rnnkit.train.task.Task``) bookkeeping for a task that draws
    ``cfg.data.epoch_batches`` batches an epoch from its data, addressed by ``(self.epoch,
    position)``, and moves each batch to ``self.device`` when it uses it: ``to`` records the
    device, ``start_epoch`` the epoch. A task whose epochs or devices need more overrides
    these methods."""

    cfg: Any  # the task's config, with a ``data.epoch_batches`` option
    device: Any  # torch.device
    epoch: int

    def to(self, device) -> None:
        self.device = device

    def num_train_batches(self) -> int:
        return self.cfg.data.epoch_batches

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch


_REGISTRY: dict[str, TaskSpec] = {}


def register(spec: TaskSpec) -> TaskSpec:
    """Add ``spec`` to the registry (the one registration line of a task module)."""
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"task name {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def registry() -> dict[str, TaskSpec]:
    """Every task, by name, in name order: each module of ``rnnkit.tasks`` is imported, and
    registers its own."""
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):  # this package's modules
        importlib.import_module(f"rnnkit.tasks.{module.name}")
    return dict(sorted(_REGISTRY.items()))


def check_library_options(section: str, options: object, build: Callable[[], object]) -> None:
    """The library's own checks of ``options`` (a config dataclass), worded as the options.

    ``build()`` makes the model (or the part of it that ``options`` configures) on the meta
    device, so that no memory is allocated; the library raises ValueError/TypeError naming its
    argument ("hidden_size must be a positive integer, got 0"), which becomes one line naming
    the key ("option 'model.hidden_size' must be a positive integer, got 0"). Each option is
    thus checked once, where it is used.
    """
    import torch

    try:
        with torch.device("meta"):
            build()
    except UserError:  # already worded as an option (by the task's own model)
        raise
    except (ValueError, TypeError) as e:
        name, _, rest = str(e).partition(" ")
        if name in {f.name for f in fields(options)}:
            raise UserError(f"option '{section}.{name}' {rest}") from None
        raise UserError(f"option '{section}': {e}") from None
    except RuntimeError:  # sizes beyond any storage: check_model_memory names the option
        pass


def get_task(name: str) -> TaskSpec:
    tasks = registry()
    if name not in tasks:
        raise UserError(f"unknown task {name!r}; tasks: {', '.join(sorted(tasks))}")
    return tasks[name]


def task_commands() -> dict[str, tuple[Callable[[list[str]], int], str]]:
    """The subcommands the tasks add (``sample``, ``score``, ...), each once, and the run
    commands (``predict``, ``eval``), each dispatched by the run's task."""
    commands: dict[str, tuple[Callable[[list[str]], int], str]] = {}
    for spec in registry().values():
        commands.update(spec.commands)
    names = {n for spec in registry().values() for n in spec.run_commands}
    for name in [
        *(n for n in RUN_COMMAND_HELP if n in names),
        *sorted(names - RUN_COMMAND_HELP.keys()),
    ]:
        commands[name] = (functools.partial(run_command, name), RUN_COMMAND_HELP.get(name, ""))
    return commands


RUN_COMMAND_HELP = {
    "predict": "a trained run's output for inputs: rnnkit predict RUN INPUT ... (by its task)",
    "eval": "a trained run's held-out scores: rnnkit eval RUN [options] (by its task)",
}


def run_command(name: str, argv: list[str]) -> int:
    """``rnnkit NAME RUN ...``: the command ``NAME`` of RUN's task (``TaskSpec.run_commands``).

    RUN (a run directory or a checkpoint file) comes first; its task is read from the
    checkpoint's header.
    """
    from rnnkit.train.checkpoint import checkpoint_task
    from rnnkit.train.run_dir import checkpoint_path

    tasks = [s.name for s in registry().values() if name in s.run_commands]
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: rnnkit {name} RUN [options]; rnnkit {name} RUN --help lists them")
        print(f"{RUN_COMMAND_HELP.get(name, '')}; for runs of: {', '.join(tasks)}")
        return 0
    if argv[0].startswith("-"):
        raise UserError(f"{name} needs the run first: rnnkit {name} RUN [options]")
    task = checkpoint_task(checkpoint_path(Path(argv[0])))
    spec = registry().get(task)
    if spec is None or name not in spec.run_commands:
        raise UserError(
            f"{argv[0]} is a {task!r} run; rnnkit {name} works for runs of: {', '.join(tasks)}"
        )
    return spec.run_commands[name][0](argv)
