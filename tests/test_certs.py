"""The server certificate: self-signed at init, CSR for a site CA, install with checks, show,
and the client-side verification that names what is wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import zmq
from certfixtures import DAY, NOW, SiteCA, server_names
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from ssd import certs, keys
from ssd.errors import CertificateError

SSD = str(Path(sys.executable).with_name("ssd"))


def ssd(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``ssd`` with server directories under *tmp* (user mode)."""
    env = {**os.environ, "SSD_CONFIG_DIR": str(tmp / "cfg"), "SSD_STATE_DIR": str(tmp / "state")}
    return subprocess.run([SSD, *args], env=env, capture_output=True, text=True, timeout=60, cwd=tmp, check=False)


def other_key() -> bytes:
    """A CURVE public key that is not the server's."""
    return zmq.curve_keypair()[0]


@pytest.fixture
def server(tmp_path: Path) -> keys.KeyPair:
    """An initialized server directory under tmp_path/cfg; its keypair."""
    result = ssd(tmp_path, "init")
    assert result.returncode == 0, result.stderr
    return keys.load_keypair(tmp_path / "cfg" / "server")


def test_init_makes_a_self_signed_certificate_binding_the_key(tmp_path: Path, server: keys.KeyPair) -> None:
    """ssd init: server.crt (0644) names the host and binds the CURVE key; its signing key is 0600."""
    cfg = tmp_path / "cfg"
    assert (cfg / "server.crt").stat().st_mode & 0o777 == 0o644
    assert (cfg / "server.crt.key").stat().st_mode & 0o777 == 0o600
    chain = certs.load_chain((cfg / "server.crt").read_bytes(), "server.crt")
    assert certs.bound_curve_keys(chain[0]) == [server.public]
    facts = certs.describe(chain)
    assert facts.self_signed
    assert set(certs.host_names()) <= set(facts.dns_names)
    shown = json.loads(ssd(tmp_path, "cert", "show", "--json").stdout)
    assert shown["binds_server_key"] is True
    assert shown["curve_keys"] == [server.fingerprint]


def test_self_signed_certificate_can_be_its_own_ca_file(tmp_path: Path, server: keys.KeyPair) -> None:
    """A client may pin a server by its self-signed certificate used as the CA file."""
    pem = (tmp_path / "cfg" / "server.crt").read_bytes()
    name = certs.host_names()[0]
    assert certs.verify_server_certificate(pem, pem, name, server.public).subject is not None


def test_csr_names_the_host_and_binds_the_key(tmp_path: Path, server: keys.KeyPair) -> None:
    """ssd cert csr: a CSR signed by the cert key with the host's names, extra names/IPs and the key URI."""
    result = ssd(tmp_path, "cert", "csr", "--name", "labpc.example.org", "--ip", "127.0.0.1")
    assert result.returncode == 0, result.stderr
    assert certs.curve_uri(server.public) in result.stdout
    csr = x509.load_pem_x509_csr((tmp_path / "cfg" / "server.csr").read_bytes())
    assert csr.is_signature_valid
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "labpc.example.org" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert certs.bound_curve_keys(csr) == [server.public]


def test_cert_install_accepts_the_signed_certificate_and_keeps_the_old(tmp_path: Path, server: keys.KeyPair) -> None:
    """ssd cert install: a CA-signed cert for our CSR is installed (checked against the CA); the old is kept."""
    ca = SiteCA.make()
    ssd(tmp_path, "cert", "csr", "--name", "labpc.example.org")
    signed = tmp_path / "signed.pem"
    signed.write_bytes(ca.sign_csr((tmp_path / "cfg" / "server.csr").read_bytes()))
    old = (tmp_path / "cfg" / "server.crt").read_bytes()
    result = ssd(tmp_path, "cert", "install", str(signed), "--ca-file", str(ca.write(tmp_path / "ca.pem")))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cfg" / "server.crt").read_bytes() == signed.read_bytes()
    assert (tmp_path / "cfg" / "server.crt.old").read_bytes() == old
    shown = json.loads(ssd(tmp_path, "cert", "show", "--json").stdout)
    assert shown["issuer"] == "CN=Test Site CA"
    assert shown["binds_server_key"] is True


