"""``ssd doctor``: check an installation and say, for each thing, ok or the problem and its fix.

Checks, in order: configuration, keys and file permissions, certificate, PAM
service, service unit, the running daemon (ports bound, answering over
CURVE), workers alive, zeroconf announcement, one user's environments, clock.
A check that cannot be made here says "not checked" and why; only problems
make the exit code 1.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec
import psutil
import zmq

from ssd import certs, config, keys
from ssd.client.connection import AsyncClient
from ssd.client.discovery import AsyncBrowser
from ssd.client.hostspec import parse_host
from ssd.client.known_hosts import KnownHosts
from ssd.errors import ConfigError, SSDError
from ssd.isolation import python_module
from ssd.paths import Mode, ServerPaths
from ssd.service.install import unit_path
from ssd.users import lookup
from ssd.workers.privileges import as_user

__all__ = ["Finding", "diagnose"]

Status = Literal["ok", "problem", "not checked"]
PAM_DIRS = (Path("/etc/pam.d"), Path("/usr/lib/pam.d"), Path("/usr/etc/pam.d"))
CERT_WARN_DAYS = 30
ANNOUNCE_WAIT = 4.0


@dataclass(frozen=True)
class Finding:
    """The outcome of one check."""

    check: str
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        """One line for a person: ``ok      keys: ...`` or ``problem keys: ... -> fix: ...``."""
        text = f"{self.status:<11} {self.check}: {self.detail}"
        return text + (f"\n            fix: {self.fix}" if self.fix else "")


def _ok(check: str, detail: str) -> Finding:
    return Finding(check, "ok", detail)


def _problem(check: str, detail: str, fix: str) -> Finding:
    return Finding(check, "problem", detail, fix)


def _skip(check: str, detail: str) -> Finding:
    return Finding(check, "not checked", detail)


@dataclass
class _Context:
    mode: Mode
    paths: ServerPaths
    cfg: config.Config | None = None
    pair: keys.KeyPair | None = None
    daemon: dict[str, Any] | None = None


def diagnose(mode: Mode, paths: ServerPaths, *, user: str | None = None) -> list[Finding]:
    """Run every check for the daemon at *paths*; *user* also lists that user's environments."""
    ctx = _Context(mode, paths)
    found = [check_config(ctx), *check_files(ctx), check_certificate(ctx), check_pam(ctx), check_unit(ctx)]
    found += asyncio.run(_live_checks(ctx))
    found += [check_environments(ctx, user), check_clock()]
    return found


def check_config(ctx: _Context) -> Finding:
    """The config file parses and every key is known."""
    try:
        ctx.cfg = config.load_config(ctx.paths.config_file)
    except ConfigError as exc:
        return _problem("config", exc.message, f"edit {ctx.paths.config_file} (`ssd config` shows every key)")
    where = ctx.paths.config_file if ctx.paths.config_file.exists() else "no file, defaults"
    return _ok("config", f"{where} is valid")


def check_files(ctx: _Context) -> list[Finding]:
    """Server key (0600, ours, private folder), certificate key, state directory."""
    found = []
    try:
        ctx.pair = keys.load_keypair(ctx.paths.key_stem)
        found.append(_ok("server key", f"{ctx.paths.key_stem}.key_secret (fingerprint {ctx.pair.fingerprint})"))
    except SSDError as exc:
        fix = _fix_from(exc.message) or f"run: ssd init{' --system' if ctx.mode == 'system' else ''}"
        found.append(_problem("server key", exc.message, fix))
    if ctx.paths.cert_key_file.exists():
        try:
            keys.read_secret_file(ctx.paths.cert_key_file)
            found.append(_ok("certificate key", f"{ctx.paths.cert_key_file} is private"))
        except SSDError as exc:
            found.append(_problem("certificate key", exc.message, _fix_from(exc.message)))
    found.append(_check_state_dir(ctx.paths.state_dir))
    return found


def _fix_from(message: str) -> str:
    """keys.py ends its messages with '...; fix with: COMMAND': lift the command out."""
    return message.rsplit("fix with: ", 1)[1] if "fix with: " in message else ""


def _check_state_dir(path: Path) -> Finding:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return _problem("state dir", f"{path} does not exist", "run: ssd init (or ssd install)")
    if info.st_uid != os.geteuid():
        return _problem("state dir", f"{path} belongs to uid {info.st_uid}", f"chown {os.geteuid()} {path}")
    if info.st_mode & 0o077:
        mode = stat.S_IMODE(info.st_mode)
        return _problem("state dir", f"{path} is open to others (mode {mode:04o})", f"chmod 700 {path}")
    return _ok("state dir", f"{path} (0700)")


