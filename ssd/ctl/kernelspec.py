"""ssd-ctl kernelspec install|sync|list: Jupyter kernelspecs whose kernels an ssd host runs.

A spec written here has an ``argv`` that is never run (it only explains itself)
and ``metadata.kernel_provisioner = {"provisioner_name": "ssd-provisioner",
"config": {host, env, kind, user}}``: jupyter_client hands the start to
``ssd.provisioner.SSDProvisioner``, so notebooks and ``jupyter console`` use the
remote kernel unchanged. ``env`` is the environment's prefix on the host (a name
may be ambiguous; a prefix is not). ``interrupt_mode`` is ``signal`` so that
interrupts go through the daemon.

Where: ``--user`` (the default: Jupyter's user data dir), ``--sys-prefix``
(this Python's prefix) or ``--prefix P`` (``P/share/jupyter/kernels``), as
``jupyter kernelspec install`` understands them.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import msgspec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_core.paths import jupyter_data_dir

from ssd import __version__
from ssd.client import Client
from ssd.client.hostspec import DEFAULT_PORT
from ssd.ctl.args import add_host
from ssd.ctl.commands import connected
from ssd.ctl.kernelargs import slurm_arguments, spec_placement
from ssd.ctl.output import Output
from ssd.errors import ErrorCode, RemoteError, SSDError, key_not_authorized
from ssd.provisioner.spec import KINDS, PROVISIONER_NAME, check_offer

__all__ = ["KERNELSPEC_COMMANDS", "add_parser", "spec_document", "spec_name"]

HOST_HELP = "server as HOST[:PORT], an address or a discovered name"
_PACKAGE = {"ipykernel": ("ipykernel", "ipykernel"), "spyder": ("spyder_kernels", "spyder-kernels")}  # preferred first
_UNSAFE = re.compile(r"[^a-z0-9._]+")  # runs of anything else (dashes too) become one dash


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add ``kernelspec install|sync|list`` to ssd-ctl's parser."""
    kernelspec = sub.add_parser("kernelspec", help="Jupyter kernelspecs for environments on a host")
    actions = kernelspec.add_subparsers(dest="kernelspec_action", required=True, metavar="ACTION")
    install = actions.add_parser("install", parents=[common], help="write a kernelspec for ENV on HOST")
    add_host(install)
    install.add_argument("env", metavar="ENV", help="environment name or prefix (see: ssd-ctl envs HOST)")
    install.add_argument("--name", help="kernelspec name (default: ssd-HOST-ENV)")
    install.add_argument("--display-name", help='default: "Python X.Y · ENV · HOST"')
    install.add_argument("--kind", choices=KINDS, help="default: ipykernel if the environment has it, else spyder")
    slurm_arguments(install, queue_timeout=True)
    _location_options(install)
    sync = actions.add_parser(
        "sync",
        parents=[common],
        help="one kernelspec per environment of HOST that can run a kernel; remove those whose environment is gone",
    )
    add_host(sync)
    _location_options(sync)
    actions.add_parser("list", parents=[common], help="the ssd kernelspecs Jupyter sees")


def _location_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="in your Jupyter data dir (the default)")
    where.add_argument("--sys-prefix", action="store_true", help=f"in this Python's prefix ({sys.prefix})")
    where.add_argument("--prefix", metavar="P", help="in P/share/jupyter/kernels")


@dataclass(frozen=True)
class Location:
    """Where kernelspecs are written, in install_kernel_spec's terms."""

    user: bool
    prefix: str | None

    @property
    def kernels_dir(self) -> Path:
        """The folder that holds the spec folders."""
        if self.user:
            return Path(jupyter_data_dir()) / "kernels"
        return Path(os.path.abspath(str(self.prefix))) / "share" / "jupyter" / "kernels"


def _location(args: argparse.Namespace) -> Location:
    if args.prefix:
        return Location(False, args.prefix)
    if args.sys_prefix:
        return Location(False, sys.prefix)
    return Location(True, None)


# -- what a spec says ------------------------------------------------------------------


