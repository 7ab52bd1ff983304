"""Sealed boxes for the events socket: a secret readable only by the holders of given CURVE keys,
and only if the server sealed it.

Events on PUB reach every subscriber, so a kernel's connection info (its HMAC
key, its relay's CURVE keys) is published only sealed: one ephemeral X25519
key per message, and for each recipient (a client key bound to the kernel's
user) the plaintext under ChaCha20-Poly1305 with a key derived (HKDF-SHA256)
from two X25519 exchanges with that recipient's CURVE public key (CURVE keys
are Curve25519 keys): the ephemeral key's, and the server's own key's. The
second authenticates the sender: anyone can seal to a known public key, but
only the holder of the server's secret key makes a box that opens with the
server's public key, which the client verified when it connected (as NaCl's
``crypto_box``). A box from another server, or from anyone else, does not
open. A recipient finds its box by its key's fingerprint.
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

_INFO = b"ssd sealed box v2"
_VERSION = 2


def sealed_context(kernel_id: str) -> bytes:
    """What a kernel's sealed connection info is bound to: a box for one kernel does not open as another's."""
    return b"ssd kernel connection " + kernel_id.encode()


class SealError(ValueError):
    """A sealed box that is not for this key, or that was changed."""


def _key(shared: bytes, ephemeral: bytes, recipient: bytes, sender: bytes) -> bytes:
    info = _INFO + ephemeral + recipient + sender
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


def _private(secret: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(zmq.utils.z85.decode(secret))


def _public(public: bytes) -> X25519PublicKey:
    return X25519PublicKey.from_public_bytes(zmq.utils.z85.decode(public))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def seal(
    plaintext: bytes, recipients: Iterable[bytes], context: bytes, *, sender_public: bytes, sender_secret: bytes
) -> dict[str, object]:
    """Seal *plaintext* for each Z85 CURVE public key in *recipients*, as the holder of the sender's (the
    server's) Z85 keypair; *context* binds the box to its use."""
    ephemeral = X25519PrivateKey.generate()
    epk = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    sender = _private(sender_secret)
    sender_raw = zmq.utils.z85.decode(sender_public)
    boxes = {}
    for public in recipients:
        recipient = _public(public)
        shared = ephemeral.exchange(recipient) + sender.exchange(recipient)
        key = _key(shared, epk, zmq.utils.z85.decode(public), sender_raw)
        nonce = os.urandom(12)
        boxes[fingerprint(public)] = {
            "nonce": _b64(nonce),
            "box": _b64(ChaCha20Poly1305(key).encrypt(nonce, plaintext, context)),
        }
    return {"v": _VERSION, "epk": _b64(epk), "to": boxes}


def open_sealed(sealed: object, public: bytes, secret: bytes, context: bytes, *, sender: bytes) -> bytes:
    """The plaintext of the box for this Z85 keypair, sealed by the holder of the Z85 key *sender* (the server
    this client verified); SealError if there is none, it does not open, or someone else sealed it."""
    if not isinstance(sealed, dict) or sealed.get("v") != _VERSION:
        raise SealError("not a sealed box of this version")
    try:
        box = sealed["to"][fingerprint(public)]
        epk = base64.b64decode(sealed["epk"])
        private = _private(secret)
        shared = private.exchange(X25519PublicKey.from_public_bytes(epk)) + private.exchange(_public(sender))
        key = _key(shared, epk, zmq.utils.z85.decode(public), zmq.utils.z85.decode(sender))
        return ChaCha20Poly1305(key).decrypt(base64.b64decode(box["nonce"]), base64.b64decode(box["box"]), context)
    except (KeyError, TypeError, ValueError, InvalidTag):
        raise SealError("no sealed box for this key from this server, or it does not open") from None
