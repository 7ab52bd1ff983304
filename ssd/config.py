"""The daemon's configuration: a typed, frozen model loaded from TOML, overridden by
``SSD_<SECTION>_<KEY>`` environment variables and then by command-line flags.

Unknown keys are an error wherever they appear, so a typo never silently
falls back to a default.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from ssd.configtypes import fields_of, python_type, unwrap
from ssd.errors import ConfigError
from ssd.kernels.slurm.limits import SlurmConfig

__all__ = [
    "SECTIONS",
    "AuthConfig",
    "Config",
    "DiscoveryConfig",
    "EnvsConfig",
    "KernelsConfig",
    "ServerConfig",
    "WorkersConfig",
    "load_config",
]

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Positive = Annotated[float, msgspec.Meta(gt=0)]
LogLevel = Literal["debug", "info", "warning", "error"]


def _doc(text: str) -> msgspec.Meta:
    return msgspec.Meta(description=text)


# A TXT string holds 255 bytes; "desc=" and some room stay free.
MAX_DESCRIPTION_BYTES = 200


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every config section: frozen and strict."""


class ServerConfig(_Section, frozen=True):
    """``[server]``: sockets, limits and logging of the broker."""

    name: Annotated[str, _doc("Friendly name of this host; empty means the host name.")] = ""
    bind: Annotated[str, _doc("Address to bind the control and events sockets; * = all.")] = "*"
    port: Annotated[Port, _doc("Control port (ROUTER, CURVE).")] = 9470
    events_port: Annotated[Port, _doc("Events port (PUB, CURVE); 0 = port + 1.")] = 0
    key_port: Annotated[Port, _doc("Public key port (plain, read-only); 0 = port + 2.")] = 0
    log_level: Annotated[LogLevel, _doc("Logging threshold on stderr.")] = "info"
    max_message_size: Annotated[
        int,
        msgspec.Meta(
            ge=1024, description="Largest accepted frame in bytes (a message has at most 16); larger drops the peer."
        ),
    ] = 1 << 20
    max_inflight_per_client: Annotated[
        int, msgspec.Meta(ge=1, description="Requests one client key may have in progress at once.")
    ] = 8
    hwm: Annotated[int, msgspec.Meta(ge=1, description="ZeroMQ high-water mark of each socket.")] = 1000
    status_interval: Annotated[Positive, _doc("Seconds between host_status events.")] = 10.0
    shutdown_grace: Annotated[Positive, _doc("Seconds in-flight requests get on shutdown.")] = 3.0
    edge_user: Annotated[
        str, _doc("Unprivileged account the edge (public sockets, before login) runs as in system mode.")
    ] = "nobody"
    edge_memory_limit: Annotated[
        int, msgspec.Meta(ge=64, description="Data limit of the edge process in MiB; past it the edge restarts.")
    ] = 256
    edge_flood_threshold: Annotated[
        int,
        msgspec.Meta(ge=4, description="MiB the edge may grow before it cuts the connection that sent the most."),
    ] = 32


class WorkersConfig(_Section, frozen=True):
    """``[workers]``: supervision of worker processes."""

    heartbeat_interval: Annotated[Positive, _doc("Seconds between heartbeats both ways.")] = 1.0
    heartbeat_liveness: Annotated[
        int, msgspec.Meta(ge=2, description="Missed heartbeats after which a worker is dead.")
    ] = 3
    service_wait: Annotated[
        float, msgspec.Meta(ge=0, description="Seconds a request waits for a worker to appear.")
    ] = 3.0
    restart_backoff_max: Annotated[Positive, _doc("Longest pause before restarting a crashed worker.")] = 30.0
    diag: Annotated[bool, _doc("Run the diagnostic echo worker (ssd-ctl ping --worker).")] = False
    idle_timeout: Annotated[Positive, _doc("Seconds without requests before a user's own worker is stopped.")] = 600.0
    flood_threshold: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            description="MiB the broker may grow (beyond 80 KiB per worker connection) before it cuts the worker "
            "connection that sent the most; 0 = off.",
        ),
    ] = 32


