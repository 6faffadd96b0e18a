"""The layering of docs/architecture.md, checked on the source: stages on top, primitives below that never reach
up, no import cycle, no module over 400 lines.

Every import statement counts, wherever it stands: at the top of a module, inside a function or class (a lazy
import), or under ``if TYPE_CHECKING:``. Such an import never runs, but a circle of files through it is still a
circle, and a type-only edge is how a primitive would come to know a stage. What no statement names is out of
reach: a module imported by a computed name (``importlib.import_module`` in the stage table, the judge and the
sampling-backend registries) is looked up by name at run time, and no check here sees it."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "emkit"
MAX_LINES = 400
OWN_JOB = {
    "emkit.store": ("emkit.judges.run",),
    "emkit.sampling": ("emkit.judges.local",),
    "emkit.judges": ("emkit.judges.",),
}
"""Below the stages, the store, sampling and judges are imported only by the modules whose job needs them: the
judge cache writes judgements to the store, the local judge renders chat prompts, judges use each other."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def import_statements(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement in ``tree``: top level, in functions and classes, under ``if TYPE_CHECKING:``."""
    return (node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom))


def imports_of(path: Path, name: str, known: set[str]) -> Iterator[tuple[str, int]]:
    """Every emkit module an import statement of ``path`` names, with the statement's line."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in import_statements(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base
                                                                                                    else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target.startswith("emkit") and target != name:
                yield target, node.lineno


def edges() -> dict[str, list[tuple[str, int]]]:
    found = modules()
    known = set(found)
    return {name: sorted(set(imports_of(path, name, known))) for name, path in found.items()}


def is_top(name: str) -> bool:
    """The command line and the stage modules: the only layer allowed to import a stage."""
    return name == "emkit.cli" or name.startswith("emkit.stages.")


def test_no_primitive_imports_a_stage():
    upward = [f"{name}:{line} imports {target}" for name, targets in edges().items() if not is_top(name)
              for target, line in targets
              if target == "emkit.stages" or target.startswith("emkit.stages.")]
    assert not upward, "primitives import stages:\n" + "\n".join(upward)


@pytest.mark.parametrize("guarded", sorted(OWN_JOB))
def test_store_sampling_and_judges_are_imported_only_where_that_is_the_job(guarded):
    allowed = OWN_JOB[guarded]
    misplaced = [f"{name}:{line} imports {target}" for name, targets in edges().items()
                 if not is_top(name) and name != "emkit.stages" and not name.startswith(allowed)
                 and not name.startswith(guarded)
                 for target, line in targets if target == guarded or target.startswith(guarded + ".")]
    assert not misplaced, f"{guarded} imported below the stages by:\n" + "\n".join(misplaced)


def test_no_import_cycle():
    graph = {name: [target for target, _ in targets] for name, targets in edges().items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in graph.get(node, []):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*stack[stack.index(target):], target]))
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_module_over_400_lines():
    long = [f"{name}: {count}" for name, path in modules().items()
            if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert not long, f"modules over {MAX_LINES} lines:\n" + "\n".join(long)


def plant(tmp_path, monkeypatch, files: dict[str, str]) -> None:
    """Point the checks at a package of ``files`` (paths relative to it, with their text) instead of emkit."""
    planted = tmp_path / "emkit"
    for relative, text in {"__init__.py": "", **files}.items():
        (planted / relative).parent.mkdir(parents=True, exist_ok=True)
        (planted / relative).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", planted)


def test_the_checks_see_a_planted_upward_edge(tmp_path, monkeypatch):
    """The walk itself works: an import of a stage from a primitive is reported with its line, a type-only one too."""
    plant(tmp_path, monkeypatch, {"stages/__init__.py": "", "stages/steer.py": "",
                                  "metrics.py": "import json\n\nfrom emkit.stages.steer import run\n\n"
                                                "if TYPE_CHECKING:\n    from emkit.stages import steer\n"})
    assert edges()["emkit.metrics"] == [("emkit.stages.steer", 3), ("emkit.stages.steer", 6)]
    with pytest.raises(AssertionError, match=r"emkit\.metrics:3 imports emkit\.stages\.steer"):
        test_no_primitive_imports_a_stage()


def test_the_cycle_check_sees_a_planted_cycle_of_any_import_style(tmp_path, monkeypatch):
    """A circle closed by a lazy import in a function and a type-only import is a circle."""
    plant(tmp_path, monkeypatch, {"a.py": "from emkit import b\n",
                                  "b.py": "def load():\n    import emkit.c\n",
                                  "c.py": "if TYPE_CHECKING:\n    from .a import Thing\n"})
    with pytest.raises(AssertionError, match=r"emkit\.a -> emkit\.b -> emkit\.c -> emkit\.a"):
        test_no_import_cycle()
