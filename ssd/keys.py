"""CURVE keypairs on disk and their fingerprints.

Files use pyzmq's certificate format (``NAME.key`` public, ``NAME.key_secret``
secret), so ``zmq.auth.load_certificate`` reads them. The secret file is
created with mode 0600 atomically and is refused at load time when anyone but
its owner could read it.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.utils.z85

from ssd.errors import KeyFileError

__all__ = ["KeyPair", "create_keypair", "fingerprint", "is_valid_public_key", "load_keypair", "load_or_create_keypair"]

_TEMPLATE = """#   ****  Generated on {date} by ssd  ****
#   ZeroMQ CURVE {kind} Certificate
#   Exchange securely, or use a secure mechanism to verify the contents
#   of this file after exchange. Store public certificates in your home
#   directory, in the .curve subdirectory.

metadata
curve
    public-key = "{public}"
"""


@dataclass(frozen=True, repr=False)
class KeyPair:
    """A CURVE keypair as Z85 bytes (40 characters each)."""

    public: bytes
    secret: bytes

    @property
    def fingerprint(self) -> str:
        """The public key's fingerprint, ``SHA256:`` and unpadded base64 as ssh shows it."""
        return fingerprint(self.public)

    def __repr__(self) -> str:  # never show the secret, not even in a traceback
        return f"KeyPair({self.fingerprint})"


def fingerprint(public_z85: bytes) -> str:
    """Return the SHA-256 fingerprint of a Z85-encoded CURVE public key."""
    raw = zmq.utils.z85.decode(public_z85)
    digest = hashlib.sha256(raw).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def is_valid_public_key(value: bytes) -> bool:
    """Tell whether *value* is a well-formed Z85 CURVE public key."""
    if len(value) != 40:
        return False
    try:
        return len(zmq.utils.z85.decode(value)) == 32
    except (ValueError, KeyError, TypeError):
        return False


def create_keypair(stem: Path) -> KeyPair:
    """Create ``STEM.key`` and ``STEM.key_secret`` (0600); refuse to overwrite."""
    public, secret = zmq.curve_keypair()
    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    public_text = _TEMPLATE.format(date=date, kind="Public", public=public.decode())
    secret_text = (
        _TEMPLATE.format(date=date, kind="**Secret**", public=public.decode())
        + f'    secret-key = "{secret.decode()}"\n'
    )
    stem.parent.mkdir(parents=True, exist_ok=True)
    _write_new(stem.with_suffix(".key_secret"), secret_text, 0o600)
    _write_new(stem.with_suffix(".key"), public_text, 0o644)
    return KeyPair(public=public, secret=secret)


def _write_new(path: Path, text: str, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; remove it first to make a new key") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def load_keypair(stem: Path) -> KeyPair:
    """Load a keypair, refusing a secret file that others could read or change."""
    secret_path = stem.with_suffix(".key_secret")
    text = read_secret_file(secret_path)
    public, secret = _field(text, "public-key"), _field(text, "secret-key")
    if secret is None or public is None or not is_valid_public_key(public):
        raise KeyFileError(f"{secret_path}: not a CURVE secret key file (no valid public-key and secret-key)")
    try:
        derived = zmq.curve_public(secret)
    except (ValueError, zmq.ZMQError):
        raise KeyFileError(f"{secret_path}: the secret key is malformed") from None
    if derived != public:
        raise KeyFileError(f"{secret_path}: public and secret key do not belong together")
    return KeyPair(public=public, secret=secret)


def _field(text: bytes, name: bytes | str) -> bytes | None:
    # The ZPL format pyzmq writes and zmq.auth.load_certificate reads.
    key = name.encode() if isinstance(name, str) else name
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(key):
            return line.split(b"=", 1)[1].strip(b" \t'\"") if b"=" in line else None
    return None


def read_secret_file(path: Path) -> bytes:
    """Read a secret file safely: no symlink, ours, mode 0600 or stricter, in a private directory."""
    check_directory(path.parent)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise KeyFileError(f"{path}: secret key file is missing") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot open the secret key ({exc.strerror}); it must be a regular file") from None
    with os.fdopen(fd, "rb") as fh:
        # Checked on the open descriptor, so the file cannot be swapped in between.
        _check_secret_stat(path, os.fstat(fh.fileno()))
        return fh.read(64 * 1024)


def _check_secret_stat(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise KeyFileError(f"{path}: secret key must be a regular file (not a link or device)")
    if info.st_uid != os.geteuid():
        raise KeyFileError(
            f"{path}: secret key is owned by uid {info.st_uid}, not by uid {os.geteuid()} running ssd; "
            f"fix with: chown {os.geteuid()} {path}"
        )
    if info.st_mode & 0o077:
        raise KeyFileError(
            f"{path}: secret key is accessible by others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"fix with: chmod 600 {path}"
        )


def check_directory(directory: Path) -> None:
    """Refuse a key directory that others may write to (they could replace the key)."""
    try:
        info = os.stat(directory)
    except FileNotFoundError:
        return  # nothing to read there; the caller reports the missing file
    if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
        raise KeyFileError(
            f"{directory}: directory of a secret key is writable by others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); fix with: chmod go-w {directory}"
        )


def load_or_create_keypair(stem: Path) -> tuple[KeyPair, bool]:
    """Load the keypair at *stem*, making it first if neither file exists; tell if made."""
    if not stem.with_suffix(".key_secret").exists() and not stem.with_suffix(".key").exists():
        return create_keypair(stem), True
    return load_keypair(stem), False
