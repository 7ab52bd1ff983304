"""Authorized-keys files: read them as sshd's StrictModes would, change them as their owner.

A file counts only if it and every directory from the user's home down to it
belong to the user (or root) and are not writable by group or others;
otherwise it is ignored and the reason logged. ``python -m ssd.workers.keyfile
add PATH KEY [COMMENT]`` appends a key, ``remove PATH KEY`` and ``remove-all
PATH`` take keys out; the auth worker runs them as the user so that root never
writes into a home directory.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from pathlib import Path

from ssd.files import write_atomic
from ssd.keys import is_valid_public_key

__all__ = ["append_key", "authorized", "read_keys", "remove_keys"]

log = logging.getLogger(__name__)

_HEADER = "# ssd authorized client keys: one Z85 CURVE public key per line, then an optional comment\n"


def _unsafe(path: Path, owner_uid: int) -> str | None:
    """Why *path* may not be trusted for *owner_uid*, or None."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:  # e.g. another user's 0700 folder in user mode, or a root-squashed NFS home
        return f"cannot be checked ({exc.strerror})"
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if info.st_uid not in (owner_uid, 0):
        return f"is owned by uid {info.st_uid}, not by the user or root"
    if info.st_mode & 0o022:
        return f"is writable by group or others (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def read_keys(path: Path, owner_uid: int, top: Path) -> set[bytes]:
    """Return the keys in *path*, or none if the file or a directory up to *top* is unsafe."""
    chain = [path, *[p for p in path.parents if p == top or top in p.parents]]
    for item in chain:
        reason = _unsafe(item, owner_uid)
        if reason == "missing":
            return set()
        if reason is not None:
            log.warning("ignoring authorized keys %s: %s %s", path, item, reason)
            return set()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        log.warning("ignoring authorized keys %s: %s", path, exc.strerror)
        return set()
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            log.warning("ignoring authorized keys %s: not a regular file", path)
            return set()
        text = fh.read(1 << 20)
    keys = set()
    for line in text.splitlines():
        word = line.split(maxsplit=1)[0] if line.strip() and not line.startswith(b"#") else b""
        if is_valid_public_key(word):
            keys.add(word)
    return keys


def authorized(key: bytes, files: list[tuple[Path, int, Path]]) -> bool:
    """Tell whether *key* is listed in any of the (path, owner uid, top directory) files."""
    return any(key in read_keys(path, uid, top) for path, uid, top in files)


def append_key(path: Path, key: bytes, comment: str) -> bool:
    """Append *key* to *path* (creating it 0600 and its folders 0700); False if already there."""
    if not is_valid_public_key(key):
        raise ValueError("not a CURVE public key")
    if "\n" in comment or "\r" in comment:
        raise ValueError("comment must be one line")
    path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "r+b") as fh:
        existing = fh.read()
        if any(line.split(maxsplit=1)[:1] == [key] for line in existing.splitlines()):
            return False
        if not existing:
            fh.write(_HEADER.encode())
        elif not existing.endswith(b"\n"):
            fh.write(b"\n")
        fh.write(key + (b" " + comment.encode() if comment else b"") + b"\n")
    return True


def remove_keys(path: Path, key: bytes | None) -> int:
    """Take *key* (None: every key) out of *path*, keeping its other lines; return how many lines went."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return 0
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise ValueError("not a regular file")
        lines = fh.read(1 << 20).splitlines(keepends=True)
    kept = [line for line in lines if not _listed(line, key)]
    if len(kept) == len(lines):
        return 0
    # A new file renamed over the old one: a crash leaves either, never half of one.
    write_atomic(path, b"".join(kept), durable=True)
    return len(lines) - len(kept)


def _listed(line: bytes, key: bytes | None) -> bool:
    word = line.split(maxsplit=1)[0] if line.strip() and not line.startswith(b"#") else b""
    return bool(word) and (word == key if key is not None else is_valid_public_key(word))


def main(argv: list[str]) -> int:
    """``add PATH KEY [COMMENT]``: exit 0 added, 3 already present, 2 refused.
    ``remove PATH KEY`` / ``remove-all PATH``: exit 0, the number of keys removed on stdout; 2 refused."""
    try:
        if len(argv) in (3, 4) and argv[0] == "add":
            added = append_key(Path(argv[1]), argv[2].encode(), argv[3] if len(argv) == 4 else "")
            return 0 if added else 3
        if (len(argv), argv[:1]) in ((3, ["remove"]), (2, ["remove-all"])):
            print(remove_keys(Path(argv[1]), argv[2].encode() if len(argv) == 3 else None))
            return 0
    except (OSError, ValueError) as exc:
        print(f"cannot change {argv[1]}: {exc}", file=sys.stderr)
        return 2
    print(
        "usage: python -m ssd.workers.keyfile add PATH KEY [COMMENT] | remove PATH KEY | remove-all PATH",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
