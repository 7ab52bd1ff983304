"""The README and docs/ name only what exists: module paths, `ssd.` modules, relative links and their anchors.

Modules move; a page that names one must move with it. These tests list every name that no longer
resolves, so that a refactoring shows which pages to fix instead of leaving them to rot.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

# Pages another branch generates: links to them may point nowhere until it is merged.
PENDING: set[str] = set()

# The fresh-machine commands the project promises (README); they must stay exactly these.
FRESH_COMMANDS = (
    "/usr/bin/python3 -m venv ~/.local/share/ssd/venv && ~/.local/share/ssd/venv/bin/pip install . "
    "&& ~/.local/share/ssd/venv/bin/ssd run",
    "bash .ci/run",
)

# A repository path: one of the top folders, not inside a longer path (~/.config/ssd/... is no module).
REPO_PATH = re.compile(r"(?<![\w./~-])((?:ssd|tests|benchmarks|examples|conda|docs|\.ci)/[\w./-]*)")
DOTTED = re.compile(r"`(ssd(?:\.\w+)+)`")
NOT_MODULES = {"toml", "service"}  # ssd.toml, ssd.service: files, not modules
NOT_PATHS = {"conda/mamba"}  # prose ("conda/mamba root prefixes"), not the conda/ folder
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
CODE_NAME = re.compile(r"`((?:[A-Z][a-z0-9]+\w*)(?:\.\w+)?|\w+(?:\.\w+)?\(\))`")


def page_id(page: Path) -> str:
    """The page as the repository names it."""
    return page.relative_to(ROOT).as_posix()


def prose(page: Path) -> list[str]:
    """The page's lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in page.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.lower().replace("`", ""))
    return text.replace(" ", "-")


@cache
def anchors(page: Path) -> set[str]:
    """Every anchor the page's headings make (a repeated heading gets -1, -2, ...)."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose(page):
        match = HEADING.match(line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def repo_paths(page: Path) -> set[str]:
    """The repository paths a page names, trailing punctuation dropped."""
    return {match.rstrip(".,:;") for match in REPO_PATH.findall(page.read_text())} - NOT_PATHS


def links(page: Path) -> list[str]:
    """The page's relative link targets (web addresses left out)."""
    targets = [target for line in prose(page) for target in LINK.findall(line)]
    return [target for target in targets if not re.match(r"^[a-z]+:", target)]


def broken_link(page: Path, target: str) -> str | None:
    """Why *target*, linked from *page*, leads nowhere; None when it resolves."""
    path_part, _, anchor = target.partition("#")
    path = (page.parent / path_part).resolve() if path_part else page
    name = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
    if name in PENDING and not path.exists():
        return None
    if not path.exists():
        return f"{target}: no such file"
    if anchor and path.suffix == ".md" and anchor not in anchors(path):
        return f"{target}: {name} has no heading with the anchor #{anchor}"
    return None


@cache
def module_names(dotted: str) -> tuple[Path, list[str]] | None:
    """The file of the longest module prefix of *dotted*, and the names after it; None if even ssd.X is none."""
    parts = dotted.split(".")
    for end in range(len(parts), 1, -1):
        base = ROOT.joinpath(*parts[:end])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate, parts[end:]
    return None


def top_level_names(tree: ast.Module) -> dict[str, ast.AST]:
    """What a module defines or imports at its top level."""
    names: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            names.update({t.id: node for t in node.targets if isinstance(t, ast.Name)})
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
        elif isinstance(node, ast.ImportFrom):
            names.update({(alias.asname or alias.name): node for alias in node.names})
    return names


def unresolved_dotted(dotted: str) -> str | None:
    """Why `ssd.x.y.Name` names nothing; None when the module (and the name in it) exists."""
    found = module_names(dotted)
    if found is None:
        return f"{dotted}: no such module"
    path, rest = found
    if not rest:
        return None
    names = top_level_names(ast.parse(path.read_text()))
    if rest[0] not in names:
        return f"{dotted}: {page_id(path)} defines no {rest[0]}"
    if len(rest) > 1 and rest[1] not in class_members().get(rest[0], set()):
        return f"{dotted}: {rest[0]} has no {rest[1]}"
    return None


@cache
def class_members() -> dict[str, set[str]]:
    """For every class in ssd/: the names defined in it or in its bases (by name)."""
    own: dict[str, set[str]] = {}
    bases: dict[str, list[str]] = {}
    for path in (ROOT / "ssd").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                own.setdefault(node.name, set()).update(_members(node))
                bases.setdefault(node.name, []).extend(b.id for b in node.bases if isinstance(b, ast.Name))
    return {name: _inherited(name, own, bases, set()) for name in own}


def _members(node: ast.ClassDef) -> set[str]:
    names = set()
    for item in node.body:
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(item.name)
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            names.add(item.target.id)
        elif isinstance(item, ast.Assign):
            names.update(t.id for t in item.targets if isinstance(t, ast.Name))
    return names


