"""Which Spyder versions an environment can serve: the one compatibility table, and the verdict built on it.

Spyder pins the spyder-kernels series it talks to in
``spyder/plugins/ipythonconsole/__init__.py`` (``SPYDER_KERNELS_MIN_VERSION`` /
``SPYDER_KERNELS_MAX_VERSION``, e.g. 6.0.x: ``>=3.0.0,<3.1.0``; 5.5.x: ``>=2.5.0,<2.6.0``)
and, before 5.x, in ``spyder/dependencies.py`` (``SPYDER_KERNELS_REQVER``, e.g. 4.1.x:
``>=1.9.2;<1.10.0``). Spyder's FAQ "Using existing environment" shows the same
table to users. Add a row here when a new Spyder minor series ships.

A spyder-kernels in range is not enough: a series also has *known breaks*, versions of
IPython or ipykernel it does not work with. An environment serves a Spyder series only
when no break holds; ``env create/install --spyder`` installs the pins that avoid them.
The env worker (discovery), ``ssd-ctl envs`` and the Spyder plugin all ask this module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion
from packaging.version import Version as Pep440

__all__ = [
    "COMPATIBILITY",
    "KernelsSeries",
    "KnownBreak",
    "SpyderVerdict",
    "check_spyder",
    "env_verdict",
    "install_specs",
    "kernels_spec_for",
    "parse_version",
    "series_for_spyder",
    "spyder_versions",
]

Version = tuple[int, ...]


class KnownBreak(NamedTuple):
    """Versions of a package (``broken``, a PEP 440 specifier) a spyder-kernels series does not work with.

    ``avoid`` is the specifier that excludes them; ``declared`` says whether spyder-kernels'
    own requirements already exclude them (pip and conda then honour it when they install
    spyder-kernels), otherwise ``env create/install --spyder`` adds ``package + avoid`` itself.
    """

    package: str
    broken: str
    avoid: str
    why: str
    declared: bool


class KernelsSeries(NamedTuple):
    """A spyder-kernels range ``[minimum, below)``, the Spyder series that accepts it, and its known breaks."""

    minimum: Version
    below: Version
    spyder: str
    breaks: tuple[KnownBreak, ...] = ()


# spyder-kernels 3.1.0 ... 3.1.6 (every 3.1 release on PyPI): their ``Requires-Dist`` says
# ipython!=8.17.1,!=9.1.0,!=9.2.0,!=9.3.0,!=9.4.0,<10,>=8.15.0 and ipykernel<7,>=6.29.3
# (read from each wheel's METADATA). On top of that, every 3.1.x runs
# ``from IPython.utils.PyColorize import Theme, linux_theme, neutral_theme`` in
# ``SpyderKernel.set_traceback_syntax_highlighting`` (spyder_kernels/console/kernel.py), which
# Spyder triggers when it sends its configuration to a new console; IPython 9.18.0 and 9.18.1
# no longer have ``linux_theme``, so the call raises ImportError and the Variable Explorer stays
# empty. Verified: a venv of spyder-kernels 3.1.6 + IPython 9.18.1 (what pip resolves unpinned)
# fails that call in a running ``spyder_kernels.console``; 9.17.1 (the newest below 9.18)
# passes; the bare import fails on 9.18.0/9.18.1 and passes on 9.17.x and 9.16.1.
_IPYTHON_9_18 = KnownBreak(
    "ipython", ">=9.18.0.dev0", "<9.18", "cannot import name 'linux_theme' from IPython.utils.PyColorize", False
)
_KERNELS_3_1_BREAKS = (
    _IPYTHON_9_18,
    KnownBreak("ipython", "<8.15", ">=8.15", "spyder-kernels 3.1 requires ipython>=8.15", True),
    KnownBreak("ipython", "==8.17.1", "!=8.17.1", "excluded by spyder-kernels 3.1", True),
    KnownBreak("ipython", ">=9.1,<9.5", "!=9.1.*,!=9.2.*,!=9.3.*,!=9.4.*", "excluded by spyder-kernels 3.1", True),
    KnownBreak("ipykernel", "<6.29.3", ">=6.29.3", "spyder-kernels 3.1 requires ipykernel>=6.29.3", True),
    KnownBreak("ipykernel", ">=7", "<7", "spyder-kernels 3.1 requires ipykernel<7", True),
)
# spyder-kernels 3.0.0 ... 3.0.5: ``Requires-Dist`` ipython!=8.17.1,<9,>=8.13.0 (Python > 3.8)
# and ipykernel<7,>=6.29.3 (read from the 3.0.0 and 3.0.5 wheels).
_KERNELS_3_0_BREAKS = (
    KnownBreak("ipython", ">=9", "<9", "spyder-kernels 3.0 requires ipython<9", True),
    KnownBreak("ipython", "<8.13", ">=8.13", "spyder-kernels 3.0 requires ipython>=8.13", True),
    KnownBreak("ipython", "==8.17.1", "!=8.17.1", "excluded by spyder-kernels 3.0", True),
    KnownBreak("ipykernel", "<6.29.3", ">=6.29.3", "spyder-kernels 3.0 requires ipykernel>=6.29.3", True),
    KnownBreak("ipykernel", ">=7", "<7", "spyder-kernels 3.0 requires ipykernel<7", True),
)

# Newest first. Spyder series -> the spyder-kernels range that series requires.
COMPATIBILITY: tuple[KernelsSeries, ...] = (
    KernelsSeries((3, 1, 0), (3, 2, 0), "6.1.x", _KERNELS_3_1_BREAKS),
    KernelsSeries((3, 0, 0), (3, 1, 0), "6.0.x", _KERNELS_3_0_BREAKS),
    KernelsSeries((2, 5, 0), (2, 6, 0), "5.5.x"),
    KernelsSeries((2, 4, 0), (2, 5, 0), "5.4.x"),
    KernelsSeries((2, 3, 0), (2, 4, 0), "5.3.x"),
    KernelsSeries((2, 2, 0), (2, 3, 0), "5.2.x"),
    KernelsSeries((2, 1, 0), (2, 2, 0), "5.1.x"),
    KernelsSeries((2, 0, 1), (2, 1, 0), "5.0.x"),
    KernelsSeries((1, 10, 0), (1, 11, 0), "4.2.x"),
    KernelsSeries((1, 9, 2), (1, 10, 0), "4.1.x"),
)

# What every spyder-kernels imports besides itself (its console is an IPython kernel).
REQUIRED = {"ipython": "IPython", "ipykernel": "ipykernel"}

_RELEASE = re.compile(r"\s*v?(\d+(?:\.\d+)*)")


def parse_version(text: str) -> Version | None:
    """The numeric release part of a version string (``3.1.0b2`` -> (3, 1, 0)); None if there is none."""
    match = _RELEASE.match(text)
    if match is None:
        return None
    return tuple(int(part) for part in match.group(1).split("."))


def _padded(version: Version) -> Version:
    return (*version, 0, 0, 0)[:3]


def _rows_for(kernels_version: str | None) -> list[KernelsSeries]:
    parsed = parse_version(kernels_version) if kernels_version else None
    if parsed is None:
        return []
    version = _padded(parsed)
    return [row for row in COMPATIBILITY if row.minimum <= version < row.below]


def spyder_versions(kernels_version: str | None) -> list[str]:
    """The Spyder series (``["6.1.x"]``) whose spyder-kernels range holds *kernels_version* (that range alone).

    Whether an environment really serves them (IPython, ipykernel) is ``env_verdict``'s answer.
    """
    return [row.spyder for row in _rows_for(kernels_version)]


def series_for_spyder(spyder_version: str) -> KernelsSeries | None:
    """The table row of a Spyder version (``6.1.8`` -> the 6.1.x row); None if the table does not know it."""
    parsed = parse_version(spyder_version)
    if parsed is None or len(parsed) < 2:
        return None
    series = f"{parsed[0]}.{parsed[1]}.x"
    return next((row for row in COMPATIBILITY if row.spyder == series), None)


def _kernels_spec(row: KernelsSeries) -> str:
    low, high = (".".join(map(str, v)) for v in (row.minimum, row.below))
    return f"spyder-kernels>={low},<{high}"


def kernels_spec_for(spyder_version: str) -> str | None:
    """The requirement spec (``spyder-kernels>=3.1.0,<3.2.0``) matching a Spyder version; None if unknown."""
    row = series_for_spyder(spyder_version)
    return None if row is None else _kernels_spec(row)


def install_specs(spyder_version: str) -> list[str] | None:
    """What to install for a Spyder version: its spyder-kernels and pins for the breaks it does not declare."""
    row = series_for_spyder(spyder_version)
    if row is None:
        return None
    pins = [f"{item.package}{item.avoid}" for item in row.breaks if not item.declared]
    return [_kernels_spec(row), *pins]


def _in(version: str, specifier: str) -> bool:
    try:
        return Pep440(version) in SpecifierSet(specifier, prereleases=True)
    except (InvalidVersion, InvalidSpecifier):
        return False


@dataclass(frozen=True)
class SpyderVerdict:
    """What an environment can serve: Spyder series, or why not (``problem``) and what to install (``install``)."""

    series: list[str] = field(default_factory=list)
    problem: str | None = None
    install: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the environment serves at least one Spyder series (or the one asked for)."""
        return bool(self.series)


