"""Find a user's conda and virtual environments and what they can run, cached by modification times.

Called by the per-user env worker (as that user, in a thread): it reads only
what the user can read and never starts a Python. ``EnvDiscovery.list()`` is
cheap when nothing changed: it stats the watched files and folders and reuses
what it read before; a new or changed environment is read on the next call.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from ssd.envs import locations
from ssd.envs.compat import env_verdict
from ssd.envs.condarc import read_envs_dirs
from ssd.envs.metadata import Kind, PrefixFacts, read_prefix, site_packages_dirs
from ssd.envs.stamps import Stamp, StampCache, stamp
from ssd.errors import ErrorCode, SSDError

__all__ = ["DiscoveryOptions", "EnvDiscovery", "EnvInfo", "discover", "discovery_options", "find_env"]


def _doc(text: str) -> msgspec.Meta:
    return msgspec.Meta(description=text)


class DiscoveryOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What the administrator configures for environment discovery (an ``[envs]`` section)."""

    extra_roots: Annotated[list[str], _doc("More conda/mamba root prefixes to search (multi-user installs).")] = []
    envs_dirs: Annotated[list[str], _doc("More folders whose children are conda environments.")] = []
    venv_dirs: Annotated[list[str], _doc("Folders whose children with a pyvenv.cfg are listed.")] = msgspec.field(
        default_factory=lambda: list(locations.DEFAULT_VENV_DIRS)
    )
    exclude: Annotated[list[str], _doc("fnmatch patterns on names (or on prefixes, with a /) to hide.")] = (
        msgspec.field(default_factory=lambda: ["_*"])
    )
    known_roots: Annotated[bool, _doc("Search the usual install places (~/miniconda3, /opt/conda, ...).")] = True


def discovery_options(envs: Mapping[str, Any]) -> DiscoveryOptions:
    """The discovery options of an ``[envs]`` section (its other keys are for administration)."""
    return msgspec.convert({k: v for k, v in envs.items() if k in DiscoveryOptions.__struct_fields__}, DiscoveryOptions)


class EnvInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One environment as reported to clients."""

    name: str
    prefix: str
    kind: Literal["conda", "venv"]
    python: str | None
    spyder_kernels: str | None
    ipykernel: str | None
    spyder_ready: bool
    spyder_versions: list[str]
    writable: bool
    ipython: str | None = None
    spyder_problem: str | None = None


@dataclass(frozen=True)
class _Candidate:
    """A folder that may be an environment, and how it was found."""

    prefix: Path
    is_root: bool = False
    allow_venv: bool = False


@dataclass(frozen=True)
class _PrefixEntry:
    """What was read from a prefix, and the stamps it was read under."""

    watched: tuple[Path, ...]
    stamps: tuple[Stamp, ...]
    facts: PrefixFacts | None


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _list_children(path: Path) -> list[str]:
    try:
        with os.scandir(path) as entries:
            return sorted(entry.name for entry in entries if entry.is_dir())
    except OSError:
        return []


def _kind_of(stamps: tuple[Stamp, ...]) -> Kind | None:
    """conda when conda-meta/history exists, venv when pyvenv.cfg does."""
    if stamps[1] is not None:
        return "conda"
    return "venv" if stamps[3] is not None else None


class EnvDiscovery:
    """The environments one user can see, listed again cheaply on every call."""

    def __init__(self, options: DiscoveryOptions, home: Path, environ: Mapping[str, str]) -> None:
        self.options = options
        self.home = home
        self.environ = dict(environ)
        self._environments_txt: StampCache[list[str]] = StampCache(_read_lines)
        self._condarc: StampCache[list[str]] = StampCache(read_envs_dirs)
        self._children: StampCache[list[str]] = StampCache(_list_children)
        self._prefixes: dict[Path, _PrefixEntry] = {}
        self._lock = threading.Lock()

    def _expand(self, path: str) -> Path | None:
        return locations.expand(path, self.home, self.environ)

    def _expand_all(self, paths: list[str] | tuple[str, ...]) -> list[Path]:
        return [p for p in map(self._expand, paths) if p is not None]

    def roots(self) -> list[Path]:
        """Root prefixes that exist: the usual places, the configured ones, those named by the environment."""
        places = self._expand_all(locations.KNOWN_ROOTS) if self.options.known_roots else []
        places += self._expand_all(self.options.extra_roots) + locations.roots_from_environ(self.environ)
        return list(dict.fromkeys(p for p in places if os.path.isdir(p)))

    def envs_dirs(self, roots: list[Path]) -> list[Path]:
        """Folders whose children are conda environments, from roots, condarc files and configuration."""
        dirs = [root / "envs" for root in roots]
        for pattern in locations.CONDARC_FILES:
            paths = [pattern.format(root=root) for root in roots] if "{root}" in pattern else [pattern]
            for condarc in self._expand_all(paths):
                dirs += self._expand_all(self._condarc.get(condarc))
        dirs += self._expand_all([*locations.env_var_dirs(self.environ), *locations.DEFAULT_ENVS_DIRS])
        dirs += self._expand_all(self.options.envs_dirs)
        return list(dict.fromkeys(dirs))

    def _candidates(self) -> Iterator[_Candidate]:
        roots = self.roots()
        yield from (_Candidate(root, is_root=True) for root in roots)
        environments_txt = self._expand(locations.ENVIRONMENTS_TXT)
        if environments_txt is not None:
            for line in self._environments_txt.get(environments_txt):
                if line.startswith("/"):
                    yield _Candidate(Path(line))
        for folder in self.envs_dirs(roots):
            yield from (_Candidate(folder / name) for name in self._children.get(folder))
        for folder in self._expand_all(self.options.venv_dirs):
            yield from (_Candidate(folder / name, allow_venv=True) for name in self._children.get(folder))

    def _facts(self, prefix: Path) -> tuple[Stamp, PrefixFacts | None]:
        """The prefix's own stamp and its facts, read again only if a watched path changed."""
        entry = self._prefixes.get(prefix)
        if entry is not None:
            stamps = tuple(stamp(path) for path in entry.watched)
            if stamps == entry.stamps:
                return stamps[0], entry.facts
        base = (prefix, prefix / "conda-meta" / "history", prefix / "conda-meta", prefix / "pyvenv.cfg", prefix / "lib")
        base_stamps = tuple(stamp(path) for path in base)
        kind = _kind_of(base_stamps)
        facts = read_prefix(prefix, kind) if kind is not None else None
        extra = tuple(site_packages_dirs(prefix)) if kind is not None else ()
        self._prefixes[prefix] = _PrefixEntry(base + extra, base_stamps + tuple(stamp(p) for p in extra), facts)
        return base_stamps[0], facts

    def _excluded(self, name: str, prefix: Path) -> bool:
        return any(
            fnmatchcase(str(prefix), pattern) if "/" in pattern else fnmatchcase(name, pattern)
            for pattern in self.options.exclude
        )

    def list(self) -> list[EnvInfo]:
        """Every environment the user can see, not excluded; reads only what changed since the last call."""
        with self._lock:
            found: dict[tuple[int, int], EnvInfo] = {}
            seen: set[Path] = set()
            for candidate in self._candidates():
                prefix = candidate.prefix
                seen.add(prefix)
                own, facts = self._facts(prefix)
                if own is None or facts is None or (facts.kind == "venv" and not candidate.allow_venv):
                    continue
                identity = (own[3], own[2])
                if identity in found:
                    continue
                info = _env_info(candidate, facts)
                if not self._excluded(info.name, prefix):
                    found[identity] = info
            for gone in self._prefixes.keys() - seen:
                del self._prefixes[gone]
            return sorted(found.values(), key=_order)


