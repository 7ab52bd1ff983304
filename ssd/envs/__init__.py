"""Environments: discovery of conda and virtual environments, read from disk as the user.

``discovery`` lists them (cached by modification times), ``metadata`` reads
versions from package metadata, ``compat`` holds the spyder-kernels ↔ Spyder
table and the verdict (known IPython/ipykernel breaks included), ``locations``
the usual install places, ``condarc`` the ``envs_dirs`` key, ``stamps`` the
modification-time cache; ``admin`` creates, installs into and removes
environments, after ``validate`` checked what the client asked for.
"""

from __future__ import annotations

from ssd.envs.compat import SpyderVerdict, check_spyder, env_verdict, install_specs, kernels_spec_for, spyder_versions
from ssd.envs.discovery import DiscoveryOptions, EnvDiscovery, EnvInfo, discover, discovery_options, find_env

__all__ = ["DiscoveryOptions", "EnvDiscovery", "EnvInfo", "SpyderVerdict", "check_spyder", "discover", "env_verdict"]
__all__ += ["discovery_options", "find_env", "install_specs", "kernels_spec_for", "spyder_versions"]