class DiscoveryConfig(_Section, frozen=True):
    """``[discovery]``: zeroconf announcement."""

    announce: Annotated[bool, _doc("Announce this host with zeroconf (_ssd._tcp).")] = True
    interfaces: Annotated[
        list[str],
        _doc(
            "Addresses of the interfaces to announce on, or all; empty follows server.bind "
            "(127.0.0.1: loopback only; *: every interface but loopback)."
        ),
    ] = []
    description: Annotated[str, _doc("A short note shown by ssd-ctl discover (at most 200 bytes).")] = ""
    refresh_interval: Annotated[Positive, _doc("Seconds between checks of load, kernels and interface addresses.")] = (
        5.0
    )
    txt_min_interval: Annotated[
        float, msgspec.Meta(ge=0, description="Least seconds between two announced changes of the summary (TXT).")
    ] = 10.0

    def __post_init__(self) -> None:
        """Refuse what could not be announced: an oversized description, an interface that is no address."""
        if len(self.description.encode()) > MAX_DESCRIPTION_BYTES:
            raise ValueError(f"discovery.description is longer than {MAX_DESCRIPTION_BYTES} bytes (a TXT string)")
        for value in self.interfaces:
            try:
                ipaddress.ip_address("127.0.0.1" if value == "all" else value)
            except ValueError:
                raise ValueError(f"discovery.interfaces: {value!r} is neither an IP address nor all") from None


class AuthConfig(_Section, frozen=True):
    """``[auth]``: login with PAM or authorized keys, sessions, throttling, who may log in."""

    pam_service: Annotated[str, _doc("PAM service used for passwords (/etc/pam.d/NAME).")] = "login"
    session_lifetime: Annotated[Positive, _doc("Seconds a login stays valid (default half a day).")] = 43200.0
    pool_size: Annotated[
        int,
        msgspec.Meta(
            ge=1, le=64, description="Auth worker processes (PAM calls in parallel); one address may use all but one."
        ),
    ] = 4
    min_uid: Annotated[
        int, msgspec.Meta(ge=0, description="Accounts with a lower uid are system accounts: refused.")
    ] = 1000
    allow_root: Annotated[bool, _doc("Let root log in (system mode).")] = False
    allow_users: Annotated[list[str], _doc("If set (or allow_groups), only these users may log in.")] = []
    allow_groups: Annotated[list[str], _doc("If set (or allow_users), only members of these groups may log in.")] = []
    deny_users: Annotated[list[str], _doc("Users who may never log in.")] = []
    deny_groups: Annotated[list[str], _doc("Members of these groups may never log in.")] = []
    authorized_keys: Annotated[str, _doc("A user's own authorized client keys, relative to their home.")] = (
        ".config/ssd/authorized_keys"
    )
    permit_empty_passwords: Annotated[
        bool, _doc("Accept an empty password where PAM would (pam_unix nullok); like sshd's PermitEmptyPasswords.")
    ] = False
    require_listed_shell: Annotated[
        bool, _doc("Refuse accounts whose login shell is not in /etc/shells (nologin, false), by key too.")
    ] = True
    account_recheck: Annotated[
        Positive, _doc("Seconds between checks that a logged-in account is still enabled (and at worker start).")
    ] = 3600.0
    failure_delay: Annotated[
        Positive, _doc("Seconds of back-off after the first failed password for a user name from an address.")
    ] = 1.0
    max_failures: Annotated[
        int,
        msgspec.Meta(ge=1, description="Failures before a user name from an address is refused for `lockout` seconds."),
    ] = 5
    lockout: Annotated[
        Positive, _doc("Seconds a user name from an address (or an address) is refused after max_failures.")
    ] = 300.0
    connection_burst: Annotated[
        int, msgspec.Meta(ge=1, description="New connections one address may open at once before being limited.")
    ] = 200
    connection_rate: Annotated[Positive, _doc("New connections per second one address may open after the burst.")] = (
        20.0
    )


