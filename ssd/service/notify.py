"""systemd's readiness protocol (sd_notify): one datagram to ``$NOTIFY_SOCKET``.

``Type=notify`` units wait for ``READY=1`` before they count as started;
``STOPPING=1`` says a shutdown has begun. Outside systemd (no variable) every
call is a no-op, so the daemon runs the same from a terminal.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import MutableMapping

__all__ = ["Notifier"]

log = logging.getLogger(__name__)


class Notifier:
    """Sends state lines to the service manager's notification socket, if there is one."""

    def __init__(self, address: str | None) -> None:
        # "@name" is an abstract socket: a leading NUL byte on the wire.
        self.address = "\0" + address[1:] if address and address.startswith("@") else address

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """Take ``NOTIFY_SOCKET`` out of the environment, so workers and kernels do not inherit it."""
        return cls((os.environ if environ is None else environ).pop("NOTIFY_SOCKET", None))

    def notify(self, state: str) -> bool:
        """Send *state* (``READY=1``, ``STOPPING=1``, ``STATUS=...``); tell whether it was sent."""
        if not self.address or self.address[0] not in "/\0":
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(state.encode())
        except OSError as exc:
            log.warning("cannot notify the service manager (%s): %s", state.split("\n", 1)[0], exc)
            return False
        return True
