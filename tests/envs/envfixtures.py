"""Real environments for the envs tests: a venv with spyder-kernels and ipykernel really installed
(built once, cached in a world-readable folder), conda-style copies of it, plain venvs, fake homes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BASE_PYTHON = "/usr/bin/python3"
# Pinned to a pair that works (ssd.envs.compat: IPython 9.18 breaks spyder-kernels 3.1, which needs ipykernel<7);
# a change here changes the cache key, so a cached env of the old packages is not reused.
HEAVY_PACKAGES = ("spyder-kernels==3.1.*", "ipykernel<7", "ipython<9.18")
CACHE_ROOT = Path(os.environ.get("SSD_TEST_ENVS", "/opt/ssd-test-envs"))
_ORACLE = (
    "import importlib.metadata as m, json, platform;"
    "print(json.dumps({'python': platform.python_version(),"
    " 'spyder_kernels': m.version('spyder-kernels'), 'ipykernel': m.version('ipykernel'),"
    " 'ipython': m.version('ipython')}))"
)


def _base_version() -> str:
    out = subprocess.run(
        [BASE_PYTHON, "-c", "import platform; print(platform.python_version())"],
        text=True,
        capture_output=True,
        check=True,
    )
    return out.stdout.strip()


def _build_heavy(target: Path, packages: tuple[str, ...]) -> None:
    """Create the venv at *target* and pip-install *packages* into it without dependencies."""
    subprocess.run([BASE_PYTHON, "-m", "venv", "--without-pip", str(target)], check=True, timeout=120)
    pip = [sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"), "install"]
    subprocess.run([*pip, "-q", "--no-deps", "--no-compile", *packages], check=True, timeout=300)
    oracle = subprocess.run(
        [str(target / "bin" / "python"), "-c", _ORACLE], text=True, capture_output=True, check=True, timeout=60
    )
    (target / "ssd-test-expected.json").write_text(oracle.stdout)


def heavy_venv() -> Path:
    """The cached venv with spyder-kernels installed (built on first use, under a lock, then reused)."""
    return _cached("", HEAVY_PACKAGES, _build_heavy)


KERNEL_PACKAGES = ("spyder-kernels==3.1.*", "ipython<9.18")  # unpinned, pip resolves the broken IPython 9.18


def _build_kernel_env(target: Path, packages: tuple[str, ...]) -> None:
    """A venv where kernels really run: *packages* with every dependency pip resolves (ipykernel too)."""
    subprocess.run([BASE_PYTHON, "-m", "venv", "--without-pip", str(target)], check=True, timeout=120)
    pip = [sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"), "install"]
    subprocess.run([*pip, "-q", "--no-compile", *packages], check=True, timeout=600)
    oracle = subprocess.run(
        [str(target / "bin" / "python"), "-c", _ORACLE], text=True, capture_output=True, check=True, timeout=60
    )
    (target / "ssd-test-expected.json").write_text(oracle.stdout)


def kernel_venv() -> Path:
    """The cached venv that can run Spyder and Jupyter kernels (built on first use, then reused)."""
    return _cached("kernel", KERNEL_PACKAGES, _build_kernel_env)


# What pip resolved for spyder-kernels 3.1.6 before ssd pinned IPython: the pair that breaks Spyder's console.
BROKEN_KERNEL_PACKAGES = ("spyder-kernels==3.1.6", "ipython==9.18.1")


def broken_kernel_venv() -> Path:
    """The cached venv with spyder-kernels 3.1.6 and IPython 9.18.1 and their dependencies (a known break)."""
    return _cached("broken-kernel", BROKEN_KERNEL_PACKAGES, _build_kernel_env)


# Spyder's own environment for tests/spyder (a GUI venv, not a kernel's): every version is fixed in
# spyder-requirements.txt (Spyder 6.1.8, PyQt5 from PyPI, pytest-qt, ssd's dependencies), installed without
# resolving, so that CI only lays the checkout over it (.ci/run's last step).
SPYDER_REQUIREMENTS = Path(__file__).with_name("spyder-requirements.txt")
SPYDER_PACKAGES = tuple(
    line.strip() for line in SPYDER_REQUIREMENTS.read_text().splitlines() if line.strip() and not line.startswith("#")
)


def _build_spyder_env(target: Path, packages: tuple[str, ...]) -> None:
    """A venv with exactly the pinned packages (no resolution: pip only downloads and unpacks), then checked."""
    subprocess.run([BASE_PYTHON, "-m", "venv", "--without-pip", str(target)], check=True, timeout=120)
    pip = [sys.executable, "-m", "pip", "--python", str(target / "bin" / "python")]
    subprocess.run([*pip, "install", "-q", "--no-compile", "--no-deps", *packages], check=True, timeout=1200)
    subprocess.run([*pip, "check"], check=True, timeout=120)  # the pins are consistent with each other
    oracle = subprocess.run(
        [str(target / "bin" / "python"), "-c", "import importlib.metadata as m, json;"
         "print(json.dumps({'spyder': m.version('spyder'), 'jupyter_client': m.version('jupyter_client')}))"],
        text=True, capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    (target / "ssd-test-expected.json").write_text(oracle.stdout)


def spyder_venv() -> Path:
    """The cached venv Spyder runs from in tests/spyder (built on first use, then reused)."""
    return _cached("spyder", SPYDER_PACKAGES, _build_spyder_env)


def _cached(label: str, packages: tuple[str, ...], build: Callable[[Path, tuple[str, ...]], None]) -> Path:
    """The venv built by *build* for *packages*, cached under a key of them (built once, under a lock)."""
    stem = f"{label}|" if label else ""  # the heavy venv keeps the key it always had
    key = hashlib.sha256(f"{stem}{_base_version()}|{'|'.join(packages)}".encode()).hexdigest()[:16]
    folder = CACHE_ROOT / key
    venv = folder / "venv"
    if (venv / "ssd-test-expected.json").exists():
        return venv
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    os.chmod(CACHE_ROOT, 0o755)
    with open(CACHE_ROOT / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / "ssd-test-expected.json").exists():
            building = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=CACHE_ROOT))
            build(building / "venv", packages)
            subprocess.run(["chmod", "-R", "a+rX", str(building)], check=True)
            shutil.rmtree(folder, ignore_errors=True)
            building.rename(folder)
    return venv


def expected(venv: Path) -> dict[str, str]:
    """What the venv's own Python said about its versions when it was built (the oracle)."""
    data: dict[str, str] = json.loads((venv / "ssd-test-expected.json").read_text())
    return data