class EnvsConfig(_Section, frozen=True):
    """``[envs]``: which environments each user's env worker lists (ssd.envs.DiscoveryOptions)."""

    extra_roots: Annotated[list[str], _doc("More conda/mamba root prefixes to search (multi-user installs).")] = []
    envs_dirs: Annotated[list[str], _doc("More folders whose children are conda environments.")] = []
    venv_dirs: Annotated[list[str], _doc("Folders (~ = the user's home) whose virtualenvs are listed.")] = (
        msgspec.field(default_factory=lambda: ["~/.virtualenvs", "~/venvs", "~/.venvs"])
    )
    exclude: Annotated[list[str], _doc("fnmatch patterns on names (or prefixes, with a /) to hide.")] = msgspec.field(
        default_factory=lambda: ["_*"]
    )
    known_roots: Annotated[bool, _doc("Search the usual install places (~/miniconda3, /opt/conda, ...).")] = True
    administration: Annotated[bool, _doc("Let users create, change and remove their environments.")] = True
    admin_deny_groups: Annotated[list[str], _doc("Members of these groups may only list environments.")] = []
    venv_home: Annotated[str, _doc("Where env_create puts a new venv (~ = the user's home).")] = "~/.venvs"


NonNegative = Annotated[float, msgspec.Meta(ge=0)]

# Variables a client may pass to a kernel (fnmatch patterns); everything else of
# the worker's environment is dropped, and the environment's own are set.
DEFAULT_ENV_ALLOW = [
    "SPY_*",
    "LANG",
    "LC_*",
    "TZ",
    "MPLBACKEND",
    "QT_API",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "PYTHONHASHSEED",
    "PYTHONWARNINGS",
]


