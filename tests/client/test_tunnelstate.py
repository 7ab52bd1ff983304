"""The tunnel's remembered endpoints: a stable private socket folder (squatters refused) and a checked record."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ssd.client import tunnelstate
from ssd.errors import ErrorCode, SSDError

KERNEL = "480eaad7-edee-4123-be42-84c88af80fc3"
PORTS = {"shell": 40001, "control": 40002, "stdin": 40003, "iopub": 40004, "hb": 40005}


@pytest.fixture
def client_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own client directory."""
    monkeypatch.setenv("SSD_CLIENT_DIR", str(tmp_path / "client"))
    return tmp_path / "client"


@pytest.fixture
def key(tmp_path: Path) -> Iterator[str]:
    """A key of its own per test, and its /tmp socket folder removed afterwards."""
    made = tunnelstate.tunnel_key(str(tmp_path), KERNEL)
    yield made
    folder = Path(f"/tmp/ssd-tunnel-{os.geteuid()}-{made}")
    if folder.is_symlink():
        folder.unlink()
    shutil.rmtree(folder, ignore_errors=True)


def test_socket_folder_is_stable_private_and_ours(key: str) -> None:
    """Made 0700 on first use, the same path next time."""
    first = tunnelstate.socket_dir(key)
    assert (first.stat().st_mode & 0o777, first.stat().st_uid) == (0o700, os.geteuid())
    assert tunnelstate.socket_dir(key) == first


@pytest.mark.parametrize("squat", ["loose", "other-owner", "symlink", "file"])
def test_a_squatted_socket_folder_is_refused(key: str, squat: str, tmp_path: Path) -> None:
    """A folder someone else made, one others may enter, a link or a file under the name: refused, untouched."""
    folder = Path(f"/tmp/ssd-tunnel-{os.geteuid()}-{key}")
    if squat == "symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        folder.symlink_to(tmp_path / "elsewhere")
    elif squat == "file":
        folder.write_text("")
    else:
        folder.mkdir(mode=0o700)
        folder.chmod(0o755 if squat == "loose" else 0o700)
        if squat == "other-owner":
            if os.geteuid() != 0:
                pytest.skip("needs root to make a folder of another owner")
            os.chown(folder, 65534, 65534)
    with pytest.raises(SSDError, match="not a private folder of this user") as refused:
        tunnelstate.socket_dir(key)
    assert refused.value.code == ErrorCode.UNSAFE_SOCKET_DIR
    if folder.is_symlink() or folder.is_file():
        folder.unlink()


def test_record_round_trip_and_unsound_records_ignored(client_dir: Path) -> None:
    """Saved 0600 and read back; a loose, foreign-kernel, incomplete or junk record is ignored."""
    record = tunnelstate.TunnelRecord("h:9470", KERNEL, "tcp", PORTS)
    tunnelstate.save(record)
    path = client_dir / "tunnels" / f"{tunnelstate.tunnel_key('h:9470', KERNEL)}.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert tunnelstate.load("h:9470", KERNEL) == record
    assert tunnelstate.load("other:9470", KERNEL) is None
    path.chmod(0o644)
    assert tunnelstate.load("h:9470", KERNEL) is None
    path.chmod(0o600)
    for junk in (b"{", b'{"host": "h:9470"}', path.read_bytes().replace(b"40001", b"70000"), b" " * 5000):
        path.write_bytes(junk)
        assert tunnelstate.load("h:9470", KERNEL) is None, junk


def test_a_second_holder_is_refused(client_dir: Path) -> None:
    """Two tunnels to the same kernel: the second is refused while the first holds the lock."""
    with tunnelstate.held("h", KERNEL):
        with pytest.raises(SSDError, match="already open") as refused, tunnelstate.held("h", KERNEL):
            pass
        assert refused.value.code == ErrorCode.TUNNEL_BUSY
    with tunnelstate.held("h", KERNEL):
        pass
