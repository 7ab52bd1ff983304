"""Private folders for ``ipc`` sockets: only their owner can connect to what is bound inside.

Connecting to a Unix socket needs search permission on every folder of its
path, so a socket in a 0700 folder is closed to every other local user (root
aside), whatever the socket file's own mode. The folders are made in ``/tmp``
with ``mkdtemp`` (an unguessable name, created 0700 atomically by the caller),
not in ``$XDG_RUNTIME_DIR`` or the home:

- a kernel worker started by the daemon has no ``XDG_RUNTIME_DIR`` (its
  environment is clean), and ``/run/user/UID`` is removed at the user's last
  logout while kernels must outlive sessions;
- a home may be long (a socket path must fit ``sun_path``, 108 bytes with its
  NUL on Linux, 104 on macOS) or on NFS/AFS, where socket files may not work;
- ``/tmp`` is sticky, so no other user can remove or rename the folder, and
  systemd-tmpfiles never removes a socket that is still bound.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from ssd.errors import ErrorCode, SSDError

__all__ = ["MAX_SOCKET_PATH", "SOCKET_ROOT", "check_private_dir", "new_private_dir", "remove_sockets"]

SOCKET_ROOT = "/tmp"  # noqa: S108 (a 0700 folder made by mkdtemp; see the module docstring)
# The longest socket path accepted: macOS's sun_path (104 bytes) less its NUL, with a margin.
MAX_SOCKET_PATH = 100


def new_private_dir(prefix: str = "ssd-") -> Path:
    """A fresh 0700 folder of this user, for sockets."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=SOCKET_ROOT))


def check_private_dir(path: Path) -> None:
    """Make *path* again if it is gone (a restart after a cleaner ran); refuse it unless it is a real folder of
    this user that nobody else may enter (a folder someone else made under the same name would see the kernel)."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise SSDError(
            f"the socket folder {path} is not a private folder of this user (mode {stat.filemode(info.st_mode)}, "
            f"owner uid {info.st_uid}); remove it and start the kernel again",
            code=ErrorCode.UNSAFE_SOCKET_DIR,
        )


def remove_sockets(paths: list[str]) -> None:
    """Remove socket files and then their folder (once empty), only in a folder of this user."""
    for folder in {os.path.dirname(path) for path in paths}:
        try:
            info = os.lstat(folder)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            continue
        for path in paths:
            if os.path.dirname(path) == folder:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(folder)