def check_certificate(ctx: _Context) -> Finding:
    """The certificate exists, binds the server key and is valid now (and not about to expire)."""
    path = ctx.paths.cert_file
    if not path.exists():
        return _problem(
            "certificate", f"{path} is missing", f"run: ssd init{' --system' if ctx.mode == 'system' else ''}"
        )
    if ctx.pair is None:
        return _skip("certificate", "no usable server key to compare with")
    try:
        chain = certs.load_chain(path.read_bytes(), str(path))
        certs.check_own_certificate(chain, ctx.pair.public)
    except SSDError as exc:
        return _problem(
            "certificate", exc.message, "install a certificate for this key: ssd cert csr, then ssd cert install FILE"
        )
    facts = certs.describe(chain)
    left = facts.not_after - datetime.datetime.now(datetime.UTC)
    names = ", ".join(facts.dns_names + facts.ip_addresses)
    kind = "self-signed" if facts.self_signed else f"issued by {facts.issuer}"
    if left.days < CERT_WARN_DAYS:
        return _problem(
            "certificate",
            f"expires in {left.days} days ({facts.not_after:%Y-%m-%d})",
            "renew it: ssd cert csr, then ssd cert install FILE",
        )
    return _ok("certificate", f"{kind}, for {names}, binds the server key, valid until {facts.not_after:%Y-%m-%d}")


def check_pam(ctx: _Context) -> Finding:
    """The PAM service that password logins use exists."""
    service = ctx.cfg.auth.pam_service if ctx.cfg else config.AuthConfig().pam_service
    for directory in PAM_DIRS:
        if (directory / service).is_file():
            return _ok("PAM service", f"{directory / service}")
    return _problem(
        "PAM service",
        f"no PAM service {service!r} in {', '.join(map(str, PAM_DIRS))}: password logins will fail",
        f"set auth.pam_service to an existing service (such as login) or create /etc/pam.d/{service}",
    )


def check_unit(ctx: _Context) -> Finding:
    """The systemd unit, when the daemon is installed as a service."""
    unit = unit_path(ctx.mode)
    if unit.exists():
        return _ok("service unit", str(unit))
    flag = "--system" if ctx.mode == "system" else "--user"
    return _skip("service unit", f"none at {unit} (fine if you run `ssd run` yourself; else: ssd install {flag})")


async def _live_checks(ctx: _Context) -> list[Finding]:
    running = _check_running(ctx)
    if running.status != "ok" or ctx.daemon is None or ctx.pair is None:
        return [
            running,
            _skip("workers", "the daemon is not running"),
            _skip("announcement", "the daemon is not running"),
        ]
    found = [running]
    host = f"{_loopback(str(ctx.daemon.get('bind', '*')))}:{ctx.daemon['control_port']}"
    with tempfile.TemporaryDirectory(prefix="ssd-doctor-") as tmp:
        known = KnownHosts(Path(tmp) / "known_hosts")
        known.pin(parse_host(host).key, ctx.pair.public)  # the key file on disk is the truth here: no TOFU
        client = AsyncClient(
            host, identity=_throwaway(), known_hosts=known, ca_file="", timeout=5.0, connect_timeout=5.0
        )
        try:
            await client.connect()
            info = await client.server_info()
            found.append(_ok("ports", _ports(ctx.daemon) + f", answering over CURVE as {info.name}"))
            found.append(await _check_workers(ctx, client))
        except SSDError as exc:
            found.append(
                _problem("ports", f"{_ports(ctx.daemon)} but no answer over CURVE: {exc.message}", _restart(ctx))
            )
            found.append(_skip("workers", "the daemon does not answer"))
        finally:
            await client.close()
    found.append(await _check_announcement(ctx))
    return found


def _throwaway() -> keys.KeyPair:
    public, secret = zmq.curve_keypair()
    return keys.KeyPair(public=public, secret=secret)


def _loopback(bind: str) -> str:
    if bind in ("*", "0.0.0.0"):  # noqa: S104 (reading the daemon's bind address, not binding)
        return "127.0.0.1"
    return "[::1]" if bind == "::" else (f"[{bind}]" if ":" in bind else bind)


def _ports(daemon: dict[str, Any]) -> str:
    ports = f"control {daemon['control_port']}, events {daemon['events_port']}, key {daemon['key_port']}"
    return f"{ports} on {daemon.get('bind')}"


def _restart(ctx: _Context) -> str:
    return "systemctl restart ssd" if ctx.mode == "system" else "systemctl --user restart ssd (or restart `ssd run`)"


def _check_running(ctx: _Context) -> Finding:
    runtime = ctx.paths.state_dir / "daemon.json"
    start = (
        "systemctl start ssd (journalctl -u ssd says why it stopped)"
        if ctx.mode == "system"
        else "ssd run (or systemctl --user start ssd)"
    )
    try:
        data = json.loads(runtime.read_text())
    except (OSError, ValueError):
        return _problem("daemon", f"not running ({runtime} is missing)", start)
    if not isinstance(data, dict) or not psutil.pid_exists(int(data.get("pid", 0))):
        return _problem("daemon", f"not running (stale {runtime})", start)
    ctx.daemon = data
    if ctx.pair is not None and data.get("public_key") != ctx.pair.public.decode():
        return _problem("daemon", f"pid {data['pid']} serves another key than {ctx.paths.key_stem}.key", _restart(ctx))
    return _ok("daemon", f"running, pid {data['pid']}, {data.get('mode')} mode")


