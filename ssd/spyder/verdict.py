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
    if env.get("spyder_kernels") and env.get("python") is None:
        return Verdict(False, "no Python found in it", None)
    # The one place the table is asked; it knows every constraint that breaks a pairing (the spyder-kernels
    # range, and the IPython or ipykernel versions known to break that spyder-kernels).
    checked = compat.check_spyder(spyder_version, env)
    if checked.ok:
        return Verdict(True, f"works with Spyder {series_of(spyder_version)}", None)
    reason = (checked.problem or "ssd's compatibility table does not know it").split(": install ")[0]
    return Verdict(False, reason, " ".join(checked.install) or None)