def spec_name(host_key: str, label: str, *, kind: str = "ipykernel") -> str:
    """``ssd-HOST[-PORT]-ENV[-spyder]``, lower case, only the characters Jupyter allows."""
    host, _, port = host_key.rpartition(":")
    host = host.strip("[]")
    parts = ["ssd", host if port == str(DEFAULT_PORT) else f"{host}-{port}", label]
    if kind == "spyder":
        parts.append("spyder")
    return _UNSAFE.sub("-", "-".join(parts).lower()).strip("-.")


def _label(env: dict[str, Any]) -> str:
    return str(env["name"] or Path(env["prefix"]).name)


def _display_name(env: dict[str, Any], kind: str, host: str) -> str:
    """``Python 3.11 · analysis · labpc``: short words the launcher can wrap between, the host's own name."""
    python = ".".join(str(env["python"] or "3").split(".")[:2])
    label = _label(env) + (" (spyder-kernels)" if kind == "spyder" else "")
    return f"Python {python} · {label} · {host}"


def spec_document(
    host: str,
    host_key: str,
    user: str,
    env: dict[str, Any],
    kind: str,
    display: str,
    *,
    encrypted: bool = False,
    placement: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The kernel.json of a spec that starts *kind* in *env* on *host* through the ssd provisioner.

    *encrypted*: the host's kernels are reached through its CURVE relay, so the spec declares
    ``supported_encryption = ["curve"]`` (a KernelManager with ``transport_encryption = "required"``
    accepts only such specs). *placement*: config keys for a kernel in a Slurm job (``slurm``, its
    resources, and ``queue_timeout``).
    """
    explain = f"raise SystemExit('this kernelspec runs its kernel on {host} through ssd-provisioner: pip install ssd')"
    return {
        "argv": ["python3", "-c", explain, "{connection_file}"],
        "display_name": display,
        "language": "python",
        "interrupt_mode": "signal",
        "env": {},
        "metadata": {
            "kernel_provisioner": {
                "provisioner_name": PROVISIONER_NAME,
                "config": {"host": host, "env": env["prefix"], "kind": kind, "user": user, **(placement or {})},
            },
            "ssd": {
                **{"host_key": host_key, "user": user, "env_name": _label(env), "python": env["python"]},
                "version": __version__,
            },
            **({"supported_encryption": ["curve"]} if encrypted else {}),
        },
    }


def _kinds_of(env: dict[str, Any]) -> list[str]:
    """The kernels an environment can run, the preferred first."""
    if not env.get("python"):
        return []
    return [kind for kind, (module, _) in _PACKAGE.items() if env.get(module)]


# -- reading and writing specs ----------------------------------------------------------


def _write(name: str, document: dict[str, Any], where: Location) -> Path:
    with tempfile.TemporaryDirectory(prefix="ssd-kernelspec-") as tmp:
        spec_file = Path(tmp) / "kernel.json"
        spec_file.write_text(json.dumps(document, indent=1) + "\n")
        # Copied with these modes: a spec in a shared prefix must be readable by its users. It holds no secret.
        os.chmod(tmp, 0o755)  # noqa: S103
        os.chmod(spec_file, 0o644)
        for logo in _python_logos():
            os.chmod(shutil.copyfile(logo, Path(tmp) / logo.name), 0o644)
        try:
            written = KernelSpecManager().install_kernel_spec(tmp, name, user=where.user, prefix=where.prefix)
        except ValueError as exc:  # an invalid --name
            raise SSDError(str(exc), code=ErrorCode.USAGE) from None
        except OSError as exc:
            raise SSDError(
                f"cannot write the kernelspec {name}: {exc}", code=ErrorCode.KERNELSPEC_WRITE_FAILED
            ) from None
    return Path(written)


def _python_logos() -> list[Path]:
    """The Python logos of ipykernel's own kernelspec, where ipykernel is installed beside ssd (else none)."""
    found = importlib.util.find_spec("ipykernel")
    if found is None or not found.submodule_search_locations:
        return []
    resources = Path(next(iter(found.submodule_search_locations))) / "resources"
    return sorted(p for p in resources.glob("logo-*") if p.suffix in (".png", ".svg"))


def _ssd_specs(directory: Path) -> dict[str, dict[str, Any]]:
    """The ssd kernelspecs (kernel.json documents) in one kernels folder, by name."""
    found: dict[str, dict[str, Any]] = {}
    for spec_file in sorted(directory.glob("*/kernel.json")):
        try:
            document = json.loads(spec_file.read_text())
        except (OSError, ValueError):
            continue
        if _provisioner(document).get("provisioner_name") == PROVISIONER_NAME:
            found[spec_file.parent.name] = document
    return found


def _provisioner(document: Any) -> dict[str, Any]:
    metadata = document.get("metadata") if isinstance(document, dict) else None
    stanza = metadata.get("kernel_provisioner") if isinstance(metadata, dict) else None
    return stanza if isinstance(stanza, dict) else {}


def _config(document: dict[str, Any]) -> dict[str, Any]:
    config = _provisioner(document).get("config")
    return config if isinstance(config, dict) else {}


def _warn_if_unregistered(out: Output) -> None:
    if not entry_points(group="jupyter_client.kernel_provisioners", name=PROVISIONER_NAME):
        out.err.print(
            f"ssd-ctl: warning: this Python ({sys.executable}) does not register {PROVISIONER_NAME}: "
            "install ssd where Jupyter runs, or Jupyter will not show these kernels",
            markup=False,
        )


# -- the commands -----------------------------------------------------------------------


def _server_facts(client: Client, host: str) -> tuple[bool, str]:
    """Whether the host reaches its kernels through the CURVE relay (kernels.transport = curve), and its own
    name (the announced instance name; else HOST as given) for display names."""
    info = client.server_info()
    return info.kernel_transport == "curve", info.name or host


def _host_facts(client: Client, host: str) -> tuple[str, str, list[dict[str, Any]]]:
    """The known-hosts key of the host, the user this client is bound to there, and the user's environments.

    Without a session, this client's key logs in as the provisioner will (your user name here).
    """
    try:
        user = client.whoami().user
    except RemoteError as exc:
        if exc.code != ErrorCode.NOT_AUTHORIZED:
            raise
        user = _key_login(client, host)
    envs: list[dict[str, Any]] = msgspec.to_builtins(client.env_list().envs)
    return client.aclient.spec.key, user, envs


def _key_login(client: Client, host: str) -> str:
    user = getpass.getuser()
    with key_not_authorized(
        f"this client has no session on {host} and its key is not authorized for {user} there; "
        f"log in and authorize it once with: ssd-ctl login {host} && ssd-ctl copy-id {host}"
    ):
        reply = client.login(user)
    return reply.user


def _find(envs: list[dict[str, Any]], wanted: str, host: str) -> dict[str, Any]:
    by_prefix = [e for e in envs if e["prefix"] in (wanted, os.path.normpath(wanted))]
    named = by_prefix or [e for e in envs if e["name"] == wanted]
    if len(named) == 1:
        return named[0]
    if named:
        prefixes = ", ".join(e["prefix"] for e in named)
        text = f"several environments on {host} are named {wanted!r} ({prefixes}); give the prefix"
        raise SSDError(text, code=ErrorCode.USAGE)
    raise SSDError(f"no environment {wanted!r} on {host} (see: ssd-ctl envs {host})", code=ErrorCode.ENV_NOT_FOUND)


def cmd_install(args: argparse.Namespace, out: Output) -> int:
    """Write one kernelspec for ENV on HOST."""
    placement = spec_placement(args)
    with connected(args, out) as client:
        if placement:
            check_offer(client.server_info(), args.host, placement["slurm"])
        host_key, user, envs = _host_facts(client, args.host)
        encrypted, shown = _server_facts(client, args.host)
    env = _find(envs, args.env, args.host)
    kinds = _kinds_of(env)
    kind = args.kind or (kinds[0] if kinds else "ipykernel")
    if kind not in kinds:
        package = _PACKAGE[kind][1]
        raise SSDError(
            f"environment {_label(env)} on {args.host} has no {package}; "
            f"install it with: ssd-ctl env install {args.host} {_label(env)} {package}",
            code=ErrorCode.KERNEL_PACKAGE_MISSING,
        )
    label = _label(env) + ("-slurm" if placement else "")
    name = (args.name or spec_name(host_key, label, kind=kind)).lower()
    display = args.display_name or _display_name(env, kind, shown) + (" · Slurm" if placement else "")
    document = spec_document(args.host, host_key, user, env, kind, display, encrypted=encrypted, placement=placement)
    path = _write(name, document, _location(args))
    if args.json:
        written = {"name": name, "display_name": display, "env": env["prefix"], "kind": kind, "path": str(path)}
        out.document(written | placement)
    else:
        out.say(f"kernelspec {name} ({display}) written to {path}")
        out.say(f"Jupyter logs in to {args.host} with this client's key; if not done yet, run:")
        out.say(f"  ssd-ctl copy-id {args.host}")
    _warn_if_unregistered(out)
    return 0


def cmd_sync(args: argparse.Namespace, out: Output) -> int:
    """Write a spec per environment that can run a kernel; remove this host's specs that cannot start any more."""
    with connected(args, out) as client:
        host_key, user, envs = _host_facts(client, args.host)
        encrypted, shown = _server_facts(client, args.host)
    where = _location(args)
    runnable = [e for e in sorted(envs, key=lambda e: str(e["prefix"])) if _kinds_of(e)]
    labels = [_label(e) for e in runnable]
    written = []
    for env in runnable:
        label = _label(env)
        if labels.count(label) > 1:  # two environments of one name: the prefix tells their specs apart
            label += "-" + hashlib.sha256(str(env["prefix"]).encode()).hexdigest()[:6]
        kind = _kinds_of(env)[0]
        name = spec_name(host_key, label, kind=kind)
        display = _display_name(env, kind, shown)
        path = _write(name, spec_document(args.host, host_key, user, env, kind, display, encrypted=encrypted), where)
        written.append({"name": name, "display_name": display, "env": env["prefix"], "kind": kind, "path": str(path)})
    removed = _remove_stale(where.kernels_dir, host_key, args.host, runnable)
    if args.json:
        out.document({"host": args.host, "written": written, "removed": removed})
    else:
        rows = [("written", w["name"], w["display_name"], w["env"]) for w in written]
        rows += [("removed", r["name"], r["display_name"], r["env"]) for r in removed]
        out.table(["", "name", "display name", "environment"], rows, title=f"kernelspecs for {args.host}")
    _warn_if_unregistered(out)
    return 0


def _remove_stale(directory: Path, host_key: str, host: str, runnable: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Remove this host's specs (in this folder only) whose environment is gone or cannot run their kind."""
    kinds = {str(e["prefix"]): _kinds_of(e) for e in runnable}
    removed = []
    for name, document in _ssd_specs(directory).items():
        config = _config(document)
        ssd = document.get("metadata", {}).get("ssd", {})
        if (ssd.get("host_key") if isinstance(ssd, dict) else None) != host_key and config.get("host") != host:
            continue
        if config.get("kind") in kinds.get(str(config.get("env")), []):
            continue
        shutil.rmtree(directory / name)
        removed.append({"name": name, "display_name": document.get("display_name", ""), "env": config.get("env")})
    return removed


def cmd_list(args: argparse.Namespace, out: Output) -> int:
    """The ssd kernelspecs Jupyter finds (JUPYTER_PATH, user, environment and system folders)."""
    specs = []
    for name, entry in sorted(KernelSpecManager().get_all_specs().items()):
        document = entry["spec"]
        config = _config(document)
        if _provisioner(document).get("provisioner_name") != PROVISIONER_NAME:
            continue
        specs.append(
            {
                "name": name,
                "display_name": document.get("display_name", ""),
                "host": config.get("host", ""),
                "env": config.get("env", ""),
                "kind": config.get("kind", ""),
                "path": entry["resource_dir"],
            }
        )
    if args.json:
        out.document({"kernelspecs": specs})
    else:
        columns = ["name", "display name", "host", "environment", "kind", "path"]
        out.table(columns, [[s[c] for c in ("name", "display_name", "host", "env", "kind", "path")] for s in specs])
    return 0


def cmd_kernelspec(args: argparse.Namespace, out: Output) -> int:
    """Dispatch ``kernelspec ACTION``."""
    action = {"install": cmd_install, "sync": cmd_sync, "list": cmd_list}[args.kernelspec_action]
    return action(args, out)


KERNELSPEC_COMMANDS = {"kernelspec": cmd_kernelspec}
