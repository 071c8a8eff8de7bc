"""Tasks: one module a task, each with its data, model, loss, metrics and presets, registered
with one line (``SPEC = register(TaskSpec(...))``; the interface is ``rnnkit.tasks.base``).

The library never imports a task; tasks (and the command line) import the library.
"""

from rnnkit.tasks.base import TaskSpec, get_task, register, registry, task_commands

__all__ = ["TaskSpec", "get_task", "register", "registry", "task_commands"]