async def _check_workers(ctx: _Context, client: AsyncClient) -> Finding:
    """host_status events count the workers registered (alive by heartbeats) with the broker."""
    assert ctx.cfg is not None
    assert ctx.daemon is not None
    expected = ctx.cfg.auth.pool_size + (1 if ctx.cfg.workers.diag else 0)
    wait = ctx.cfg.server.status_interval + 2.0
    events = client.events(("host_status",), port=int(ctx.daemon["events_port"]))
    try:
        async with asyncio.timeout(wait):
            event = await anext(events)
    except TimeoutError:
        return _problem("workers", f"no host_status event within {wait:g}s", _restart(ctx))
    finally:
        await events.aclose()
    count = int(event.content.get("workers", 0))
    if count < expected:
        return _problem(
            "workers",
            f"{count} registered, {expected} expected (auth pool {ctx.cfg.auth.pool_size})",
            "see the daemon's log for 'worker' errors; then " + _restart(ctx),
        )
    return _ok("workers", f"{count} registered and heartbeating (auth pool {ctx.cfg.auth.pool_size})")


async def _check_announcement(ctx: _Context) -> Finding:
    """Browse for our own fingerprint where the daemon announces (loopback for a loopback daemon)."""
    assert ctx.cfg is not None
    assert ctx.pair is not None
    assert ctx.daemon is not None
    if not ctx.cfg.discovery.announce:
        return _skip("announcement", "discovery.announce is false")
    bind = str(ctx.daemon.get("bind", "*"))
    interfaces = ctx.cfg.discovery.interfaces or (["127.0.0.1"] if bind.startswith("127.") else [])
    fingerprint = ctx.pair.fingerprint
    try:
        async with AsyncBrowser(interfaces=[i for i in interfaces if i != "all"] or None) as view:
            seen = await view.wait_until(
                lambda hosts: any(h.fingerprint == fingerprint for h in hosts.values()), ANNOUNCE_WAIT
            )
    except OSError as exc:
        return _skip("announcement", f"cannot browse here: {exc}")
    if not seen:
        return _problem(
            "announcement",
            f"this host was not seen on _ssd._tcp within {ANNOUNCE_WAIT:g}s",
            "allow UDP port 5353 (mDNS) in the firewall; see the log for 'zeroconf announcement failed'",
        )
    return _ok("announcement", f"seen on _ssd._tcp with fingerprint {fingerprint}")


def check_environments(ctx: _Context, user: str | None) -> Finding:
    """List *user*'s environments as that user, with the env worker's discovery."""
    if not user:
        return _skip("environments", "give --user NAME to list a user's environments")
    account = lookup(user)
    if account is None:
        return _problem("environments", f"no user {user!r} here", "check the name")
    if account.uid != os.geteuid() and os.geteuid() != 0:
        return _skip("environments", f"only root can look as {user}")
    envs = msgspec.to_builtins(ctx.cfg.envs if ctx.cfg else config.EnvsConfig())
    try:
        result = subprocess.run(
            python_module("ssd.service.envcheck"),
            input=msgspec.json.encode(envs),
            capture_output=True,
            timeout=60,
            check=False,
            **as_user(account),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return _problem(
            "environments", f"cannot run discovery as {user}: {exc}", f"check that {user} can run {sys.executable}"
        )
    if result.returncode != 0:
        said = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return _problem(
            "environments", f"discovery as {user} failed: {said[0]}", f"check that {user} can run {sys.executable}"
        )
    found = json.loads(result.stdout)
    if not found:
        return _problem(
            "environments",
            f"none found for {user}",
            "create one: ssd-ctl env create HOST NAME (or conda create), or set envs.venv_dirs / envs.extra_roots",
        )
    ready = sum(1 for env in found if env.get("spyder_ready"))
    names = ", ".join(env["name"] for env in found[:8]) + (" ..." if len(found) > 8 else "")
    return _ok("environments", f"{len(found)} for {user} ({ready} can run a Spyder kernel): {names}")


def check_clock() -> Finding:
    """The time, and whether it is synchronized (timedatectl); logins and certificates need a right clock."""
    now = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M:%S} UTC"
    try:
        result = subprocess.run(
            ["timedatectl", "show", "--property=NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return _skip("clock", f"{now}; synchronization unknown (no timedatectl)")
    answer = result.stdout.strip()
    if result.returncode != 0 or answer not in ("yes", "no"):
        said = (result.stderr.strip() or "no answer").splitlines()[0]
        return _skip("clock", f"{now}; synchronization unknown (timedatectl: {said})")
    if answer == "no":
        return _problem("clock", f"{now}, not synchronized", "enable time synchronization: timedatectl set-ntp true")
    return _ok("clock", f"{now}, synchronized")
