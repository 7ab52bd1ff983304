"""Who binds where (``channel_plan``), where a kernel is reached (``kernel_endpoint``), and the private
folders of ipc sockets (``sockdir``), on the real filesystem."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.ci import require_root

from ssd.errors import ErrorCode, SSDError
from ssd.kernels import sockdir
from ssd.kernels.transport import ChannelPlan, channel_plan, ipc_paths, kernel_endpoint

PORTS = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}


def test_curve_kernels_bind_ipc_and_plain_ones_tcp() -> None:
    """curve: ipc behind a relay on the host's address; plain: TCP on that address, no relay."""
    assert channel_plan("curve", "", "*") == ChannelPlan("ipc", "", "0.0.0.0")
    assert channel_plan("curve", "10.0.0.5", "*") == ChannelPlan("ipc", "", "10.0.0.5")
    assert channel_plan("plain", "", "127.0.0.1") == ChannelPlan("tcp", "127.0.0.1", None)


def test_endpoints_follow_each_kernels_own_connection_info() -> None:
    """ipc as jupyter_client numbers it; TCP for a plain kernel and for a record older than ipc (no transport
    key, or tcp on 127.0.0.1), a wildcard meaning this machine."""
    ipc = {**PORTS, "transport": "ipc", "ip": "/tmp/ssd-abc/k"}
    assert kernel_endpoint(ipc, "iopub") == "ipc:///tmp/ssd-abc/k-2"
    assert ipc_paths(ipc) == [f"/tmp/ssd-abc/k-{n}" for n in range(1, 6)]
    old = {**PORTS, "ip": "127.0.0.1", "shell_port": 40001}
    assert kernel_endpoint(old, "shell") == "tcp://127.0.0.1:40001"
    assert kernel_endpoint({**old, "transport": "tcp", "ip": "0.0.0.0"}, "hb") == "tcp://127.0.0.1:5"
    assert ipc_paths(old) == []


def test_private_dir_is_made_again_and_refused_when_not_private(tmp_path: Path) -> None:
    """A new folder is 0700; a missing one is made again 0700; one open to others or a symlink is refused."""
    made = sockdir.new_private_dir()
    try:
        assert made.stat().st_mode & 0o777 == 0o700
        assert str(made).startswith(f"{sockdir.SOCKET_ROOT}/ssd-")
    finally:
        made.rmdir()
    gone = tmp_path / "gone"
    sockdir.check_private_dir(gone)
    assert gone.stat().st_mode & 0o777 == 0o700
    gone.chmod(0o755)
    with pytest.raises(SSDError) as refused:
        sockdir.check_private_dir(gone)
    assert refused.value.code == ErrorCode.UNSAFE_SOCKET_DIR
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    with pytest.raises(SSDError):
        sockdir.check_private_dir(link)


@pytest.mark.root
def test_sockets_are_removed_only_from_ones_own_folder(tmp_path: Path) -> None:
    """remove_sockets empties and removes this user's folder, and leaves another user's alone."""
    require_root()
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    for folder in (mine, theirs):
        folder.mkdir(mode=0o700)
        (folder / "k-1").touch()
    os.chown(theirs, 65534, 65534)
    sockdir.remove_sockets([str(mine / "k-1"), str(theirs / "k-1")])
    assert not mine.exists()
    assert (theirs / "k-1").exists()
