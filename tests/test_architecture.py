"""The shape of the package, as DESIGN.md draws it: no import cycles (counting imports inside
functions too), the library never imports a task, the CLI, the lab or the configuration, and no
module grows past 450 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
LIBRARY = ("cells", "kernels", "layers", "attention", "decoding", "diagnostics", "seq2seq",
           "scheduled_sampling", "ensemble", "ctc", "crf")  # fmt: skip
# The one bridge from the library to trained runs: rnnkit.ctc.CharLM.from_run loads a
# language-model run (rnnkit.tasks.runs), the language models being tasks.
BRIDGES = {"rnnkit.ctc.lm": {"rnnkit.tasks.runs"}}
NOT_FOR_THE_LIBRARY = ("tasks", "cli", "lab", "config")


def modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the rnnkit modules it imports anywhere in its body (nearest existing module)."""
    mods = modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        package = m if path.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = package
                    for _ in range(node.level - 1):
                        pkg = pkg.rpartition(".")[0]
                    base = f"{pkg}.{base}" if base else pkg
                targets = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                continue
            for t in targets:
                r = resolve(t) if t.startswith("rnnkit") else None
                if r and r != m:
                    graph[m].add(r)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_library_imports_no_task_cli_lab_or_config():
    graph = import_graph()
    library = [m for m in graph if m.removeprefix("rnnkit.").split(".")[0] in LIBRARY]
    assert len(library) > 20  # the walk found the library
    wrong = {
        m: sorted(
            d
            for d in deps - BRIDGES.get(m, set())
            if d.removeprefix("rnnkit.").split(".")[0] in NOT_FOR_THE_LIBRARY
        )
        for m, deps in graph.items()
        if m in library
    }
    assert {m: d for m, d in wrong.items() if d} == {}


@pytest.mark.parametrize("path", sorted(modules().values()), ids=lambda p: p.name)
def test_modules_stay_under_450_lines(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 450
