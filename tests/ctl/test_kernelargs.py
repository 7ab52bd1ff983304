"""ssd-ctl's kernel-argument helpers without a daemon: naming a kernel, choosing its connection file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ssd.ctl.connfiles import choose_connection_file
from ssd.ctl.kernelargs import resolve_kernel
from ssd.errors import ErrorCode, SSDError
from ssd.replies import KernelDescription

KERNELS = [
    KernelDescription(kernel_id=kernel_id, name=name, env="/env", kind="spyder", state="ready")
    for kernel_id, name in [
        ("4e2de951-0000-4000-8000-000000000001", "sci (spyder)"),
        ("4e2d1111-0000-4000-8000-000000000002", "analysis"),
        ("analysis-not-a-uuid", "other"),
    ]
]


def test_resolve_kernel_by_id_prefix_or_name() -> None:
    """An exact id wins; a unique id prefix or an exact name names one kernel; more than one is a usage error."""
    assert resolve_kernel(KERNELS, "4e2de", "h") == KERNELS[0].kernel_id
    assert resolve_kernel(KERNELS, "4E2D1", "h") == KERNELS[1].kernel_id  # ids are lower-case hex
    assert resolve_kernel(KERNELS, "sci (spyder)", "h") == KERNELS[0].kernel_id
    assert resolve_kernel(KERNELS, "analysis-not-a-uuid", "h") == KERNELS[2].kernel_id
    with pytest.raises(SSDError, match=r"'4e2d' names 2 kernels: 4e2de951 .*4e2d1111") as ambiguous:
        resolve_kernel(KERNELS, "4e2d", "h")
    assert ambiguous.value.code == ErrorCode.USAGE
    with pytest.raises(SSDError, match="'analysis' names 2 kernels") as by_name:  # a name and an id prefix
        resolve_kernel(KERNELS, "analysis", "h")
    assert by_name.value.code == ErrorCode.USAGE
    with pytest.raises(SSDError, match="no kernel 'ff'") as unknown:
        resolve_kernel(KERNELS, "ff", "h")
    assert unknown.value.code == ErrorCode.KERNEL_NOT_FOUND


def test_the_kernels_own_file_keeps_its_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same machine (or a shared home): the default path is the file the kernel reads again on restart."""
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    kernel_id = "4e2de951-0000-4000-8000-000000000001"
    own = tmp_path / f"kernel-ssd-{kernel_id}.json"
    server_side = {"ip": "0.0.0.0", "key": "k", "shell_port": 1}
    same, other = dict(server_side), {**server_side, "ip": "labpc"}
    assert choose_connection_file(None, kernel_id, str(own), same) == own  # nothing there yet: a remote host
    own.write_text(json.dumps(server_side))
    assert choose_connection_file(None, kernel_id, str(own), same) == own  # the same content: harmless to write
    assert choose_connection_file(None, kernel_id, str(own), other) == tmp_path / f"kernel-ssd-{kernel_id}-client.json"
    with pytest.raises(SSDError, match="the kernel's own connection file") as refused:
        choose_connection_file(str(own), kernel_id, str(own), other)
    assert refused.value.code == "usage"
    elsewhere = tmp_path / "mine.json"
    assert choose_connection_file(str(elsewhere), kernel_id, str(own), other) == elsewhere