def _inherited(name: str, own: dict[str, set[str]], bases: dict[str, list[str]], seen: set[str]) -> set[str]:
    seen.add(name)
    members = set(own.get(name, set()))
    for base in bases.get(name, []):
        if base not in seen:
            members |= _inherited(base, own, bases, seen)
    return members


@cache
def defined_functions() -> set[str]:
    """Every function and method name defined anywhere in ssd/."""
    names = set()
    for path in (ROOT / "ssd").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(node.name)
    return names


def unresolved_code_name(token: str) -> str | None:
    """Why a class, `Class.member` or `function()` named in the architecture page exists nowhere in ssd/."""
    name = token.removesuffix("()")
    head, _, member = name.partition(".")
    if head[0].isupper():
        if head not in class_members():
            return f"{token}: no class {head} in ssd/"
        if member and member not in class_members()[head]:
            return f"{token}: {head} has no {member}"
        return None
    if member:  # module.function(): the function must exist somewhere
        return None if member in defined_functions() else f"{token}: no function {member} in ssd/"
    return None if name in defined_functions() else f"{token}: no function {name} in ssd/"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_named_paths_exist(page: Path) -> None:
    """Every ssd/, tests/, benchmarks/... path a page names is a file or folder of the repository."""
    missing = sorted(name for name in repo_paths(page) if name not in PENDING and not (ROOT / name).exists())
    assert not missing, f"{page_id(page)} names paths that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_named_modules_exist(page: Path) -> None:
    """Every `ssd.module` (or `ssd.module.Name`) a page names is importable by that name."""
    named = {d for d in DOTTED.findall(page.read_text()) if d.split(".")[-1] not in NOT_MODULES}
    problems = sorted(filter(None, map(unresolved_dotted, named)))
    assert not problems, f"{page_id(page)}: {problems}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_relative_links_resolve(page: Path) -> None:
    """Every relative link (and its #anchor, for a page) leads somewhere."""
    problems = sorted(filter(None, (broken_link(page, target) for target in links(page))))
    assert not problems, f"{page_id(page)} has broken links: {problems}"


def test_architecture_names_real_code() -> None:
    """The request path names classes, methods and functions that exist, so a rename shows up here."""
    page = ROOT / "docs" / "architecture.md"
    tokens = {token for line in prose(page) for token in CODE_NAME.findall(line)}
    assert len(tokens) > 30, "the architecture page names too little code to check"
    problems = sorted(filter(None, map(unresolved_code_name, tokens)))
    assert not problems, f"docs/architecture.md names code that does not exist: {problems}"


def test_layout_lists_every_module() -> None:
    """development.md's module tables list every module of ssd/, and only those."""
    text = (ROOT / "docs" / "development.md").read_text()
    listed = set(re.findall(r"^\| `(ssd/[\w/]+\.py)` \|", text, flags=re.MULTILINE))
    actual = {path.relative_to(ROOT).as_posix() for path in (ROOT / "ssd").rglob("*.py")}
    assert listed == actual, (
        f"docs/development.md: add rows for {sorted(actual - listed)}, remove rows for {sorted(listed - actual)}"
    )


def test_layout_names_every_package() -> None:
    """development.md's package table names every package of ssd/."""
    text = (ROOT / "docs" / "development.md").read_text()
    packages = {p.parent.relative_to(ROOT).as_posix() + "/" for p in (ROOT / "ssd").glob("*/__init__.py")}
    missing = sorted(p for p in packages if f"| `{p}` |" not in text)
    assert not missing, f"docs/development.md's package table lacks {missing}"


def test_pending_pages_are_still_pending() -> None:
    """A page generated elsewhere that now exists is checked like any other: drop it from PENDING."""
    arrived = sorted(name for name in PENDING if (ROOT / name).exists())
    assert not arrived, f"{arrived} exist now: remove them from PENDING in {Path(__file__).name}"


def test_fresh_machine_commands_are_kept() -> None:
    """The README gives the project's two fresh-machine commands, each on a line of its own, unchanged."""
    lines = (ROOT / "README.md").read_text().splitlines()
    missing = [command for command in FRESH_COMMANDS if command not in lines]
    assert not missing, f"README.md lost its fresh-machine commands: {missing}"


def test_every_page_is_in_the_index() -> None:
    """docs/README.md links every page of docs/."""
    index = ROOT / "docs" / "README.md"
    linked = {(index.parent / target.partition("#")[0]).resolve() for target in links(index)}
    pages = {page.resolve() for page in (ROOT / "docs").glob("*.md") if page != index}
    pages |= {(ROOT / name).resolve() for name in PENDING if name.startswith("docs/")}
    missing = sorted(page.name for page in pages - linked)
    assert not missing, f"docs/README.md does not link {missing}"