class KernelsConfig(_Section, frozen=True):
    """``[kernels]``: how each user's kernel worker starts, watches and limits kernels."""

    transport: Annotated[
        Literal["curve", "plain"],
        _doc("Kernel channels: curve = through an encrypted relay; plain = the kernel binds ip itself."),
    ] = "curve"
    ip: Annotated[str, _doc("Address clients reach kernels on (relay or plain kernel); empty = server.bind.")] = ""
    max_per_user: Annotated[int, msgspec.Meta(ge=0, description="Kernels one user may run; 0 = no limit.")] = 10
    max_per_host: Annotated[int, msgspec.Meta(ge=0, description="Kernels on this host in all; 0 = no limit.")] = 100
    start_timeout: Annotated[Positive, _doc("Seconds a kernel has to answer kernel_info after it starts.")] = 60.0
    shutdown_grace: Annotated[Positive, _doc("Seconds a kernel has to exit after shutdown_request.")] = 5.0
    idle_cull: Annotated[NonNegative, _doc("Seconds without activity before an idle kernel is stopped; 0 = off.")] = 0.0
    cull_spyder: Annotated[bool, _doc("Cull idle Spyder kernels too (a Spyder session may sit idle for days).")] = False
    cull_connected: Annotated[bool, _doc("Cull idle kernels that still have clients connected.")] = False
    lease_grace: Annotated[
        NonNegative,
        _doc("Seconds a kernel whose frontend stopped renewing its lease, with no client connected, is kept."),
    ] = 300.0
    memory_limit: Annotated[int, msgspec.Meta(ge=0, description="Address-space limit per kernel in MiB; 0 = none.")] = 0
    umask: Annotated[
        int, msgspec.Meta(ge=0, le=0o777, description="umask of kernels; write it in octal: umask = 0o022.")
    ] = 0o022
    max_restarts: Annotated[
        int, msgspec.Meta(ge=0, description="Automatic restarts of a kernel (started with restart) per hour.")
    ] = 5
    env_allow: Annotated[list[str], _doc("Variables (fnmatch patterns) a client may set for a kernel.")] = (
        msgspec.field(default_factory=lambda: list(DEFAULT_ENV_ALLOW))
    )
    stop_on_exit: Annotated[bool, _doc("Stop every kernel when the daemon stops (default: they keep running).")] = False
    spares: Annotated[
        int, msgspec.Meta(ge=0, le=16, description="Spare kernels kept ready per user, environment and kind; 0 = off.")
    ] = 1
    spare_idle: Annotated[Positive, _doc("Seconds a spare is kept without a start in its environment and kind.")] = (
        900.0
    )


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The whole daemon configuration."""

    server: ServerConfig = ServerConfig()
    workers: WorkersConfig = WorkersConfig()
    discovery: DiscoveryConfig = DiscoveryConfig()
    auth: AuthConfig = AuthConfig()
    envs: EnvsConfig = EnvsConfig()
    kernels: KernelsConfig = KernelsConfig()
    slurm: SlurmConfig = SlurmConfig()

    def __post_init__(self) -> None:
        """Refuse a control port whose derived events or key port would pass 65535."""
        for name, port in (("events_port", self.events_port), ("key_port", self.key_port)):
            if port > 65535:
                raise ValueError(f"server.port {self.server.port} leaves no room for {name}; set server.{name}")

    @property
    def events_port(self) -> int:
        """The events port, derived from the control port unless set (0 stays 0: random)."""
        return self.server.events_port or (self.server.port + 1 if self.server.port else 0)

    @property
    def key_port(self) -> int:
        """The public-key port, derived from the control port unless set (0 stays 0: random)."""
        return self.server.key_port or (self.server.port + 2 if self.server.port else 0)


# Each section's model, in the order of Config (the reference page lists them so).
SECTIONS: dict[str, type[msgspec.Struct]] = {name: type(getattr(Config(), name)) for name in Config.__struct_fields__}

# Variables with this prefix that are not config keys but choose directories.
_DIRECTORY_VARIABLES = {"SSD_CONFIG_DIR", "SSD_STATE_DIR", "SSD_CLIENT_DIR"}

Overrides = Mapping[tuple[str, str], Any]


def load_config(
    path: Path | None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Overrides | None = None,
) -> Config:
    """Load *path* (absent = defaults), then apply environment and flag overrides."""
    data = _read_toml(path) if path is not None and path.exists() else {}
    config = _convert(data, source=str(path) if path else "defaults")
    env = _environment_overrides(os.environ if environ is None else environ)
    config = _apply(config, env, strict=False, source="environment")
    return _apply(config, overrides or {}, strict=True, source="command line")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def _convert(data: Mapping[str, Any], *, source: str) -> Config:
    try:
        return msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None


def _describe(exc: msgspec.ValidationError) -> str:
    # msgspec says "at `$.server.port`"; a config user thinks in "server.port".
    return str(exc).replace("`$.", "`")


def _environment_overrides(environ: Mapping[str, str]) -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for name, value in environ.items():
        if not name.startswith("SSD_") or name in _DIRECTORY_VARIABLES:
            continue
        split = _split_variable(name)
        if split is not None:
            found[split] = value
    return found


def _split_variable(name: str) -> tuple[str, str] | None:
    """Map SSD_SECTION_KEY to (section, key); None if it names no section (not ours)."""
    rest = name[len("SSD_") :].lower()
    for section, model in SECTIONS.items():
        if rest.startswith(section + "_"):
            key = rest[len(section) + 1 :]
            if key in model.__struct_fields__:
                return section, key
            # A typo in a key of a real section must not be silently ignored.
            raise ConfigError(f"environment variable {name}: {section} has no key {key!r} (see `ssd config`)")
    return None


def _apply(config: Config, overrides: Overrides, *, strict: bool, source: str) -> Config:
    if not overrides:
        return config
    data = msgspec.to_builtins(config)
    for (section, key), value in overrides.items():
        model = SECTIONS.get(section)
        if model is None or key not in model.__struct_fields__:
            raise ConfigError(f"{source}: unknown configuration key {section}.{key}")
        field_type = fields_of(model)[model.__struct_fields__.index(key)].type
        if isinstance(value, str) and isinstance(unwrap(field_type), msgspec.inspect.ListType):
            value = [part.strip() for part in value.split(",") if part.strip()]  # SSD_AUTH_DENY_USERS=a,b
        try:
            # Validate the value alone first so the error names the key it came from.
            msgspec.convert(value, python_type(field_type), strict=strict)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{source}: {section}.{key}: {exc}") from None
        data[section][key] = value
    try:
        return msgspec.convert(data, Config, strict=strict)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None
