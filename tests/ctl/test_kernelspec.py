"""ssd-ctl kernelspec install|sync|list as a person runs them, checked with Jupyter's own ``jupyter kernelspec list``.

One user-mode daemon serves the module; its environments are light conda-style
copies of the cached venv that has ipykernel and spyder-kernels (no kernel is
started here: tests/test_provisioner.py starts them), plus one without any
kernel package.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from envfixtures import conda_copy, heavy_venv, make_conda_style, make_venv
from support.daemon import Daemon, start_daemon

from ssd.ctl.kernelspec import spec_document, spec_name
from ssd.errors import ErrorCode
from ssd.provisioner.spec import PROVISIONER_NAME

CTL = [sys.executable, "-m", "ssd.ctl.main"]
JUPYTER = str(Path(sys.executable).with_name("jupyter"))
ME = pwd.getpwuid(os.geteuid()).pw_name


@dataclass
class Host:
    """The module's daemon, its environments folder and a logged-in client directory."""

    daemon: Daemon
    envs: Path
    client_dir: Path

    def run(
        self, *args: str, jupyter: Path | None = None, data: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """ssd-ctl ARGS with this client; *jupyter* is a prefix for JUPYTER_PATH, *data* JUPYTER_DATA_DIR."""
        env = {**os.environ, "SSD_CLIENT_DIR": str(self.client_dir)}
        if jupyter is not None:
            env["JUPYTER_PATH"] = str(jupyter / "share" / "jupyter")
        if data is not None:
            env["JUPYTER_DATA_DIR"] = str(data)
        return subprocess.run(
            [*CTL, *args], env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )

    def json(self, *args: str, code: int = 0, **where: Any) -> dict[str, Any]:
        """Run with --json (and a generous --timeout for calls to the host); check the exit code."""
        timeout = [] if args[:2] == ("kernelspec", "list") else ["--timeout", "60"]
        result = self.run(*args, "--json", *timeout, **where)
        assert result.returncode == code, (result.stdout, result.stderr)
        document: dict[str, Any] = json.loads(result.stdout)
        return document


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    """Environments ``ana`` and ``bob`` (ipykernel and spyder-kernels) and ``bare`` (neither)."""
    tmp = tmp_path_factory.mktemp("kernelspec")
    envs = tmp / "envs"
    for name in ("ana", "bob"):
        conda_copy(heavy_venv(), envs / name)
    make_conda_style(make_venv(envs / "bare"))
    daemon = start_daemon(tmp, extra_env={"SSD_ENVS_ENVS_DIRS": str(envs), "SSD_ENVS_KNOWN_ROOTS": "false"})
    try:
        made = Host(daemon, envs, tmp / "client")
        daemon.authorize(made.json("keygen")["public_key"].encode())
        made.json("login", daemon.host, "--key-only", "--trust")
        yield made
    finally:
        daemon.stop_and_check()


def jupyter_specs(prefix: Path) -> dict[str, Any]:
    """What ``jupyter kernelspec list --json`` finds with JUPYTER_PATH on *prefix*."""
    env = {**os.environ, "JUPYTER_PATH": str(prefix / "share" / "jupyter")}
    result = subprocess.run(
        [JUPYTER, "kernelspec", "list", "--json"], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    specs: dict[str, Any] = json.loads(result.stdout)["kernelspecs"]
    return {name: spec for name, spec in specs.items() if str(spec["resource_dir"]).startswith(str(prefix))}


def test_sync_writes_a_spec_per_runnable_env_and_removes_a_gone_ones(host: Host, tmp_path: Path) -> None:
    """sync: one spec per environment that can run a kernel, seen by Jupyter; a removed env's spec goes."""
    prefix = tmp_path / "jupyter"
    extra = conda_copy(heavy_venv(), host.envs / "tmpenv")
    try:
        synced = host.json("kernelspec", "sync", host.daemon.host, "--prefix", str(prefix))
    finally:
        shutil.rmtree(extra)
    key = host.daemon.host
    names = {spec_name(key, env) for env in ("ana", "bob", "tmpenv")}
    assert {w["name"] for w in synced["written"]} == names
    assert synced["removed"] == []

    seen = jupyter_specs(prefix)
    assert set(seen) == names
    spec = seen[spec_name(key, "ana")]["spec"]
    name = host.json("info", key)["name"]  # the host's own (announced) name, not 127.0.0.1:PORT
    assert spec["display_name"] == f"Python 3.11 · ana · {name}"
    assert spec["metadata"]["ssd"]["user"] == ME
    logos = Path(seen[spec_name(key, "ana")]["resource_dir"])
    assert {p.name for p in logos.iterdir()} == {"kernel.json", "logo-32x32.png", "logo-64x64.png", "logo-svg.svg"}
    assert spec["interrupt_mode"] == "signal"
    assert spec["metadata"]["kernel_provisioner"] == {
        "provisioner_name": PROVISIONER_NAME,
        "config": {"host": key, "env": str(host.envs / "ana"), "kind": "ipykernel", "user": ME},
    }

    again = host.json("kernelspec", "sync", host.daemon.host, "--prefix", str(prefix))
    assert [r["name"] for r in again["removed"]] == [spec_name(key, "tmpenv")]
    assert set(jupyter_specs(prefix)) == names - {spec_name(key, "tmpenv")}
    listed = host.json("kernelspec", "list", jupyter=prefix)["kernelspecs"]
    assert {(s["name"], s["env"]) for s in listed} == {
        (spec_name(key, env), str(host.envs / env)) for env in ("ana", "bob")
    }


def test_sync_leaves_other_hosts_and_other_kinds_alone(host: Host, tmp_path: Path) -> None:
    """A spec of another host, and a Spyder-kernel spec of an env that still has spyder-kernels, survive sync."""
    prefix = tmp_path / "jupyter"
    other = prefix / "share" / "jupyter" / "kernels" / "elsewhere"
    other.mkdir(parents=True)
    env = {"name": "gone", "prefix": "/nowhere/gone", "python": "3.12.1"}
    (other / "kernel.json").write_text(
        json.dumps(spec_document("otherhost", "otherhost:9470", "u", env, "ipykernel", "x"))
    )
    spyder = host.json("kernelspec", "install", host.daemon.host, "bob", "--kind", "spyder", "--prefix", str(prefix))
    assert spyder["name"] == spec_name(host.daemon.host, "bob", kind="spyder")
    synced = host.json("kernelspec", "sync", host.daemon.host, "--prefix", str(prefix))
    assert synced["removed"] == []
    assert {"elsewhere", spyder["name"]} <= set(jupyter_specs(prefix))


def test_install_with_name_display_name_and_kind(host: Host, tmp_path: Path) -> None:
    """install: --name, --display-name, --kind spyder; by prefix as well as by name."""
    prefix = tmp_path / "jupyter"
    made = host.json(
        "kernelspec", "install", host.daemon.host, str(host.envs / "ana"),
        "--name", "My-Spec", "--display-name", "Ana on the lab PC", "--kind", "spyder", "--prefix", str(prefix),
    )  # fmt: skip
    assert (made["name"], made["display_name"], made["kind"]) == ("my-spec", "Ana on the lab PC", "spyder")
    document = json.loads((Path(made["path"]) / "kernel.json").read_text())
    config = document["metadata"]["kernel_provisioner"]["config"]
    assert (config["env"], config["kind"]) == (str(host.envs / "ana"), "spyder")
    assert document["argv"][-1] == "{connection_file}"
    assert jupyter_specs(prefix)["my-spec"]["spec"]["display_name"] == "Ana on the lab PC"


def test_install_defaults_to_the_user_data_dir(host: Host, tmp_path: Path) -> None:
    """Without --prefix or --sys-prefix the spec goes to Jupyter's user data dir (JUPYTER_DATA_DIR)."""
    data = tmp_path / "data"
    made = host.json("kernelspec", "install", host.daemon.host, "ana", data=data)
    assert Path(made["path"]) == data / "kernels" / spec_name(host.daemon.host, "ana")
    assert (Path(made["path"]) / "kernel.json").stat().st_mode & 0o777 == 0o644


def test_install_errors(host: Host, tmp_path: Path) -> None:
    """An unknown env, an env without the kernel package and an invalid name: clear errors, nothing written."""
    prefix = tmp_path / "jupyter"
    where = ("--prefix", str(prefix))
    unknown = host.json("kernelspec", "install", host.daemon.host, "nope", *where, code=1)
    assert unknown["error"] == ErrorCode.ENV_NOT_FOUND
    bare = host.json("kernelspec", "install", host.daemon.host, "bare", *where, code=1)
    assert bare["error"] == ErrorCode.KERNEL_PACKAGE_MISSING
    assert f"ssd-ctl env install {host.daemon.host} bare ipykernel" in bare["message"]
    invalid = host.json("kernelspec", "install", host.daemon.host, "ana", "--name", "no/slash", *where, code=2)
    assert invalid["error"] == ErrorCode.USAGE
    assert not (prefix / "share" / "jupyter" / "kernels").exists() or not any(
        (prefix / "share" / "jupyter" / "kernels").iterdir()
    )


@pytest.mark.parametrize(
    ("key", "label", "kind", "name"),
    [
        ("labpc:9470", "sci", "ipykernel", "ssd-labpc-sci"),
        ("LabPC.local:9500", "My Env!", "ipykernel", "ssd-labpc.local-9500-my-env"),
        ("[::1]:9470", "base", "spyder", "ssd-1-base-spyder"),
    ],
)
def test_spec_names(key: str, label: str, kind: str, name: str) -> None:
    """Spec names keep to the characters Jupyter allows."""
    assert spec_name(key, label, kind=kind) == name


def test_install_logs_in_by_key_without_a_session(host: Host, tmp_path: Path) -> None:
    """install without a session logs in with the authorized key as the provisioner would, instead of
    refusing with "needs a login first"; a client whose key is not authorized is told what to run."""
    host.json("logout", host.daemon.host)
    made = host.json("kernelspec", "install", host.daemon.host, "ana", "--prefix", str(tmp_path / "jupyter"))
    assert made["env"] == str(host.envs / "ana")
    stranger = Host(host.daemon, host.envs, tmp_path / "stranger")
    stranger.json("keygen")
    refused = stranger.json(
        "kernelspec", "install", host.daemon.host, "ana", "--trust", "--prefix", str(tmp_path / "j2"), code=1
    )
    assert refused["error"] == ErrorCode.NOT_AUTHORIZED
    assert f"ssd-ctl login {host.daemon.host} && ssd-ctl copy-id {host.daemon.host}" in refused["message"]
