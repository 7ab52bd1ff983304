"""The administrator's ``ssd`` commands: ``install``, ``uninstall``, ``doctor`` and ``cert csr|install|show``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ssd import certs, config, keys
from ssd.errors import ErrorCode, SSDError
from ssd.paths import Mode, ServerPaths, server_paths
from ssd.service.doctor import diagnose
from ssd.service.install import InstallReport, install, uninstall

__all__ = ["add_parsers"]

AddMode = Callable[[argparse.ArgumentParser], None]


def add_parsers(sub: Any, add_mode: AddMode) -> None:
    """Add install, uninstall, doctor and cert to the ``ssd`` subcommands."""
    inst = sub.add_parser("install", help="install the daemon as a systemd service (--system: root; --user: you)")
    add_mode(inst)
    inst.add_argument("--root", type=Path, metavar="DIR", help="install below DIR (a staging root); start nothing")
    inst.add_argument("--no-enable", action="store_true", help="write the files but do not enable or start the unit")
    inst.set_defaults(func=cmd_install)

    rm = sub.add_parser("uninstall", help="stop and remove the service; keys, config and state stay unless --purge")
    add_mode(rm)
    rm.add_argument("--root", type=Path, metavar="DIR", help="remove from below DIR (a staging root)")
    rm.add_argument("--purge", action="store_true", help="also delete config (keys, certificate), state and logs")
    rm.set_defaults(func=cmd_uninstall)

    doctor = sub.add_parser("doctor", help="check the installation: each line ok, or the problem and its fix")
    doctor.add_argument("--user", metavar="NAME", help="also list the environments user NAME has here")
    doctor.add_argument(
        "--mode", choices=["system", "user"], help="which daemon to check (default: system as root, else user)"
    )
    doctor.add_argument("--json", action="store_true", help="print one JSON document")
    doctor.set_defaults(func=cmd_doctor)

    cert = sub.add_parser("cert", help="the server certificate: request, install, show")
    cert_sub = cert.add_subparsers(dest="cert_command", required=True, metavar="ACTION")
    csr = cert_sub.add_parser("csr", help="write a certificate signing request for your CA")
    add_mode(csr)
    csr.add_argument("--name", action="append", default=[], metavar="DNS", help="another DNS name (repeatable)")
    csr.add_argument("--ip", action="append", default=[], metavar="ADDR", help="an IP address too (repeatable)")
    csr.add_argument("--out", type=Path, metavar="FILE", help="where to write it (default: CONFIG_DIR/server.csr)")
    csr.set_defaults(func=cmd_cert_csr)
    put = cert_sub.add_parser("install", help="install the certificate your CA signed (after checking it)")
    add_mode(put)
    put.add_argument("file", type=Path, metavar="FILE", help="PEM file: the certificate, then any intermediates")
    put.add_argument("--name", action="append", default=[], metavar="DNS", help="a name clients use (repeatable)")
    put.add_argument("--ca-file", type=Path, metavar="CA", help="also check the chain against this CA (PEM)")
    put.set_defaults(func=cmd_cert_install)
    show = cert_sub.add_parser("show", help="show the certificate: names, dates, issuer, bound key")
    add_mode(show)
    show.add_argument("--json", action="store_true", help="print one JSON document")
    show.set_defaults(func=cmd_cert_show)


def cmd_install(args: argparse.Namespace) -> int:
    """``ssd install``: directories, config, keys, certificate, unit; then enable and start it."""
    report = install(args.mode, root=args.root, enable=not args.no_enable)
    _print_report(report)
    if report.enabled:
        print("enabled and started" if args.root is None else f"enabled below {args.root} (nothing started)")
    if report.problem:
        print(f"ssd: {report.problem}", file=sys.stderr)
    if report.todo:
        print("to start it, run:" if not report.enabled else "then run:")
        for line in report.todo:
            print(f"  {line}")
    if args.mode == "user" and args.root is None:
        print("to keep it running while you are logged out: loginctl enable-linger")
    return 0 if report.ok else 1


def cmd_uninstall(args: argparse.Namespace) -> int:
    """``ssd uninstall``: disable and remove the unit; keep data unless --purge."""
    report = uninstall(args.mode, root=args.root, purge=args.purge)
    _print_report(report)
    if report.kept:
        print("kept (the server's keys, certificate, config and state; `--purge` deletes them):")
        for path in report.kept:
            print(f"  {path}")
    if report.problem:
        print(f"ssd: {report.problem}", file=sys.stderr)
        for line in report.todo:
            print(f"  {line}")
    return 0 if report.ok else 1


def _print_report(report: InstallReport) -> None:
    for path in report.made:
        print(f"made     {path}")
    for path in report.removed:
        print(f"removed  {path}")


def cmd_doctor(args: argparse.Namespace) -> int:
    """``ssd doctor``: run the checks; exit 1 if any found a problem."""
    mode: Mode = args.mode or ("system" if os.geteuid() == 0 else "user")
    findings = diagnose(mode, server_paths(mode), user=args.user)
    problems = sum(1 for f in findings if f.status == "problem")
    if args.json:
        print(json.dumps({"mode": mode, "problems": problems, "checks": [f.__dict__ for f in findings]}, indent=2))
    else:
        for finding in findings:
            print(finding.line())
        print(f"{problems} problem{'s' if problems != 1 else ''} found" if problems else "all ok")
    return 1 if problems else 0


def _cert_paths(mode: Mode) -> tuple[ServerPaths, keys.KeyPair, config.Config]:
    if mode == "system" and os.geteuid() != 0:
        raise SSDError(
            f"the system certificate needs root; run: sudo ssd {' '.join(sys.argv[1:])}", code=ErrorCode.NOT_ROOT
        )
    paths = server_paths(mode)
    return paths, keys.load_keypair(paths.key_stem), config.load_config(paths.config_file)


def cmd_cert_csr(args: argparse.Namespace) -> int:
    """``ssd cert csr``: a CSR with this host's names and the CURVE key, for the site's CA."""
    paths, pair, cfg = _cert_paths(args.mode)
    names = list(dict.fromkeys([*certs.host_names(cfg.server.name), *(n.lower() for n in args.name)]))
    pem = certs.make_csr(paths.cert_key_file, pair.public, names, args.ip)
    out = args.out or paths.csr_file
    out.write_bytes(pem)
    print(f"wrote {out} for {', '.join(names + args.ip)}; it binds the key {pair.fingerprint}")
    print(f"Send it to your CA. The certificate must keep the subjectAltName URI {certs.curve_uri(pair.public)}")
    print("Then: ssd cert install FILE" + (" --system" if args.mode == "system" else ""))
    return 0


def cmd_cert_install(args: argparse.Namespace) -> int:
    """``ssd cert install FILE``: check it binds this server's key and names, then install it."""
    paths, pair, cfg = _cert_paths(args.mode)
    names = list(dict.fromkeys([*certs.host_names(cfg.server.name), *(n.lower() for n in args.name)]))
    ca_pem = None
    if args.ca_file is not None:
        try:
            ca_pem = args.ca_file.read_bytes()
        except OSError as exc:
            raise SSDError(f"cannot read {args.ca_file}: {exc.strerror}") from None
    facts = certs.install_certificate(
        args.file, paths.cert_file, paths.cert_key_file, pair.public, names, ca_pem=ca_pem
    )
    print(f"installed {paths.cert_file}: issued by {facts.issuer}, valid until {facts.not_after:%Y-%m-%d}")
    restart = "systemctl restart ssd" if args.mode == "system" else "systemctl --user restart ssd (or restart ssd run)"
    print(f"the daemon serves it after a restart: {restart}")
    return 0


