"""Whether an environment can serve the running Spyder: the one call into ssd's compatibility table.

The host reports each environment's versions; the verdict for *this* Spyder is
taken from ``ssd.envs.compat`` (the table the server uses too), never from a
second table kept here.
"""

from __future__ import annotations

from collections.abc import Mapping

from ssd.envs import compat
from ssd.spyder.models import Verdict

__all__ = ["series_of", "verdict"]


def series_of(spyder_version: str) -> str:
    """``6.1.8`` -> ``6.1.x``, the form the table names Spyder series in."""
    parts = spyder_version.split(".")
    return f"{parts[0]}.{parts[1] if len(parts) > 1 else 0}.x"


def verdict(env: Mapping[str, object], spyder_version: str) -> Verdict:
    """Can the environment described by *env* (an ``env_list`` entry) run a kernel for this Spyder?"""
    fix = compat.kernels_spec_for(spyder_version)
    kernels = env.get("spyder_kernels")
    if not isinstance(kernels, str) or not kernels:
        return Verdict(False, "spyder-kernels is not installed", fix)
    if env.get("python") is None:
        return Verdict(False, "no Python found in it", None)
    series = series_of(spyder_version)
    # The one place the table is asked; it knows every constraint that breaks a pairing.
    served = compat.spyder_versions(kernels)
    if series not in served:
        serves = ", ".join(served) or "no Spyder this table knows"
        return Verdict(False, f"spyder-kernels {kernels} serves {serves}, not Spyder {series}", fix)
    if not env.get("spyder_ready", True):
        return Verdict(False, "the host says it cannot run a Spyder kernel (ipykernel missing?)", fix)
    return Verdict(True, f"works with Spyder {series}", None)
