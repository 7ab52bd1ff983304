"""Input checks for environment administration: every bad name, spec, version and prefix gets its own message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ssd.envs import validate
from ssd.envs.validate import EnvRefused
from ssd.errors import ErrorCode


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty"),
        ("a" * 65, "too long"),
        ("a/b", "'/'"),
        ("/etc", "'/'"),
        ("..", "'..'"),
        ("a..b", "'..'"),
        (".", "'.'"),
        ("-rf", "starts with '-'"),
        ("--help", "starts with '-'"),
        ("a\0b", "NUL"),
        ("a\nb", "control character"),
        ("a\x1bb", "control character"),
        ("a\x7f", "control character"),
        ("a b", "whitespace"),
        ("a\tb", "control character"),
        ("a;rm", "shell metacharacters: ;"),
        ("$(id)", "shell metacharacters"),
        ("a`id`", "shell metacharacters: `"),
        ("a|b", "shell metacharacters: |"),
        ("a&b", "shell metacharacters: &"),
        ("a>b", "shell metacharacters: >"),
        ("*", "shell metacharacters: *"),
        ("~root", "shell metacharacters: ~"),
        ("a'b", "shell metacharacters"),
        ('a"b', "shell metacharacters"),
        ("é", "only letters, digits"),
    ],
)
def test_bad_env_names_are_refused_with_the_problem_named(name: str, message: str) -> None:
    with pytest.raises(ValueError, match="environment name") as info:
        validate.env_name(name)
    assert message in str(info.value)


@pytest.mark.parametrize("name", ["spyder", "py3.12", "my_env-2", "a+b", ".hidden", "a" * 64])
def test_good_env_names_pass_unchanged(name: str) -> None:
    assert validate.env_name(name) == name


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("six" + "=" * 2 + "1" * 200, "too long"),
        ("-r requirements.txt", "starts with '-'"),
        ("--index-url=http://evil", "starts with '-'"),
        ("-e .", "starts with '-'"),
        ("six\0", "NUL"),
        ("six\n--pre", "control character"),
        ("six @ https://example.org/six.whl", "URL, a path or a direct reference"),
        ("six@file:///tmp/six.whl", "URL, a path or a direct reference"),
        ("./local/pkg", "URL, a path or a direct reference"),
        ("/tmp/six-1.17.0-py2.py3-none-any.whl", "URL, a path or a direct reference"),
        ("https://example.org/six.whl", "URL, a path or a direct reference"),
        ("six; python_version < '3'", "marker"),
        ("six >>= 1", "not a valid requirement"),
        ("six==", "not a valid requirement"),
        ("six; rm -rf ~", "not a valid requirement"),
        ("$(id)", "not a valid requirement"),
        ("six other", "not a valid requirement"),
        ("[extra]", "not a valid requirement"),
    ],
)
def test_bad_package_specs_are_refused_with_the_problem_named(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match="package spec") as info:
        validate.package_spec(spec)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("spec", "normalized"),
    [
        ("six", "six"),
        ("numpy>=1.26", "numpy>=1.26"),
        ("spyder-kernels>=3.1.0,<3.2.0", "spyder-kernels<3.2.0,>=3.1.0"),
        ("ipykernel [test] == 6.29.*", "ipykernel[test]==6.29.*"),
    ],
)
def test_good_package_specs_come_back_normalized(spec: str, normalized: str) -> None:
    assert validate.package_spec(spec) == normalized
    assert validate.package_specs([spec, "six"]) == [normalized, "six"]


@pytest.mark.parametrize("version", ["3", "3.12", "3.12.1", "2.7"])
def test_good_python_versions_pass(version: str) -> None:
    assert validate.python_version(version) == version


@pytest.mark.parametrize("version", ["", "3.", "3.12.1.4", "python3", "-3", "3.12;id", "3 .12", "4.0", "3.x", "3\n"])
def test_bad_python_versions_are_refused(version: str) -> None:
    with pytest.raises(ValueError, match="Python version"):
        validate.python_version(version)


def test_python_interpreter_takes_a_path_or_a_version() -> None:
    assert validate.python_interpreter("/usr/bin/python3") == "/usr/bin/python3"
    assert os.path.basename(validate.python_interpreter(None)) == "python3"
    with pytest.raises(EnvRefused, match="not an executable"):
        validate.python_interpreter("/etc/passwd")
    with pytest.raises(EnvRefused, match=r"no python3\.1 found"):
        validate.python_interpreter("3.1")
    with pytest.raises(ValueError, match="Python version"):
        validate.python_interpreter("python; id")


def _venv_like(path: Path) -> Path:
    path.mkdir()
    (path / "pyvenv.cfg").write_text("home = /usr/bin\n")
    return path


def test_prefixes_outside_what_discovery_found_are_refused(tmp_path: Path) -> None:
    env = _venv_like(tmp_path / "env")
    other = _venv_like(tmp_path / "other")
    assert validate.known_prefix(env, {str(env)}) == env
    assert validate.known_prefix(tmp_path / "x" / ".." / "env", [env]) == env
    with pytest.raises(EnvRefused, match="not an environment that discovery found"):
        validate.known_prefix(other, {env})
    with pytest.raises(EnvRefused, match="not an environment that discovery found"):
        validate.removable_prefix("relative/env", {env})


def test_symlinked_missing_and_non_environment_prefixes_are_refused(tmp_path: Path) -> None:
    env = _venv_like(tmp_path / "env")
    link = tmp_path / "link"
    link.symlink_to(env)
    with pytest.raises(EnvRefused, match="symbolic link"):
        validate.known_prefix(link, {link})
    with pytest.raises(EnvRefused, match="not a directory"):
        validate.known_prefix(tmp_path / "gone", {tmp_path / "gone"})
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(EnvRefused, match=r"neither pyvenv\.cfg nor conda-meta/history"):
        validate.removable_prefix(plain, {plain})


def test_a_conda_install_root_is_not_removable(tmp_path: Path) -> None:
    root = tmp_path / "conda"
    (root / "conda-meta").mkdir(parents=True)
    (root / "conda-meta" / "history").write_text("")
    (root / "condabin").mkdir()
    with pytest.raises(EnvRefused, match="root prefix of a conda install"):
        validate.removable_prefix(root, {root})


def test_new_prefix_refuses_anything_already_there(tmp_path: Path) -> None:
    assert validate.new_prefix(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for existing in (tmp_path, tmp_path / "dangling"):
        for create in (False, True):
            with pytest.raises(EnvRefused, match="already exists"):
                validate.new_prefix(existing, create=create)
    assert validate.new_prefix(tmp_path / "made", create=True).is_dir()
    with pytest.raises(EnvRefused, match="does not exist"):
        validate.new_prefix(tmp_path / "no" / "parent", create=True)


def test_refusals_carry_a_stable_code_and_are_value_errors() -> None:
    error = EnvRefused("x")
    assert error.code == ErrorCode.ENV_REFUSED
    assert isinstance(error, ValueError)
