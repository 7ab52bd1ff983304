"""The server's X.509 certificate: it binds the host's names to the server's CURVE key.

CURVE keys cannot sign, so the certificate has its own signing key
(``server.crt.key``, EC P-256, 0600) and names the CURVE public key in a
subjectAltName URI ``ssd-curve:<base64url of the 32 key bytes>``. ``ssd init``
makes a self-signed certificate; a site replaces it with one its CA signs
(``ssd cert csr``, then ``ssd cert install FILE``). Clients that have the CA
file check the chain, the dates, the host name and that the certificate binds
the key the CURVE handshake then proves (``verify_server_certificate``).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq.utils.z85
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from ssd import hostinfo, keys
from ssd.errors import CertificateError
from ssd.files import write_atomic

__all__ = [
    "CURVE_URI_SCHEME",
    "CertificateFacts",
    "bound_curve_keys",
    "curve_uri",
    "describe",
    "ensure_certificate",
    "host_names",
    "install_certificate",
    "load_chain",
    "make_csr",
    "verify_server_certificate",
]

CURVE_URI_SCHEME = "ssd-curve:"
SELF_SIGNED_DAYS = 3650
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def curve_uri(public_z85: bytes) -> str:
    """The subjectAltName URI that names a CURVE public key (Z85 in, base64url out)."""
    raw = zmq.utils.z85.decode(public_z85)
    return CURVE_URI_SCHEME + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _uri_key(uri: str) -> bytes | None:
    encoded = uri.removeprefix(CURVE_URI_SCHEME)
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except ValueError:
        return None
    return zmq.utils.z85.encode(raw) if len(raw) == 32 else None


def _san(cert: x509.Certificate | x509.CertificateSigningRequest) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def bound_curve_keys(cert: x509.Certificate | x509.CertificateSigningRequest) -> list[bytes]:
    """The CURVE public keys (Z85) that *cert* names in ``ssd-curve:`` URIs."""
    san = _san(cert)
    uris = san.get_values_for_type(x509.UniformResourceIdentifier) if san else []
    found = [_uri_key(uri) for uri in uris if uri.startswith(CURVE_URI_SCHEME)]
    return [key for key in found if key is not None]


def _names(cert: x509.Certificate | x509.CertificateSigningRequest) -> tuple[list[str], list[str]]:
    san = _san(cert)
    if san is None:
        return [], []
    return san.get_values_for_type(x509.DNSName), [str(a) for a in san.get_values_for_type(x509.IPAddress)]


def host_names(server_name: str = "") -> list[str]:
    """This host's DNS names for a certificate: short name, FQDN (when it has one) and the configured name."""
    short = hostinfo.host_name().lower()
    names = [short]
    fqdn = socket.getfqdn().lower()
    if fqdn.startswith(short + "."):  # Debian's /etc/hosts often maps the host name to localhost
        names.append(fqdn)
    if server_name and _is_dns_label_safe(server_name):
        names.append(server_name.lower())
    return list(dict.fromkeys(names))


def _is_dns_label_safe(name: str) -> bool:
    return all(part and part.replace("-", "").isalnum() and part.isascii() for part in name.split("."))


def _subject(name: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, name[:64]), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ssd")]
    )


def _general_names(dns: Iterable[str], ips: Iterable[str], public_z85: bytes) -> list[x509.GeneralName]:
    found: list[x509.GeneralName] = [x509.DNSName(name) for name in dict.fromkeys(dns)]
    found += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ips)]
    found.append(x509.UniformResourceIdentifier(curve_uri(public_z85)))
    return found


