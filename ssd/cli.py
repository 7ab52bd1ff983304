"""``ssd``: set up and run the daemon (``init``, ``run``, ``config``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from ssd import __version__, config, hostinfo, keys
from ssd.broker.server import Broker, BrokerOptions
from ssd.errors import SSDError
from ssd.paths import Mode, ServerPaths, server_paths

__all__ = ["main"]

log = logging.getLogger("ssd")


def main(argv: list[str] | None = None) -> int:
    """Run the ``ssd`` command line; return the exit code."""
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

    init = sub.add_parser("init", help="make the server keys, config file and state directory")
    _add_mode(init)
    init.set_defaults(func=cmd_init)

    run = sub.add_parser("run", help="run the daemon in the foreground")
    _add_mode(run)
    run.add_argument("--bind", metavar="ADDR", help="address to listen on (* = all; default from config)")
    run.add_argument("--port", type=int, metavar="N", help="control port; events port is N+1, key port N+2")
    run.add_argument("--name", help="friendly name shown to clients (default: the host name)")
    run.add_argument("--no-announce", action="store_true", help="do not announce this host with zeroconf")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="logging threshold")
    run.set_defaults(func=cmd_run)

    show = sub.add_parser("config", help="print every configuration key with its default and meaning")
    show.set_defaults(func=cmd_config)
    return parser


def _add_mode(parser: argparse.ArgumentParser) -> None:
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
    print(f"state dir:    {paths.state_dir}")
    print(f"fingerprint:  {pair.fingerprint}")
    print("created: " + (", ".join(made) if made else "nothing (already initialized)"))
    return 0


def initialize(paths: ServerPaths) -> list[str]:
    """Create config dir, config file, keypair and state dir where missing; return what was made."""
    made = []
    private = 0o700 if paths.mode == "user" else 0o755
    for directory, mode in ((paths.config_dir, private), (paths.state_dir, 0o700)):
        if not directory.exists():
            directory.mkdir(parents=True, mode=mode)
            made.append(str(directory))
    if not paths.config_file.exists():
        _write_private(paths.config_file, config.default_toml())
        made.append(str(paths.config_file))
    _, created = keys.load_or_create_keypair(paths.key_stem)
    if created:
        made.append(f"{paths.key_stem}.key_secret")
    return made


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _paths(mode: Mode) -> ServerPaths:
    if mode == "system" and os.geteuid() != 0:
        raise SSDError(f"system mode needs root; run: sudo {' '.join(['ssd', *sys.argv[1:]])}", code="not_root")
    return server_paths(mode)


def cmd_run(args: argparse.Namespace) -> int:
    """``ssd run``: load config and keys, then serve until SIGTERM or SIGINT."""
    paths = _paths(args.mode)
    if args.mode == "user" and not paths.key_stem.with_suffix(".key_secret").exists():
        initialize(paths)
    elif not paths.config_dir.exists():
        raise SSDError(f"{paths.config_dir} does not exist; run: ssd init --system", code="not_initialized")
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
    )
    try:
        failed = asyncio.run(_serve(options))
    except OSError as exc:
        log.error("%s", exc)
        return 1
    return 1 if failed else 0


async def _serve(options: BrokerOptions) -> bool:
    broker = Broker(options)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, broker.stop)
    try:
        await broker.start()
        await broker.wait_stopped()
        log.info("stopping")
    finally:
        await broker.shutdown()
    return broker.failed


def _setup_logging(level: str) -> None:
    # Under systemd, journald adds its own timestamps.
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    logging.basicConfig(level=level.upper(), format=stamp + "%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def cmd_config(args: argparse.Namespace) -> int:
    """``ssd config``: print the configuration reference as a commented TOML file."""
    print(config.default_toml(), end="")
    return 0
