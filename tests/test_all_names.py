"""``__all__`` says what a module offers: every name others import from it is listed, every listed name exists."""

from __future__ import annotations

import ast
import collections
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
USERS = ("ssd", "tests", "benchmarks", "examples")


def _module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def _modules() -> dict[str, ast.Module]:
    return {_module_name(path): ast.parse(path.read_text()) for path in sorted((ROOT / "ssd").rglob("*.py"))}


def _imported(modules: dict[str, ast.Module]) -> dict[str, set[str]]:
    """For each ssd module, the names ``from MODULE import NAME`` takes from it anywhere in the repository."""
    taken: dict[str, set[str]] = collections.defaultdict(set)
    for folder in USERS:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in modules:
                    taken[node.module].update(alias.name for alias in node.names)
    return taken


def _listed(tree: ast.Module) -> set[str] | None:
    """The names of ``__all__`` (its ``=`` and ``+=`` lines), or None when the module has none."""
    names: set[str] | None = None
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if isinstance(target, ast.Name) and target.id == "__all__" and isinstance(node, ast.Assign | ast.AugAssign):
            names = (names or set()) | set(ast.literal_eval(node.value))
    return names


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements of *body*, those inside top-level ``try`` and ``if`` blocks included."""
    found: list[ast.stmt] = []
    for node in body:
        found.append(node)
        if isinstance(node, ast.Try):
            found += _top_level(node.body + node.orelse + [s for h in node.handlers for s in h.body])
        elif isinstance(node, ast.If):
            found += _top_level(node.body + node.orelse)
    return found


def _defined(tree: ast.Module) -> set[str]:
    """Top-level names the module defines itself (not those it imports)."""
    names: set[str] = set()
    for node in _top_level(tree.body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_every_imported_name_is_listed_in_all() -> None:
    modules = _modules()
    taken = _imported(modules)
    missing = {}
    for name, tree in modules.items():
        listed = _listed(tree)
        if listed is None:
            continue
        public = {n for n in taken[name] & _defined(tree) if not n.startswith("_")}
        if public - listed:
            missing[name] = sorted(public - listed)
    assert missing == {}, "add these to the module's __all__ (other modules use them)"


def test_every_listed_name_exists() -> None:
    absent = {}
    for name, tree in _modules().items():
        listed = _listed(tree) or set()
        imported = {
            alias.asname or alias.name
            for node in tree.body
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in node.names
        }
        if listed - _defined(tree) - imported:
            absent[name] = sorted(listed - _defined(tree) - imported)
    assert absent == {}, "these names are in __all__ but the module has no such name"


def test_the_check_sees_a_missing_name() -> None:
    """The check itself: a module that others import ``B`` from, listing only ``A``, is caught."""
    tree = ast.parse('__all__ = ["A"]\nA = 1\nB = 2\n')
    listed = _listed(tree)
    assert listed == {"A"}
    assert {"B"} & _defined(tree) - listed == {"B"}