def conda_python_record(version: str, build: str = "h0") -> dict[str, Any]:
    """A conda-meta record for python with the fields conda writes (files list shortened)."""
    return {
        "arch": "x86_64",
        "build": build,
        "build_number": 0,
        "channel": "https://conda.anaconda.org/conda-forge/linux-64",
        "constrains": ["python_abi 3.11.* *_cp311"],
        "depends": ["libgcc-ng >=12", "openssl >=3.0.8,<4.0a0"],
        "files": [f"lib/python3.11/module{i}.py" for i in range(2000)],
        "fn": f"python-{version}-{build}.conda",
        "license": "Python-2.0",
        "md5": "0" * 32,
        "name": "python",
        "platform": "linux",
        "requested_spec": "python",
        "sha256": "0" * 64,
        "size": 31000000,
        "subdir": "linux-64",
        "timestamp": 1676000000000,
        "url": f"https://conda.anaconda.org/conda-forge/linux-64/python-{version}-{build}.conda",
        "version": version,
    }


def make_conda_style(prefix: Path, python: str = "3.11.2") -> Path:
    """Give *prefix* a ``conda-meta/history`` and a python record, making it a conda-style prefix."""
    meta = prefix / "conda-meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "history").write_text(
        f"==> 2024-01-01 00:00:00 <==\n# cmd: conda create -p {prefix}\n+conda-forge::python-{python}-h0\n"
    )
    (meta / f"python-{python}-h0.json").write_text(json.dumps(conda_python_record(python)))
    return prefix


def conda_copy(source: Path, prefix: Path, python: str = "3.11.2") -> Path:
    """A conda-style prefix: a copy of the venv *source* (symlinks kept) given conda metadata."""
    shutil.copytree(source, prefix, symlinks=True)
    return make_conda_style(prefix, python)


def make_venv(path: Path) -> Path:
    """A plain, real venv from the base Python (no pip, nothing installed)."""
    subprocess.run([BASE_PYTHON, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    return path


def site_packages(prefix: Path) -> Path:
    """The one ``lib/python3.X/site-packages`` of a prefix built from the base Python."""
    (found,) = (prefix / "lib").glob("python3.*/site-packages")
    return found


def list_in_environments_txt(home: Path, *prefixes: Path) -> None:
    """Append *prefixes* to the home's ``~/.conda/environments.txt`` as conda does."""
    path = home / ".conda" / "environments.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.writelines(f"{prefix}\n" for prefix in prefixes)


@contextmanager
def public_dir() -> Iterator[Path]:
    """A temporary folder other users can enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="ssd-envs-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        subprocess.run(["chmod", "-R", "u+rwX", str(path)], check=False)
        shutil.rmtree(path, ignore_errors=True)


_DISCOVER_SCRIPT = (
    "import json, os, sys, msgspec; from pathlib import Path;"
    "from ssd.envs import DiscoveryOptions, discover;"
    "options = msgspec.json.decode(sys.argv[1], type=DiscoveryOptions);"
    "print(msgspec.json.encode(discover(options, Path(sys.argv[2]), json.loads(sys.argv[3]))).decode())"
)


def discover_as(user: str, options_json: str, home: Path, environ: dict[str, str]) -> list[dict[str, Any]]:
    """Run discovery in a child process as *user* (no extra groups) and return its listing."""
    account = pwd.getpwnam(user)
    result = subprocess.run(
        [sys.executable, "-c", _DISCOVER_SCRIPT, options_json, str(home), json.dumps(environ)],
        user=account.pw_uid,
        group=account.pw_gid,
        extra_groups=[],
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    listing: list[dict[str, Any]] = json.loads(result.stdout)
    return listing
