"""Sealed boxes for the events socket: a secret readable only by the holders of given CURVE keys.

Events on PUB reach every subscriber, so a kernel's connection info (its HMAC
key, its relay's CURVE keys) is published only sealed: one ephemeral X25519
key per message, and for each recipient (a client key bound to the kernel's
user) the plaintext under ChaCha20-Poly1305 with a key derived (HKDF-SHA256)
from the X25519 exchange with that recipient's CURVE public key (CURVE keys
are Curve25519 keys). A recipient finds its box by its key's fingerprint.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable

import zmq.utils.z85
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ssd.keys import fingerprint

__all__ = ["SealError", "open_sealed", "seal", "sealed_context"]

_INFO = b"ssd sealed box v1"


def sealed_context(kernel_id: str) -> bytes:
    """What a kernel's sealed connection info is bound to: a box for one kernel does not open as another's."""
    return b"ssd kernel connection " + kernel_id.encode()


class SealError(ValueError):
    """A sealed box that is not for this key, or that was changed."""


def _key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO + ephemeral + recipient).derive(shared)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def seal(plaintext: bytes, recipients: Iterable[bytes], context: bytes) -> dict[str, object]:
    """Seal *plaintext* for each Z85 CURVE public key in *recipients*; *context* binds the box to its use."""
    ephemeral = X25519PrivateKey.generate()
    epk = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    boxes = {}
    for public in recipients:
        raw = zmq.utils.z85.decode(public)
        key = _key(ephemeral.exchange(X25519PublicKey.from_public_bytes(raw)), epk, raw)
        nonce = os.urandom(12)
        boxes[fingerprint(public)] = {
            "nonce": _b64(nonce),
            "box": _b64(ChaCha20Poly1305(key).encrypt(nonce, plaintext, context)),
        }
    return {"v": 1, "epk": _b64(epk), "to": boxes}


def open_sealed(sealed: object, public: bytes, secret: bytes, context: bytes) -> bytes:
    """The plaintext of the box for this Z85 keypair; SealError if there is none or it does not open."""
    if not isinstance(sealed, dict):
        raise SealError("not a sealed box")
    try:
        box = sealed["to"][fingerprint(public)]
        epk = base64.b64decode(sealed["epk"])
        private = X25519PrivateKey.from_private_bytes(zmq.utils.z85.decode(secret))
        key = _key(private.exchange(X25519PublicKey.from_public_bytes(epk)), epk, zmq.utils.z85.decode(public))
        return ChaCha20Poly1305(key).decrypt(base64.b64decode(box["nonce"]), base64.b64decode(box["box"]), context)
    except (KeyError, TypeError, ValueError, InvalidTag):
        raise SealError("no sealed box for this key, or it does not open") from None
