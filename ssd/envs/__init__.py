"""Environments: discovery of conda and virtual environments, read from disk as the user.

``discovery`` lists them (cached by modification times), ``metadata`` reads
versions from package metadata, ``compat`` holds the spyder-kernels ↔ Spyder
table, ``locations`` the usual install places, ``condarc`` the ``envs_dirs`` key.
"""

from __future__ import annotations

from ssd.envs.compat import kernels_spec_for, spyder_versions
from ssd.envs.discovery import DiscoveryOptions, EnvDiscovery, EnvInfo, discover, find_env

__all__ = ["DiscoveryOptions", "EnvDiscovery", "EnvInfo", "discover", "find_env", "kernels_spec_for", "spyder_versions"]
