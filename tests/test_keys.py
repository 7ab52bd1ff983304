"""CURVE keypairs on disk: creation, strict loading, fingerprints, and the daemon refusing a loose key."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import zmq
import zmq.auth
from support.daemon import start_daemon

from ssd.errors import ErrorCode, KeyFileError
from ssd.keys import KeyPair, create_keypair, fingerprint, load_keypair, load_or_create_keypair


def mode(path: Path) -> int:
    """The permission bits of *path*."""
    return stat.S_IMODE(path.stat().st_mode)


def test_create_keypair_writes_private_secret_and_public_file(tmp_path: Path) -> None:
    """The secret file is 0600, the public one 0644, both readable by pyzmq, only one holds the secret."""
    pair = create_keypair(tmp_path / "keys" / "server")
    secret_path, public_path = tmp_path / "keys" / "server.key_secret", tmp_path / "keys" / "server.key"
    assert mode(secret_path) == 0o600
    assert mode(public_path) == 0o644
    assert zmq.auth.load_certificate(secret_path) == (pair.public, pair.secret)
    assert zmq.auth.load_certificate(public_path) == (pair.public, None)
    assert pair.secret.decode() not in public_path.read_text()
    assert zmq.curve_public(pair.secret) == pair.public


def test_load_keypair_round_trip(tmp_path: Path) -> None:
    """What create_keypair wrote, load_keypair reads back; load_or_create does not make a new key."""
    made = create_keypair(tmp_path / "server")
    assert load_keypair(tmp_path / "server") == made
    assert load_or_create_keypair(tmp_path / "server") == (made, False)


def test_load_or_create_makes_a_key_once(tmp_path: Path) -> None:
    """load_or_create_keypair makes a key when none exists and then keeps it."""
    made, created = load_or_create_keypair(tmp_path / "client")
    assert created
    assert load_or_create_keypair(tmp_path / "client") == (made, False)


@pytest.mark.parametrize("loose", [0o640, 0o644, 0o604, 0o660])
def test_load_refuses_secret_readable_by_others(tmp_path: Path, loose: int) -> None:
    """A secret key others could read is refused with the file name and the chmod that fixes it."""
    create_keypair(tmp_path / "server")
    secret_path = tmp_path / "server.key_secret"
    secret_path.chmod(loose)
    with pytest.raises(KeyFileError) as info:
        load_keypair(tmp_path / "server")
    message = str(info.value)
    assert str(secret_path) in message
    assert f"chmod 600 {secret_path}" in message
    assert f"{loose:04o}" in message
    assert info.value.code == ErrorCode.KEY_FILE_INVALID


def test_load_accepts_stricter_mode(tmp_path: Path) -> None:
    """A secret key with mode 0400 is private enough."""
    made = create_keypair(tmp_path / "server")
    (tmp_path / "server.key_secret").chmod(0o400)
    assert load_keypair(tmp_path / "server") == made


def test_load_refuses_symlink(tmp_path: Path) -> None:
    """A secret key that is a symbolic link is refused, even to a private file."""
    create_keypair(tmp_path / "real")
    (tmp_path / "server.key_secret").symlink_to(tmp_path / "real.key_secret")
    with pytest.raises(KeyFileError, match="regular file") as info:
        load_keypair(tmp_path / "server")
    assert str(tmp_path / "server.key_secret") in str(info.value)


def test_load_refuses_missing(tmp_path: Path) -> None:
    """A missing secret key file is an error naming it."""
    with pytest.raises(KeyFileError, match="missing") as info:
        load_keypair(tmp_path / "server")
    assert str(tmp_path / "server.key_secret") in str(info.value)


def test_load_refuses_garbage_and_mismatched_keys(tmp_path: Path) -> None:
    """A secret file without a valid key, or whose public key does not match, is refused."""
    secret_path = tmp_path / "server.key_secret"
    secret_path.write_text("not a certificate\n")
    secret_path.chmod(0o600)
    with pytest.raises(KeyFileError, match=re.escape(str(secret_path))):
        load_keypair(tmp_path / "server")
    secret_path.unlink()
    create_keypair(tmp_path / "server")
    other_public = zmq.curve_keypair()[0].decode()
    text = secret_path.read_text()
    public = re.search(r'public-key = "(.{40})"', text)
    assert public is not None
    secret_path.write_text(text.replace(public.group(1), other_public))
    with pytest.raises(KeyFileError, match="do not belong together"):
        load_keypair(tmp_path / "server")


def test_create_refuses_to_overwrite(tmp_path: Path) -> None:
    """A second create_keypair on the same stem fails and leaves the first key in place."""
    first = create_keypair(tmp_path / "server")
    with pytest.raises(KeyFileError, match="already exists"):
        create_keypair(tmp_path / "server")
    assert load_keypair(tmp_path / "server") == first


def test_fingerprint_format(tmp_path: Path) -> None:
    """A fingerprint is SHA256: and 43 characters of unpadded base64, as ssh shows it, and differs per key."""
    pair = create_keypair(tmp_path / "server")
    assert re.fullmatch(r"SHA256:[A-Za-z0-9+/]{43}", pair.fingerprint)
    assert pair.fingerprint == fingerprint(pair.public)
    assert fingerprint(zmq.curve_keypair()[0]) != pair.fingerprint


def test_repr_never_shows_the_secret() -> None:
    """repr() and str() of a KeyPair show the fingerprint, never the secret key."""
    public, secret = zmq.curve_keypair()
    pair = KeyPair(public=public, secret=secret)
    for text in (repr(pair), str(pair), f"{pair!r}", repr([pair])):
        assert secret.decode() not in text
        assert pair.fingerprint in text


def test_daemon_refuses_to_start_with_loose_secret_key(tmp_path: Path) -> None:
    """`python -m ssd` with a 0644 server secret exits non-zero and names the file to fix."""
    daemon = start_daemon(tmp_path)
    assert daemon.stop() == 0, daemon.log()
    secret_path = daemon.config_dir / "server.key_secret"
    secret_path.chmod(0o644)
    env = {**os.environ, "SSD_CONFIG_DIR": str(daemon.config_dir), "SSD_STATE_DIR": str(daemon.state_dir)}
    result = subprocess.run(
        [sys.executable, "-m", "ssd", "--bind", "127.0.0.1", "--port", "0", "--no-announce"],
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 2, result.stderr  # KeyFileError.exit_code
    assert "Traceback" not in result.stderr
    assert str(secret_path) in result.stderr
    assert "chmod 600" in result.stderr
    assert not (daemon.state_dir / "daemon.json").exists()
