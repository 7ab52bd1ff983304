"""Kernel connection info, computed once (``ssd.kernels.connection``) for the worker, the broker and the
client."""

from __future__ import annotations

from typing import Any

from ssd.kernels.connection import CLASSIC_KEYS, CURVE_KEYS, classic_info, client_info, served_connection
from ssd.kernels.record import KernelRecord

CONNECTION = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5,
              "ip": "/run/k", "transport": "ipc", "key": "secret", "signature_scheme": "hmac-sha256",
              "kernel_name": "python3"}  # fmt: skip
RELAY: dict[str, Any] = {"ip": "0.0.0.0", "ports": {"shell": 41, "iopub": 42, "stdin": 43, "control": 44, "hb": 45},
         "curve_publickey": "P" * 40, "curve_secretkey": "S" * 40}  # fmt: skip


def _record(relay: dict[str, Any] | None) -> KernelRecord:
    return KernelRecord(
        kernel_id="k1", user="bob", name="k", env="/e", env_name="e", kind="ipykernel", pid=1, start_ticks=0,
        started=0.0, connection=CONNECTION, connection_file="/c", log_file="/l", cwd="/", argv=[], environ={},
        relay=relay,
    )  # fmt: skip


def test_a_relayed_kernel_is_served_as_its_relay_with_the_curve_keys() -> None:
    """The relay's address and ports over tcp, the kernel's own HMAC key, the relay's keypair; no ipc path."""
    served = served_connection(_record(RELAY))
    assert set(served) == {*CLASSIC_KEYS, *CURVE_KEYS}
    assert (served["ip"], served["transport"], served["shell_port"], served["hb_port"]) == ("0.0.0.0", "tcp", 41, 45)
    assert served["key"] == "secret"
    assert served["curve_secretkey"] == "S" * 40


def test_a_plain_kernel_is_served_as_itself() -> None:
    """Without a relay the kernel's own connection info, a copy the caller may change."""
    served = served_connection(_record(None))
    assert served == CONNECTION
    served["ip"] = "elsewhere"
    assert CONNECTION["ip"] == "/run/k"


def test_a_client_gets_the_classic_keys_and_the_host_for_a_wildcard() -> None:
    """A wildcard becomes the host the client reached; unknown keys are dropped, the CURVE keys kept."""
    served = {**served_connection(_record(RELAY)), "extra": 1}
    info = client_info(served, "example.org")
    assert info["ip"] == "example.org"
    assert set(info) == {*CLASSIC_KEYS, *CURVE_KEYS}
    assert classic_info(info) == {key: info[key] for key in CLASSIC_KEYS}
    assert client_info({**CONNECTION, "ip": "10.0.0.5"}, "example.org")["ip"] == "10.0.0.5"
