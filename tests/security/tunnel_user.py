"""The victim's side of the tunnel test, run as the victim (A) by test_kernel_isolation.py.

Reads the relay's connection info (one JSON line on stdin), opens ``ssd.client.tunnel.Tunnel`` with its
default local transport, prints the local connection info; on a line ``run MARKER`` prints MARKER in the
kernel through the tunnel with jupyter_client and prints what came back on iopub; on ``stop`` (or end of
input) closes the tunnel and prints which of its socket files are left.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, cast

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.connect import KernelConnectionInfo

from ssd.client.tunnel import Tunnel


def run(info: dict[str, Any], code: str) -> dict[str, Any]:
    """Execute *code* through *info*; the reply's status and everything printed."""
    client = BlockingKernelClient()
    client.load_connection_info(cast(KernelConnectionInfo, info))
    client.start_channels()
    printed: list[str] = []
    try:
        client.wait_for_ready(timeout=30)
        reply = client.execute_interactive(
            code,
            timeout=30,
            output_hook=lambda msg: printed.append(msg["content"]["text"]) if msg["msg_type"] == "stream" else None,
        )
    finally:
        client.stop_channels()
    return {"status": reply["content"]["status"], "stream": "".join(printed)}


def main() -> None:
    """Tunnel, report, serve the commands on stdin."""
    tunnel = Tunnel(json.loads(sys.stdin.readline()))
    local = tunnel.start()
    print(json.dumps(local), flush=True)
    try:
        for line in sys.stdin:
            command, _, argument = line.strip().partition(" ")
            if command == "run":
                print(json.dumps(run(local, f"print({argument!r})")), flush=True)
            elif command == "stop":
                break
    finally:
        tunnel.stop()
    ports = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
    paths = [f"{local['ip']}-{local[key]}" for key in ports] if local["transport"] == "ipc" else []
    print(json.dumps({"left": [path for path in paths if os.path.exists(path)]}), flush=True)


if __name__ == "__main__":
    main()
