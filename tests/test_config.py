"""Loading the daemon configuration: defaults, TOML file, SSD_* environment, flags."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from ssd.config import SECTIONS, Config, load_config
from ssd.configdoc import default_toml, reference
from ssd.errors import ConfigError, ErrorCode


def write(tmp_path: Path, text: str) -> Path:
    """Write *text* as a config file and return its path."""
    path = tmp_path / "ssd.toml"
    path.write_text(text)
    return path


def uncommented(text: str) -> str:
    """default_toml() with its ``# key = value`` lines made active."""
    return re.sub(r"^# (\w+ = )", r"\1", text, flags=re.MULTILINE)


def test_defaults_without_file_or_environment(tmp_path: Path) -> None:
    """A missing file and an empty environment give the documented defaults."""
    config = load_config(tmp_path / "absent.toml", environ={})
    assert config == Config()
    assert load_config(None, environ={}) == config
    assert (config.server.bind, config.server.port, config.server.log_level) == ("*", 9470, "info")
    assert config.server.max_message_size == 1 << 20
    assert config.workers.diag is False
    assert config.discovery.announce is True


def test_file_overrides_defaults(tmp_path: Path) -> None:
    """Keys in the TOML file replace defaults; keys not given keep theirs."""
    path = write(tmp_path, '[server]\nport = 8000\nname = "lab"\n[workers]\ndiag = true\n')
    config = load_config(path, environ={})
    assert (config.server.port, config.server.name, config.workers.diag) == (8000, "lab", True)
    assert config.server.bind == "*"
    assert config.discovery.announce is True


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[server]\nnope = 1\n", "nope"),
        ("[bogus]\nport = 1\n", "bogus"),
        ("portt = 1\n", "portt"),
    ],
)
def test_unknown_key_in_file_is_an_error(tmp_path: Path, text: str, named: str) -> None:
    """A typo in the file is refused, naming the key and the file."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=named) as info:
        load_config(path, environ={})
    assert str(path) in str(info.value)
    assert info.value.code == ErrorCode.CONFIG_INVALID


@pytest.mark.parametrize("value", ['"9470"', "true", "94.7", "70000", "-1"])
def test_wrong_type_or_range_names_the_key(tmp_path: Path, value: str) -> None:
    """A port that is not an integer in 0..65535 is refused, naming `server.port`."""
    path = write(tmp_path, f"[server]\nport = {value}\n")
    with pytest.raises(ConfigError, match=r"server\.port"):
        load_config(path, environ={})


def test_environment_overrides_file(tmp_path: Path) -> None:
    """SSD_<SECTION>_<KEY> strings are converted to the key's type and win over the file."""
    path = write(tmp_path, "[server]\nport = 8000\n")
    environ = {"SSD_SERVER_PORT": "1234", "SSD_WORKERS_DIAG": "true", "SSD_SERVER_STATUS_INTERVAL": "0.5"}
    config = load_config(path, environ=environ)
    assert config.server.port == 1234
    assert config.workers.diag is True
    assert config.server.status_interval == 0.5


def test_directory_variables_are_not_config_keys() -> None:
    """SSD_CONFIG_DIR and friends choose directories and are not refused as unknown keys."""
    environ = {"SSD_CONFIG_DIR": "/x", "SSD_STATE_DIR": "/y", "SSD_CLIENT_DIR": "/z", "HOME": "/root"}
    assert load_config(None, environ=environ) == Config()


@pytest.mark.parametrize(
    ("name", "named"), [("SSD_SERVER_NOPE", "SSD_SERVER_NOPE"), ("SSD_WORKERS_X", "SSD_WORKERS_X")]
)
def test_unknown_key_of_a_section_is_an_error(name: str, named: str) -> None:
    """An SSD_<SECTION>_* variable that names no key of that section is refused by name."""
    with pytest.raises(ConfigError, match=named):
        load_config(None, environ={name: "1"})


def test_variables_of_other_tools_are_ignored() -> None:
    """SSD_* variables that name no section (e.g. a CI script's) are not ssd's and are left alone."""
    assert load_config(None, environ={"SSD_CI_VENV": "/opt/x", "SSD_BOGUS_PORT": "1"}) == load_config(None, environ={})


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("SSD_SERVER_PORT", "abc", "server.port"),
        ("SSD_SERVER_PORT", "70000", "server.port"),
        ("SSD_SERVER_LOG_LEVEL", "loud", "server.log_level"),
        ("SSD_WORKERS_DIAG", "maybe", "workers.diag"),
        ("SSD_SERVER_STATUS_INTERVAL", "0", "server.status_interval"),
    ],
)
def test_bad_environment_value_names_the_key(name: str, value: str, named: str) -> None:
    """A value in the environment that does not fit its key is refused, naming the key."""
    with pytest.raises(ConfigError, match=re.escape(named)):
        load_config(None, environ={name: value})