def cmd_cert_show(args: argparse.Namespace) -> int:
    """``ssd cert show``: the installed certificate's facts, and whether it binds this server's key."""
    paths, pair, _ = _cert_paths(args.mode)
    if not paths.cert_file.exists():
        raise SSDError(f"no certificate at {paths.cert_file}; make one with: ssd init", code=ErrorCode.NOT_INITIALIZED)
    facts = certs.describe(certs.load_chain(paths.cert_file.read_bytes(), str(paths.cert_file)))
    binds = pair.fingerprint in facts.curve_keys
    if args.json:
        print(json.dumps({**facts.as_dict(), "file": str(paths.cert_file), "binds_server_key": binds}, indent=2))
        return 0
    rows = [
        ("file", str(paths.cert_file)),
        ("subject", facts.subject),
        ("issuer", facts.issuer + (" (self-signed)" if facts.self_signed else "")),
        ("names", ", ".join(facts.dns_names + facts.ip_addresses) or "none"),
        ("valid", f"{facts.not_before:%Y-%m-%d %H:%M} to {facts.not_after:%Y-%m-%d %H:%M} UTC"),
        ("CURVE key", ", ".join(facts.curve_keys) or "none"),
        ("binds ours", "yes" if binds else f"NO: this server's key is {pair.fingerprint}"),
        ("chain", f"{facts.chain_length} certificate(s)"),
        ("sha256", facts.sha256),
    ]
    for label, value in rows:
        print(f"{label + ':':<12} {value}")
    return 0
