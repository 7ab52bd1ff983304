"""``ssd``: set up and run the daemon (``init``, ``run``, ``config``); install and check it
(``install``, ``uninstall``, ``doctor``, ``cert``: see ``ssd.service.commands``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any

from ssd import __version__, certs, config, configdoc, hostinfo, keys
from ssd.broker.server import Broker, BrokerOptions
from ssd.errors import CertificateError, ErrorCode, SSDError
from ssd.isolation import drop_cwd_from_sys_path
from ssd.paths import Mode, ServerPaths, server_paths
from ssd.service import commands
from ssd.service.install import initialize
from ssd.service.notify import Notifier

__all__ = ["config_markdown", "main"]

log = logging.getLogger("ssd")

# Longest wait for the zeroconf registration before READY=1 goes out anyway
# (a host without a network at boot must still start).
ANNOUNCE_WAIT = 10.0


def main(argv: list[str] | None = None) -> int:
    """Run the ``ssd`` command line; return the exit code."""
    drop_cwd_from_sys_path()  # `python -m ssd` put it there; root must never import from it later
    args = _parser().parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except SSDError as exc:
        print(f"ssd: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssd",
        description="The Spyder Spinner Daemon: serves Spyder and Jupyter kernels to clients on the network.",
    )
    parser.add_argument("--version", action="version", version=f"ssd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = sub.add_parser("init", help="make the server keys, certificate, config file and state directory")
    add_mode(init)
    init.set_defaults(func=cmd_init)

    run = sub.add_parser("run", help="run the daemon in the foreground")
    add_mode(run)
    run.add_argument("--bind", metavar="ADDR", help="address to listen on (* = all; default from config)")
    run.add_argument("--port", type=int, metavar="N", help="control port; events port is N+1, key port N+2")
    run.add_argument("--name", help="friendly name shown to clients (default: the host name)")
    run.add_argument("--no-announce", action="store_true", help="do not announce this host with zeroconf")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="logging threshold")
    run.set_defaults(func=cmd_run)

    show = sub.add_parser("config", help="print every configuration key with its default and meaning")
    show.add_argument("--markdown", action="store_true", help="as the Markdown table of docs/configuration.md")
    show.set_defaults(func=cmd_config)
    commands.add_parsers(sub, add_mode)
    return parser


def add_mode(parser: argparse.ArgumentParser) -> None:
    """The --user / --system choice every daemon-side command takes."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--user", dest="mode", action="store_const", const="user", help="for this user only, no root (default)"
    )
    group.add_argument(
        "--system", dest="mode", action="store_const", const="system", help="system service for many users (root)"
    )
    parser.set_defaults(mode="user")


def cmd_init(args: argparse.Namespace) -> int:
    """``ssd init``: create what the daemon needs, keeping what exists."""
    paths = _paths(args.mode)
    made = initialize(paths)
    pair = keys.load_keypair(paths.key_stem)
    print(f"config file:  {paths.config_file}")
    print(f"server key:   {paths.key_stem}.key_secret")
    print(f"certificate:  {paths.cert_file}")
    print(f"state dir:    {paths.state_dir}")
    print(f"fingerprint:  {pair.fingerprint}")
    print("created: " + (", ".join(made) if made else "nothing (already initialized)"))
    return 0


def _paths(mode: Mode) -> ServerPaths:
    if mode == "system" and os.geteuid() != 0:
        raise SSDError(f"system mode needs root; run: sudo {' '.join(['ssd', *sys.argv[1:]])}", code=ErrorCode.NOT_ROOT)
    return server_paths(mode)


