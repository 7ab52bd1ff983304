"""Clients with a CA file: a server whose certificate the site's CA signed is accepted without
trust on first use; another CA, another name, no certificate, or a certificate for another key
are refused with a message that says which."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from certfixtures import SiteCA, server_names
from cryptography import x509
from support.daemon import Daemon, start_daemon

from ssd import hostinfo
from ssd.client import Client, KnownHosts
from ssd.client.identity import client_keypair
from ssd.errors import CertificateError, ServerUntrusted

BIN = Path(sys.executable).parent


def run(tool: str, *args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """Run ``ssd`` or ``ssd-ctl`` with the server and client directories of *tmp*."""
    env = {
        **os.environ,
        "SSD_CONFIG_DIR": str(tmp / "server-config"),
        "SSD_STATE_DIR": str(tmp / "server-state"),
        "SSD_CLIENT_DIR": str(tmp / "client"),
    }
    return subprocess.run(
        [str(BIN / tool), *args], env=env, capture_output=True, text=True, timeout=60, cwd=tmp, check=False
    )


def certify(tmp: Path, ca: SiteCA) -> None:
    """ssd init, a CSR for 127.0.0.1, signed by *ca*, installed with ssd cert install."""
    assert run("ssd", "init", tmp=tmp).returncode == 0
    assert run("ssd", "cert", "csr", "--ip", "127.0.0.1", tmp=tmp).returncode == 0
    signed = tmp / "signed.pem"
    signed.write_bytes(ca.sign_csr((tmp / "server-config" / "server.csr").read_bytes()))
    installed = run("ssd", "cert", "install", str(signed), tmp=tmp)
    assert installed.returncode == 0, installed.stderr


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Path]]:
    """One daemon whose certificate a site CA signed, and that CA's file."""
    tmp = tmp_path_factory.mktemp("ca-site")
    ca = SiteCA.make()
    certify(tmp, ca)
    daemon = start_daemon(tmp)
    try:
        yield daemon, ca.write(tmp / "site-ca.pem")
    finally:
        daemon.stop_and_check()


def client(host: str, tmp: Path, ca_file: Path | None) -> Client:
    """A client with fresh keys and an empty known-hosts file, trusting nobody on first use."""
    return Client(
        host,
        trust=False,
        identity=client_keypair(tmp / "client"),
        known_hosts=KnownHosts(tmp / "client" / "known_hosts"),
        ca_file=ca_file,
        timeout=10,
        connect_timeout=10,
    )


def test_ca_signed_server_is_accepted_without_tofu(site: tuple[Daemon, Path], tmp_path: Path) -> None:
    """No known-hosts entry, trust=False, a CA file: it connects, and nothing is pinned."""
    daemon, ca_file = site
    with client(daemon.host, tmp_path, ca_file) as server:
        assert server.server_info().fingerprint == daemon.info["fingerprint"]
    assert KnownHosts(tmp_path / "client" / "known_hosts").entries() == []


def test_without_a_ca_file_it_is_trust_on_first_use_as_before(site: tuple[Daemon, Path], tmp_path: Path) -> None:
    """The same server without a CA file: unknown key, the usual TOFU refusal."""
    daemon, _ = site
    with pytest.raises(ServerUntrusted, match="can't be established"):
        client(daemon.host, tmp_path, None).__enter__()


def test_another_ca_is_refused(site: tuple[Daemon, Path], tmp_path: Path) -> None:
    """A CA file of another site: refused, naming the CA problem."""
    daemon, _ = site
    other = SiteCA.make("Another Site CA").write(tmp_path / "other-ca.pem")
    with pytest.raises(CertificateError, match="not trusted by the CA file"):
        client(daemon.host, tmp_path, other).__enter__()


def test_another_name_is_refused(site: tuple[Daemon, Path], tmp_path: Path) -> None:
    """The certificate names 127.0.0.1 and the host's names; connecting as localhost is refused for the name."""
    if "localhost" in (hostinfo.host_name(), *hostinfo.host_name().split(".")):
        pytest.skip("this host is called localhost")
    daemon, ca_file = site
    with pytest.raises(CertificateError, match="not for localhost"):
        client(f"localhost:{daemon.port}", tmp_path, ca_file).__enter__()


def test_ssd_ctl_ca_file(site: tuple[Daemon, Path], tmp_path: Path) -> None:
    """ssd-ctl --ca-file: info works without --trust; with another CA it exits 4 and says why."""
    daemon, ca_file = site
    good = run("ssd-ctl", "--ca-file", str(ca_file), "info", daemon.host, "--json", tmp=tmp_path)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["fingerprint"] == daemon.info["fingerprint"]
    other = SiteCA.make("Another Site CA").write(tmp_path / "other-ca.pem")
    bad = run("ssd-ctl", "--ca-file", str(other), "info", daemon.host, tmp=tmp_path)
    assert bad.returncode == 4
    assert "not trusted by the CA file" in bad.stderr


def test_a_server_without_certificate_is_refused_with_a_ca_file(tmp_path: Path) -> None:
    """A daemon with no server.crt serves none: a CA client says so instead of falling back to TOFU."""
    assert run("ssd", "init", tmp=tmp_path).returncode == 0
    (tmp_path / "server-config" / "server.crt").unlink()
    daemon = start_daemon(tmp_path)
    try:
        ca_file = SiteCA.make().write(tmp_path / "ca.pem")
        with pytest.raises(CertificateError, match="offers no certificate"):
            client(daemon.host, tmp_path, ca_file).__enter__()
    finally:
        daemon.stop_and_check()


def test_daemon_refuses_to_start_with_a_certificate_for_another_key(tmp_path: Path) -> None:
    """A certificate that binds another CURVE key stops start-up with a message naming the fix."""
    assert run("ssd", "init", tmp=tmp_path).returncode == 0
    ca = SiteCA.make()
    csr = run("ssd", "cert", "csr", tmp=tmp_path)
    assert csr.returncode == 0
    public = x509.load_pem_x509_csr((tmp_path / "server-config" / "server.csr").read_bytes()).public_key()
    wrong = ca.issue(public, server_names([hostinfo.host_name()], [], zmq.curve_keypair()[0]))  # type: ignore[arg-type]
    (tmp_path / "server-config" / "server.crt").write_bytes(wrong)
    result = run("ssd", "run", "--bind", "127.0.0.1", "--port", "0", "--no-announce", tmp=tmp_path)
    assert result.returncode == CertificateError.exit_code
    assert "does not bind this server's key" in result.stderr