def _signing_key(tmp: Path) -> ec.EllipticCurvePublicKey:
    csr = x509.load_pem_x509_csr((tmp / "cfg" / "server.csr").read_bytes())
    public = csr.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    return public


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("other_curve_key", "is for another key"),
        ("no_curve_key", "binds no CURVE key"),
        ("other_name", "none of this host's names"),
        ("expired", "expired on"),
        ("other_signing_key", "for another signing key"),
    ],
)
def test_cert_install_refuses_what_is_not_ours(tmp_path: Path, server: keys.KeyPair, case: str, expected: str) -> None:
    """ssd cert install refuses a certificate for another key, name, time or request, and says which."""
    ca = SiteCA.make()
    ssd(tmp_path, "cert", "csr")
    public = _signing_key(tmp_path)
    name = certs.host_names()[0]
    if case == "other_curve_key":
        pem = ca.issue(public, server_names([name], [], other_key()))
    elif case == "no_curve_key":
        pem = ca.issue(public, [x509.DNSName(name)])
    elif case == "other_name":
        pem = ca.issue(public, server_names(["elsewhere.example.org"], [], server.public))
    elif case == "expired":
        pem = ca.issue(public, server_names([name], [], server.public), not_before=NOW - 9 * DAY, not_after=NOW - DAY)
    else:
        pem = ca.issue(ec.generate_private_key(ec.SECP256R1()).public_key(), server_names([name], [], server.public))
    (tmp_path / "signed.pem").write_bytes(pem)
    before = (tmp_path / "cfg" / "server.crt").read_bytes()
    result = ssd(tmp_path, "cert", "install", str(tmp_path / "signed.pem"))
    assert result.returncode == CertificateError.exit_code
    assert expected in result.stderr
    assert (tmp_path / "cfg" / "server.crt").read_bytes() == before


class TestVerifyServerCertificate:
    """verify_server_certificate: what a client with a CA file checks, each refusal naming its reason."""

    @pytest.fixture
    def setup(self) -> tuple[SiteCA, bytes, ec.EllipticCurvePublicKey]:
        """A CA, a server CURVE key and a certificate signing key."""
        return SiteCA.make(), zmq.curve_keypair()[0], ec.generate_private_key(ec.SECP256R1()).public_key()

    def test_accepts_a_good_certificate_by_name_and_address(
        self, setup: tuple[SiteCA, bytes, ec.EllipticCurvePublicKey]
    ) -> None:
        """Chain, dates, DNS name or IP address, and the bound key all check out."""
        ca, key, public = setup
        pem = ca.issue(public, server_names(["labpc.example.org"], ["127.0.0.1"], key))
        assert certs.verify_server_certificate(pem, ca.pem, "labpc.example.org", key)
        assert certs.verify_server_certificate(pem, ca.pem, "127.0.0.1", key)

    @pytest.mark.parametrize(
        ("case", "expected"),
        [
            ("other_key", "is for another key"),
            ("other_name", "is for labpc.example.org, 127.0.0.1, not for otherhost.example.org"),
            ("expired", "expired on"),
            ("not_yet", "is not valid before"),
            ("other_ca", "not trusted by the CA file"),
        ],
    )
    def test_refuses_and_says_why(
        self, setup: tuple[SiteCA, bytes, ec.EllipticCurvePublicKey], case: str, expected: str
    ) -> None:
        """Another key, another name, expired, not yet valid, another CA: refused, saying which."""
        ca, key, public = setup
        host, anchors, bound = "labpc.example.org", ca.pem, key
        when = {}
        if case == "other_key":
            bound = other_key()
        elif case == "other_name":
            host = "otherhost.example.org"
        elif case == "expired":
            when = {"not_before": NOW - 9 * DAY, "not_after": NOW - DAY}
        elif case == "not_yet":
            when = {"not_before": NOW + DAY, "not_after": NOW + 9 * DAY}
        else:
            anchors = SiteCA.make("Another CA").pem
        pem = ca.issue(public, server_names(["labpc.example.org"], ["127.0.0.1"], bound), **when)
        with pytest.raises(CertificateError, match=expected):
            certs.verify_server_certificate(pem, anchors, host, key)

    def test_wildcards_match_one_label_only(self, setup: tuple[SiteCA, bytes, ec.EllipticCurvePublicKey]) -> None:
        """*.lab.example.org covers pc1.lab.example.org, not a.b.lab.example.org nor lab.example.org."""
        ca, key, public = setup
        pem = ca.issue(public, server_names(["*.lab.example.org"], [], key))
        assert certs.verify_server_certificate(pem, ca.pem, "pc1.lab.example.org", key)
        for host in ("a.b.lab.example.org", "lab.example.org"):
            with pytest.raises(CertificateError, match="not for"):
                certs.verify_server_certificate(pem, ca.pem, host, key)

    def test_garbage_is_refused(self, setup: tuple[SiteCA, bytes, ec.EllipticCurvePublicKey]) -> None:
        """Something that is no PEM certificate is a CertificateError, not a crash."""
        ca, key, _ = setup
        with pytest.raises(CertificateError, match="no PEM certificate"):
            certs.verify_server_certificate(b"hello", ca.pem, "labpc", key)