def cmd_run(args: argparse.Namespace) -> int:
    """``ssd run``: load config and keys, then serve until SIGTERM or SIGINT."""
    paths = _paths(args.mode)
    if args.mode == "user" and not paths.key_stem.with_suffix(".key_secret").exists():
        initialize(paths)
    elif not paths.config_dir.exists():
        raise SSDError(f"{paths.config_dir} does not exist; run: ssd init --system", code=ErrorCode.NOT_INITIALIZED)
    overrides: dict[tuple[str, str], Any] = {}
    for flag, key in (("bind", ("server", "bind")), ("port", ("server", "port")), ("name", ("server", "name"))):
        if getattr(args, flag) is not None:
            overrides[key] = getattr(args, flag)
    if args.log_level:
        overrides[("server", "log_level")] = args.log_level
    if args.no_announce:
        overrides[("discovery", "announce")] = False
    cfg = config.load_config(paths.config_file, overrides=overrides)
    _setup_logging(cfg.server.log_level)
    pair = keys.load_keypair(paths.key_stem)
    paths.state_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
    if args.mode == "user" and os.geteuid() == 0:
        log.warning("user mode as root: only root could log in; use --system for a multi-user service")
    options = BrokerOptions(
        config=cfg,
        keys=pair,
        mode=args.mode,
        name=cfg.server.name or hostinfo.host_name(),
        state_dir=paths.state_dir,
        config_dir=paths.config_dir,
        certificate=_own_certificate(paths, pair),
    )
    try:
        failed = asyncio.run(_serve(options, Notifier.from_environment()))
    except OSError as exc:
        log.error("%s", exc)
        return 1
    return 1 if failed else 0


def _own_certificate(paths: ServerPaths, pair: keys.KeyPair) -> str:
    """The certificate to serve: refused if it is not ours, served with a warning if out of date."""
    if not paths.cert_file.exists():
        log.warning(
            "no certificate at %s: clients with a CA file cannot verify this server; run: ssd init", paths.cert_file
        )
        return ""
    data = paths.cert_file.read_bytes()
    chain = certs.load_chain(data, str(paths.cert_file))
    if pair.public not in certs.bound_curve_keys(chain[0]):
        raise CertificateError(
            f"{paths.cert_file} does not bind this server's key {pair.fingerprint}; install the right one "
            f"(ssd cert install FILE) or remove it and run ssd init for a self-signed one"
        )
    try:
        certs.check_own_certificate(chain, pair.public)
    except SSDError as exc:  # dates: serve it anyway, CA clients will refuse it and say why
        log.warning("%s; renew it: ssd cert csr, then ssd cert install FILE", exc.message)
    return data.decode()


async def _serve(options: BrokerOptions, notifier: Notifier) -> bool:
    broker = Broker(options)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, broker.stop)
    try:
        await broker.start()
        await _announced(broker)
        notifier.notify(f"READY=1\nSTATUS=serving on control port {broker.ports['control']}")
        await broker.wait_stopped()
        notifier.notify("STOPPING=1")
        log.info("stopping")
    finally:
        await broker.shutdown()
    return broker.failed


async def _announced(broker: Broker) -> None:
    """Wait, bounded, until the announcer has taken its instance name, or the broker is told to stop."""
    announcer = broker.announcer
    if announcer is None:
        return
    stopping = asyncio.ensure_future(broker.wait_stopped())
    registered = asyncio.ensure_future(announcer.registered.wait())
    try:
        await asyncio.wait({stopping, registered}, timeout=ANNOUNCE_WAIT, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        registered.cancel()
    if not announcer.registered.is_set():
        log.warning("not announced yet after %gs; reporting ready anyway", ANNOUNCE_WAIT)


def _setup_logging(level: str) -> None:
    # Under systemd, journald adds its own timestamps.
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    logging.basicConfig(level=level.upper(), format=stamp + "%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def cmd_config(args: argparse.Namespace) -> int:
    """``ssd config``: print the configuration reference as a commented TOML file (or a Markdown table)."""
    print(config_markdown() if args.markdown else configdoc.default_toml(), end="")
    return 0


def config_markdown() -> str:
    """Every configuration key with its default and meaning, as docs/configuration.md's table."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for section, key, default, text in configdoc.reference():
        value = f"0o{default:03o}" if isinstance(default, int) and "octal" in text else json.dumps(default)
        cells = (f"`{section}.{key}`", f"`{value}`", text)  # JSON of these values is TOML too
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"
