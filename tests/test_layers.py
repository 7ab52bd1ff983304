"""The package's layering: no import cycle, and no module imports from a layer above its own.

Discovered by an AST walk of every import in ssd/ (those inside functions too).
A module belongs to the unit of its longest prefix in LAYERS; a unit may
import its own layer and the layers below it, and the units' graph has no
cycle either (``ssd.edge`` <-> ``ssd.broker`` would be one, were the broker-edge
link not a wire contract of its own).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import ssd

PACKAGE = Path(ssd.__file__).parent

BASE, WIRE, LIBRARY, WORKERS, BROKER, EDGE, FRONTENDS = range(7)
LAYERS = {
    # base: errors, configuration, keys, the client protocol; no processes, no sockets of their own
    **dict.fromkeys(
        ["ssd", "ssd.errors", "ssd.paths", "ssd.hostinfo", "ssd.isolation", "ssd.users", "ssd.state", "ssd.topics"],
        BASE,
    ),
    **dict.fromkeys(["ssd.protocol", "ssd.messages", "ssd.config", "ssd.keys", "ssd.certs", "ssd.sealed"], BASE),
    "ssd.kernelerrors": BASE,
    # [slurm] is a section of the configuration, defined beside the library that reads it
    **dict.fromkeys(["ssd.kernels.slurm.limits", "ssd.kernels.slurm.units", "ssd.kernels.slurm.errors"], BASE),
    # the one contract of message types and their replies; shared small utilities; the config reference
    **dict.fromkeys(["ssd.contract", "ssd.replies", "ssd.files", "ssd.configdoc", "ssd.configtypes"], BASE),
    # the contracts between the daemon's processes (and the key port's, which the client speaks too)
    "ssd.workers.wire": WIRE,
    "ssd.edge.link": WIRE,
    "ssd.broker.keyport": WIRE,  # its wire format and server import nothing of ssd; the client reads its format
    # libraries: what a process is built from
    **dict.fromkeys(["ssd.client", "ssd.kernels", "ssd.envs", "ssd.floodguard"], LIBRARY),
    # the daemon's processes: workers, the broker that spawns them, the edge that uses the broker's policy
    "ssd.workers": WORKERS,
    "ssd.broker": BROKER,
    "ssd.edge": EDGE,
    # what people and other programs run (contract_doc renders the protocol page, events included)
    "ssd.contract_doc": FRONTENDS,
    **dict.fromkeys(["ssd.ctl", "ssd.service", "ssd.provisioner", "ssd.spyder", "ssd.cli", "ssd.__main__"], FRONTENDS),
}


def module_name(path: Path) -> str:
    """``ssd/ctl/main.py`` -> ``ssd.ctl.main``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: Iterable[str]) -> set[str]:
    """The ssd modules *path* imports, anywhere in it (``from ssd.x import y`` is ssd.x.y if that is a module)."""
    known = set(modules)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: ssd imports absolutely"
            base = node.module or ""
            found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names}
    return {target for target in found if target in known}


def import_graph() -> dict[str, set[str]]:
    """Every ssd module and the ssd modules it imports."""
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: imports(path, paths) for name, path in paths.items()}


def unit_of(module: str) -> str:
    """The longest LAYERS prefix of *module*."""
    candidates = [unit for unit in LAYERS if module == unit or module.startswith(unit + ".")]
    assert candidates, f"{module} is in no layer: add it to LAYERS"
    return max(candidates, key=len)


def upward(graph: Mapping[str, set[str]]) -> list[str]:
    """Imports from a higher layer, as ``importer -> imported``."""
    return sorted(
        f"{source} -> {target}"
        for source, targets in graph.items()
        for target in targets
        if LAYERS[unit_of(target)] > LAYERS[unit_of(source)]
    )


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (or a node importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while (top := stack.pop()) != node:
                component.append(top)
            component.append(node)
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def unit_graph(graph: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """The imports between units (a unit's imports of itself left out)."""
    units: dict[str, set[str]] = {}
    for source, targets in graph.items():
        units.setdefault(unit_of(source), set()).update(unit_of(t) for t in targets if unit_of(t) != unit_of(source))
    return units


def test_no_module_imports_from_a_higher_layer() -> None:
    """Base < wire < libraries < workers < broker < edge < frontends; each module imports its layer or lower."""
    assert upward(import_graph()) == []


def test_no_import_cycle_between_modules_or_units() -> None:
    """Not even through an import inside a function (a cycle put off until run time is still a cycle)."""
    graph = import_graph()
    assert cycles(graph) == []
    assert cycles(unit_graph(graph)) == []


def test_every_module_has_a_layer() -> None:
    """A new package must be placed in LAYERS, not fall into a layer by accident."""
    for module in import_graph():
        unit_of(module)


def test_the_checks_catch_an_upward_import_and_a_cycle() -> None:
    """The checks can fail: a base module importing ssd-ctl, and two modules importing each other."""
    assert upward({"ssd.errors": {"ssd.ctl.main"}, "ssd.ctl.main": {"ssd.errors"}}) == ["ssd.errors -> ssd.ctl.main"]
    assert cycles({"ssd.ctl.kernels": {"ssd.ctl.tunnel"}, "ssd.ctl.tunnel": {"ssd.ctl.kernels"}}) == [
        ["ssd.ctl.kernels", "ssd.ctl.tunnel"]
    ]
    assert cycles(unit_graph({"ssd.broker.edgelink": {"ssd.edge.process"}, "ssd.edge.process": {"ssd.broker.zap"}}))