def test_overrides_win_over_environment(tmp_path: Path) -> None:
    """Command-line overrides win over the environment, which wins over the file."""
    path = write(tmp_path, '[server]\nport = 8000\nbind = "10.0.0.1"\n')
    overrides = {("server", "port"): 5555, ("discovery", "announce"): False}
    config = load_config(path, environ={"SSD_SERVER_PORT": "1234", "SSD_SERVER_BIND": "::1"}, overrides=overrides)
    assert config.server.port == 5555
    assert config.server.bind == "::1"
    assert config.discovery.announce is False


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({("server", "nope"): 1}, "server.nope"),
        ({("nope", "port"): 1}, "nope.port"),
        ({("server", "port"): "5555"}, "server.port"),
        ({("server", "port"): 70000}, "server.port"),
    ],
)
def test_bad_override_is_an_error(overrides: dict[tuple[str, str], object], named: str) -> None:
    """Flags are typed: an unknown key or a value of the wrong type is refused, naming the key."""
    with pytest.raises(ConfigError, match=re.escape(named)):
        load_config(None, environ={}, overrides=overrides)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    """A file that is not TOML is refused with its path in the message."""
    path = write(tmp_path, "[server\nport = \n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(path, environ={})
    assert str(path) in str(info.value)


def test_config_is_frozen() -> None:
    """The loaded configuration cannot be changed by the code that reads it."""
    config = load_config(None, environ={})
    with pytest.raises(AttributeError):
        config.server.port = 1  # type: ignore[misc]


def test_default_toml_lists_every_key_and_parses() -> None:
    """default_toml() is valid TOML that shows every key of reference() with its description."""
    text = default_toml()
    assert tomllib.loads(text) == {section: {} for section in SECTIONS}
    rows = reference()
    assert len(rows) == sum(len(model.__struct_fields__) for model in SECTIONS.values())
    for section, key, _default, description in rows:
        assert f"# {key} = " in text, key
        assert f"# {description}" in text, f"{section}.{key} has no description in the file"
    data = tomllib.loads(uncommented(text))
    assert {(s, k) for s, table in data.items() for k in table} == {(s, k) for s, k, _, _ in rows}


def test_uncommented_default_file_loads_as_defaults(tmp_path: Path) -> None:
    """Every default rendered in default_toml() is a value the loader accepts unchanged."""
    assert load_config(write(tmp_path, uncommented(default_toml())), environ={}) == Config()


def test_events_and_key_ports_derive_from_control_port(tmp_path: Path) -> None:
    """events_port and key_port default to port + 1 and port + 2; explicit values win."""
    assert (Config().events_port, Config().key_port) == (9471, 9472)
    derived = load_config(write(tmp_path, "[server]\nport = 8000\n"), environ={})
    assert (derived.events_port, derived.key_port) == (8001, 8002)
    explicit = load_config(None, environ={"SSD_SERVER_EVENTS_PORT": "7000", "SSD_SERVER_KEY_PORT": "7100"})
    assert (explicit.events_port, explicit.key_port) == (7000, 7100)


def test_port_zero_makes_every_port_random() -> None:
    """With port 0 (pick a free port) the derived events and key ports are 0 too, never 1 and 2."""
    config = load_config(None, environ={}, overrides={("server", "port"): 0})
    assert (config.events_port, config.key_port) == (0, 0)


@pytest.mark.parametrize("port", [65534, 65535])
def test_derived_port_beyond_65535_is_an_error(tmp_path: Path, port: int) -> None:
    """A control port that leaves no room for port + 1 or port + 2 is refused at load time."""
    with pytest.raises(ConfigError, match=r"server\.port"):
        load_config(write(tmp_path, f"[server]\nport = {port}\n"), environ={})
    explicit = f"[server]\nport = {port}\nevents_port = 9000\nkey_port = 9001\n"
    assert load_config(write(tmp_path, explicit), environ={}).key_port == 9001