def _env_info(candidate: _Candidate, facts: PrefixFacts) -> EnvInfo:
    prefix = candidate.prefix
    is_base = facts.kind == "conda" and (candidate.is_root or facts.has_condabin)
    verdict = env_verdict(facts.spyder_kernels, ipython=facts.ipython, ipykernel=facts.ipykernel)
    return EnvInfo(
        name="base" if is_base else prefix.name,
        prefix=str(prefix),
        kind=facts.kind,
        python=facts.python,
        spyder_kernels=facts.spyder_kernels,
        ipykernel=facts.ipykernel,
        spyder_ready=verdict.ok and facts.python is not None,
        spyder_versions=verdict.series,
        writable=os.access(prefix, os.W_OK),
        ipython=facts.ipython,
        spyder_problem=verdict.problem if facts.spyder_kernels else None,
    )


def _order(info: EnvInfo) -> tuple[bool, bool, str, str]:
    return (info.kind != "conda", info.name != "base", info.name, info.prefix)


def discover(config: DiscoveryOptions, home: Path, environ: Mapping[str, str]) -> list[EnvInfo]:
    """One listing without a cache to keep (a fresh ``EnvDiscovery(...).list()``)."""
    return EnvDiscovery(config, home, environ).list()


def find_env(envs: list[EnvInfo], wanted: str) -> EnvInfo:
    """Pick an environment by prefix, or by a name that only one environment has."""
    by_prefix = [e for e in envs if e.prefix == wanted or e.prefix == os.path.normpath(wanted)]
    if by_prefix:
        return by_prefix[0]
    named = [e for e in envs if e.name == wanted]
    if len(named) == 1:
        return named[0]
    if named:
        prefixes = ", ".join(e.prefix for e in named)
        raise SSDError(
            f"several environments are named {wanted!r} ({prefixes}); give the prefix", code=ErrorCode.ENV_AMBIGUOUS
        )
    raise SSDError(
        f"no environment {wanted!r} was found for this user (see: ssd-ctl envs HOST)", code=ErrorCode.ENV_NOT_FOUND
    )
