"""The systemd units that run the daemon: a system service (root) and a user service.

Both start this very Python (``sys.executable -I -m ssd``), so the daemon runs the
same from a venv, from the ``_ssd_`` conda environment and from the unit; ``-I``
keeps the working directory (and ``PYTHON*`` variables) out of its imports.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ssd.paths import SYSTEM_CONFIG_DIR, SYSTEM_LOG_DIR, SYSTEM_STATE_DIR, ServerPaths

__all__ = ["system_unit", "user_unit"]

# What both units run and how systemd knows it is up (sd_notify) and restarts it.
_SERVICE = """\
Type=notify
NotifyAccess=main
ExecStart={exec_start}
{environment}Restart=on-failure
RestartSec=2s
"""

_SYSTEM_HEAD = (
    """\
# ssd, the Spyder Spinner Daemon, as a system service for many users.
# Written by `ssd install --system`; `ssd uninstall --system` removes it.
# Local changes belong in a drop-in: systemctl edit ssd.service

[Unit]
Description=ssd, the Spyder Spinner Daemon (Spyder and Jupyter kernels for the users of this host)
After=network-online.target
Wants=network-online.target

[Service]
# The daemon sends READY=1 itself once its sockets are bound and the
# zeroconf announcement is up, and STOPPING=1 when it begins to shut down.
"""
    + _SERVICE
    + """\
TimeoutStopSec=60s
# Only the daemon gets SIGTERM on stop and restart: it stops its own workers,
# while users' kernels (started in sessions of their own) keep running and are
# re-adopted by the next start. Plain `control-group` would kill them all.
KillMode=process
# Many clients and kernel relays: sockets are file descriptors.
LimitNOFILE=65536
# Files the daemon makes are private unless it says otherwise.
UMask=0077
{directories}
# Hardening. The daemon runs as root and drops privileges per user
# (setgroups, setgid, setuid): so no User=, no CapabilityBoundingSet= (it would
# also cap what a user's sudo may do inside a kernel) and no NoNewPrivileges=
# (it would break setuid programs such as sudo or ping in users' kernels).
# Kernels inherit everything here, and they must behave as in an ssh login:
# no ProtectSystem= (users of group staff may write /usr/local), no
# ProtectHome= (kernels and environment tools work in the users' homes), no
# PrivateTmp= (users share /tmp with their other sessions), no
# PrivateDevices= or ProtectClock= (both restrict /dev: GPUs would vanish).
# What is left takes nothing a user could do at an ssh login anyway:
# no loading of kernel modules,
ProtectKernelModules=yes
# /proc/sys and /sys read-only (only root could write them),
ProtectKernelTunables=yes
# no reading of the kernel log buffer,
ProtectKernelLogs=yes
# the cgroup tree read-only,
ProtectControlGroups=yes
# and no switching of the execution domain (personality).
LockPersonality=yes

[Install]
WantedBy=multi-user.target
"""
)

_USER_TEMPLATE = (
    """\
# ssd, the Spyder Spinner Daemon, for this user only (user mode).
# Written by `ssd install --user`; `ssd uninstall --user` removes it.
# To keep it running while you are logged out: loginctl enable-linger $USER

[Unit]
Description=ssd, the Spyder Spinner Daemon (user mode)
After=network-online.target

[Service]
# READY=1 comes from the daemon once its sockets are bound and it is announced.
"""
    + _SERVICE
    + """\
# Only the daemon is stopped; kernels it started keep running and are re-adopted.
KillMode=process
# It runs as you with your rights: no further hardening is needed here.

[Install]
WantedBy=default.target
"""
)


def _exec_start(python: Path, mode: str) -> str:
    # python -I -m ssd is `ssd run`, importing nothing from the cwd; systemd splits ExecStart like a shell would.
    return shlex.join([str(python), "-I", "-m", "ssd", f"--{mode}"])


def _environment(paths: ServerPaths, defaults: ServerPaths) -> str:
    """Environment= lines for directories that differ from the mode's defaults (SSD_CONFIG_DIR ...)."""
    lines = []
    for variable, value, default in (
        ("SSD_CONFIG_DIR", paths.config_dir, defaults.config_dir),
        ("SSD_STATE_DIR", paths.state_dir, defaults.state_dir),
        ("SSD_LOG_DIR", paths.log_dir, defaults.log_dir),
    ):
        if value is not None and value != default:
            lines.append(f'Environment="{variable}={_escape(str(value))}"\n')
    return "".join(lines)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")


def system_unit(python: Path, paths: ServerPaths) -> str:
    """The system unit's text for a daemon using *paths* (as seen on the running system)."""
    defaults = ServerPaths("system", SYSTEM_CONFIG_DIR, SYSTEM_STATE_DIR, SYSTEM_LOG_DIR)
    directories = ""
    if (paths.config_dir, paths.state_dir, paths.log_dir) == (
        defaults.config_dir,
        defaults.state_dir,
        defaults.log_dir,
    ):
        # systemd (re)creates these with these modes before each start.
        directories = (
            "ConfigurationDirectory=ssd\nConfigurationDirectoryMode=0755\n"
            "StateDirectory=ssd\nStateDirectoryMode=0700\n"
            "LogsDirectory=ssd\nLogsDirectoryMode=0750\n"
        )
    return _SYSTEM_HEAD.format(
        exec_start=_exec_start(python, "system"),
        environment=_environment(paths, defaults),
        directories=directories,
    )


def user_unit(python: Path, paths: ServerPaths, defaults: ServerPaths) -> str:
    """The user unit's text; *defaults* are the user-mode paths without any SSD_* override."""
    return _USER_TEMPLATE.format(exec_start=_exec_start(python, "user"), environment=_environment(paths, defaults))