def _row_verdict(row: KernelsSeries, kernels: str, packages: Mapping[str, str | None]) -> SpyderVerdict:
    """The verdict of one table row for an environment whose spyder-kernels is in its range."""
    full = install_specs(row.spyder) or []
    for package, shown in REQUIRED.items():
        if not packages.get(package):
            problem = f"spyder-kernels {kernels} needs {shown}, which is not installed: install {' '.join(full)}"
            return SpyderVerdict(problem=problem, install=full)
    hits = [b for b in row.breaks if _in(packages.get(b.package) or "", b.broken)]
    if not hits:
        return SpyderVerdict(series=[row.spyder])
    first = hits[0]
    fix = full if any(b.declared for b in hits) else [f"{b.package}{b.avoid}" for b in hits]
    found = f"{REQUIRED.get(first.package, first.package)} {packages[first.package]}"
    problem = f"{found} breaks spyder-kernels {kernels} ({first.why}): install {' '.join(fix)}"
    return SpyderVerdict(problem=problem, install=fix)


def env_verdict(
    spyder_kernels: str | None, *, ipython: str | None, ipykernel: str | None, spyder: str | None = None
) -> SpyderVerdict:
    """Whether an environment with these versions serves Spyder (any series, or the one of version *spyder*).

    The env worker calls it for each listed environment; the Spyder plugin calls it (or
    ``check_spyder``) with its own version to decide whether to offer an install.
    """
    packages = {"ipython": ipython, "ipykernel": ipykernel}
    wanted = series_for_spyder(spyder) if spyder is not None else None
    if spyder is not None and wanted is None:
        return SpyderVerdict(problem=f"Spyder {spyder[:20]} is not in ssd's compatibility table (known: "
                             f"{', '.join(row.spyder for row in COMPATIBILITY)})")  # fmt: skip
    rows = _rows_for(spyder_kernels)
    if wanted is not None and wanted not in rows:
        fix = install_specs(wanted.spyder) or []
        have = f"spyder-kernels {spyder_kernels} does not serve" if spyder_kernels else "no spyder-kernels for"
        return SpyderVerdict(problem=f"{have} Spyder {wanted.spyder}: install {' '.join(fix)}", install=fix)
    if not rows:
        return SpyderVerdict(problem=_no_series(spyder_kernels))
    verdicts = [_row_verdict(row, spyder_kernels or "", packages) for row in ([wanted] if wanted else rows)]
    good = [series for verdict in verdicts for series in verdict.series]
    return SpyderVerdict(series=good) if good else verdicts[0]


def _no_series(spyder_kernels: str | None) -> str:
    if not spyder_kernels:
        return "spyder-kernels is not installed"
    return f"spyder-kernels {spyder_kernels} matches no Spyder series ssd knows"


def check_spyder(spyder_version: str, env: Mapping[str, object]) -> SpyderVerdict:
    """Does an environment (an ``env_list`` entry: spyder_kernels, ipython, ipykernel) work with this Spyder?"""

    def text(key: str) -> str | None:
        value = env.get(key)
        return value if isinstance(value, str) and value else None

    return env_verdict(
        text("spyder_kernels"), ipython=text("ipython"), ipykernel=text("ipykernel"), spyder=spyder_version
    )