def _load_or_create_signing_key(path: Path) -> tuple[ec.EllipticCurvePrivateKey, bool]:
    if path.exists():
        data = keys.read_secret_file(path)  # same rules as the CURVE secret: ours, 0600, private folder
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise CertificateError(f"{path}: not an unencrypted PEM private key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CertificateError(f"{path}: the certificate key must be an EC key")
        return key, False
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write_new(path, pem, 0o600)
    return key, True


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _replace(path: Path, data: bytes, mode: int) -> None:
    """Write *path* atomically (a temporary file renamed over it) with *mode*."""
    write_atomic(path, data, mode=mode, durable=True)


def make_self_signed(
    key: ec.EllipticCurvePrivateKey, public_z85: bytes, names: list[str], *, days: int = SELF_SIGNED_DAYS
) -> x509.Certificate:
    """A self-signed certificate for *names* binding *public_z85*; usable as its own trust anchor."""
    now = datetime.datetime.now(datetime.UTC)
    subject = _subject(names[0])
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(_general_names(names, [], public_z85)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def ensure_certificate(cert_file: Path, key_file: Path, public_z85: bytes, names: list[str]) -> list[str]:
    """Make the signing key and a self-signed certificate where missing; return the files made."""
    key, made_key = _load_or_create_signing_key(key_file)
    made = [str(key_file)] if made_key else []
    if not cert_file.exists():
        cert = make_self_signed(key, public_z85, names)
        _write_new(cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        made.append(str(cert_file))
    return made


def make_csr(key_file: Path, public_z85: bytes, names: list[str], ips: list[str]) -> bytes:
    """A PEM certificate signing request for *names* and *ips*, binding *public_z85*, signed by the cert key."""
    key, _ = _load_or_create_signing_key(key_file)
    try:
        general = _general_names(names, ips, public_z85)
    except ValueError as exc:
        raise CertificateError(f"not an IP address: {exc}") from None
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_subject(names[0]))
        .add_extension(x509.SubjectAlternativeName(general), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def load_chain(data: bytes, source: str) -> list[x509.Certificate]:
    """Parse PEM certificates (the leaf first); raise CertificateError naming *source*."""
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        chain = []
    if not chain:
        raise CertificateError(f"{source}: no PEM certificate in it")
    return chain


def _check_key(leaf: x509.Certificate, curve_key: bytes, who: str) -> None:
    bound = bound_curve_keys(leaf)
    if not bound:
        raise CertificateError(f"{who}: the certificate binds no CURVE key (no {CURVE_URI_SCHEME} subjectAltName)")
    if curve_key not in bound:
        raise CertificateError(
            f"{who}: the certificate is for another key: it binds {', '.join(keys.fingerprint(k) for k in bound)}, "
            f"but the server's key is {keys.fingerprint(curve_key)}"
        )


def _check_dates(leaf: x509.Certificate, now: datetime.datetime, who: str) -> None:
    if now > leaf.not_valid_after_utc:
        raise CertificateError(f"{who}: the certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    if now < leaf.not_valid_before_utc:
        raise CertificateError(
            f"{who}: the certificate is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )


def _subject_for(host: str) -> x509.DNSName | x509.IPAddress:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _matches(leaf: x509.Certificate, host: str) -> bool:
    dns, ips = _names(leaf)
    try:
        return ipaddress.ip_address(host) in {ipaddress.ip_address(ip) for ip in ips}
    except ValueError:
        host = host.lower().rstrip(".")
        return any(_dns_match(pattern.lower(), host) for pattern in dns)


def _dns_match(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):  # one left-most label only, as RFC 6125 says
        label, _, rest = host.partition(".")
        return bool(label) and rest == pattern[2:]
    return pattern == host


def verify_server_certificate(
    chain_pem: bytes | str,
    ca_pem: bytes | str,
    host: str,
    curve_key: bytes,
    *,
    now: datetime.datetime | None = None,
) -> x509.Certificate:
    """Check that *chain_pem* is valid now, names *host*, binds *curve_key* and chains to a CA in *ca_pem*.

    Clients call it (through ``ssd.client.verify``) before the CURVE handshake
    with *curve_key*; the handshake then proves that the server holds that key.
    Return the leaf; raise CertificateError saying what is wrong.
    """
    who = f"server {host}"
    chain = load_chain(chain_pem.encode() if isinstance(chain_pem, str) else chain_pem, f"{who}'s certificate")
    anchors = load_chain(ca_pem.encode() if isinstance(ca_pem, str) else ca_pem, "the CA file")
    leaf, moment = chain[0], now or datetime.datetime.now(datetime.UTC)
    _check_key(leaf, curve_key, who)
    _check_dates(leaf, moment, who)
    if not _matches(leaf, host):
        dns, ips = _names(leaf)
        raise CertificateError(f"{who}: the certificate is for {', '.join(dns + ips) or 'no name'}, not for {host}")
    verifier = PolicyBuilder().store(Store(anchors)).time(moment).build_server_verifier(_subject_for(host))
    try:
        verifier.verify(leaf, chain[1:])
    except VerificationError as exc:
        issuer = leaf.issuer.rfc4514_string()
        raise CertificateError(
            f"{who}: the certificate (issued by {issuer}) is not trusted by the CA file: {exc}"
        ) from None
    return leaf


@dataclass(frozen=True)
class CertificateFacts:
    """What ``ssd cert show`` and ``ssd doctor`` report about a certificate."""

    subject: str
    issuer: str
    self_signed: bool
    not_before: datetime.datetime
    not_after: datetime.datetime
    dns_names: list[str]
    ip_addresses: list[str]
    curve_keys: list[str]  # fingerprints of the bound CURVE keys
    sha256: str
    chain_length: int

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        data = dict(self.__dict__)
        data["not_before"] = self.not_before.isoformat()
        data["not_after"] = self.not_after.isoformat()
        return data


def describe(chain: list[x509.Certificate]) -> CertificateFacts:
    """The facts of a certificate chain's leaf."""
    leaf = chain[0]
    dns, ips = _names(leaf)
    return CertificateFacts(
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        self_signed=leaf.issuer == leaf.subject,
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        dns_names=dns,
        ip_addresses=ips,
        curve_keys=[keys.fingerprint(k) for k in bound_curve_keys(leaf)],
        sha256="SHA256:" + leaf.fingerprint(hashes.SHA256()).hex(":").upper(),
        chain_length=len(chain),
    )


def check_own_certificate(
    chain: list[x509.Certificate], public_z85: bytes, *, now: datetime.datetime | None = None
) -> None:
    """The checks a server applies to its own certificate: it binds our key and is valid now."""
    _check_key(chain[0], public_z85, "this server")
    _check_dates(chain[0], now or datetime.datetime.now(datetime.UTC), "this server")


def install_certificate(
    source: Path,
    cert_file: Path,
    key_file: Path,
    public_z85: bytes,
    names: list[str],
    *,
    ca_pem: bytes | None = None,
) -> CertificateFacts:
    """Install the signed certificate at *source* after checking it is this server's; keep the old as ``.old``."""
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise CertificateError(f"{source}: cannot read: {exc.strerror}") from None
    chain = load_chain(data, str(source))
    leaf = chain[0]
    key, _ = _load_or_create_signing_key(key_file)
    if leaf.public_key() != key.public_key():
        raise CertificateError(
            f"{source}: the certificate is for another signing key than {key_file}; "
            "it must be signed from this server's request (ssd cert csr)"
        )
    check_own_certificate(chain, public_z85)
    if not any(_matches(leaf, name) for name in names):
        dns, ips = _names(leaf)
        raise CertificateError(
            f"{source}: the certificate is for {', '.join(dns + ips) or 'no name'}, none of this host's names "
            f"({', '.join(names)}); give the name clients use with --name"
        )
    if ca_pem is not None:
        verify_server_certificate(data, ca_pem, next(n for n in names if _matches(leaf, n)), public_z85)
    if cert_file.exists():
        _replace(cert_file.with_name(cert_file.name + ".old"), cert_file.read_bytes(), 0o644)
    _replace(cert_file, b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain), 0o644)
    return describe(chain)
