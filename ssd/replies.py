"""Typed reply contents, one struct per reply type (``ssd.contract`` pairs each with its request).

Servers build these; clients convert a reply's content into them. A reply
tolerates fields it does not name (a newer server may add some) but checks the
types of those it names: the client turns a mismatch into ``SSDError`` with
code ``bad_reply`` naming the field. Fields a server of an older version may
leave out have defaults. Error replies are not typed here: a client raises
``RemoteError`` on ``status: error`` before it converts anything.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "AccountCheckReply",
    "EchoReply",
    "EnvCancelReply",
    "EnvDescription",
    "EnvInfoReply",
    "EnvListReply",
    "EnvOperationReply",
    "KernelDescription",
    "KernelInfoReply",
    "KernelInterruptReply",
    "KernelLeaseReply",
    "KernelListReply",
    "KernelRestartReply",
    "KernelShutdownReply",
    "KernelStartReply",
    "KeyAddReply",
    "KeyRemoveReply",
    "LoginReply",
    "LogoutReply",
    "PingReply",
    "Reply",
    "ServerInfoReply",
    "SlurmOffer",
    "SparesReply",
    "WhoamiReply",
]

# A kernel id; clients build file names from it and check it is a canonical UUID (ssd.client.kernels).
KernelId = str


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every successful reply content."""

    status: Literal["ok"] = "ok"


class PingReply(Reply, frozen=True):
    """``ping_reply``: the client's data and the server's clock."""

    data: str
    server_time: float


class SlurmOffer(msgspec.Struct, frozen=True, kw_only=True):
    """A Slurm host's resources when a start names none, and the most it allows ("" or 0: no limit of ssd's)."""

    default_partition: str = ""
    default_time: str = ""
    default_cpus: int = 1
    default_mem: str = ""
    max_time: str = ""
    max_cpus: int = 0
    max_mem: str = ""
    max_gpus: int = 0


class ServerInfoReply(Reply, frozen=True):
    """``server_info_reply``: who the server is, what it serves, and its host's status."""

    name: str
    version: str
    protocol_version: str
    mode: str
    capabilities: list[str]
    fingerprint: str
    public_key: str
    control_port: int
    events_port: int
    key_port: int
    kernel_transport: str = "curve"
    # Where kernels may run (local; slurm: in Slurm jobs) and the Slurm partitions users may ask for (empty: any).
    placements: list[str] = msgspec.field(default_factory=lambda: ["local"])
    slurm_partitions: list[str] = []
    slurm: SlurmOffer | None = None  # with placement slurm: the defaults and limits of [slurm]
    uptime: float = 0.0
    os: str = ""
    os_release: str = ""
    arch: str = ""
    cpus: int = 1
    memory_total: int = 0
    memory_available: int = 0
    load: list[float] = []


class LoginReply(Reply, frozen=True):
    """``login_reply``: the user this key is now bound to, how, and until when (the broker adds *expires*)."""

    user: str
    uid: int
    method: Literal["password", "key"]
    expires: float | None = None


class LogoutReply(Reply, frozen=True):
    """``logout_reply``: whether this key had a session to end."""

    ended: bool


class WhoamiReply(Reply, frozen=True):
    """``whoami_reply``: the user this key is bound to, since and until when."""

    user: str
    since: float
    expires: float


class KeyAddReply(Reply, frozen=True):
    """``key_add_reply``: the file the key went into; *added* is False when it was there already."""

    user: str
    file: str
    added: bool


class KeyRemoveReply(Reply, frozen=True):
    """``key_remove_reply``: keys removed, and whether the key is still authorized (by *admin_file*)."""

    user: str
    file: str
    removed: int
    authorized: bool
    admin_file: str | None = None


class EnvDescription(msgspec.Struct, frozen=True, kw_only=True):
    """One environment as the env service reports it."""

    name: str
    prefix: str
    kind: str
    python: str | None
    spyder_kernels: str | None
    ipykernel: str | None
    spyder_ready: bool
    spyder_versions: list[str]
    writable: bool
    ipython: str | None = None
    spyder_problem: str | None = None


class EnvListReply(Reply, frozen=True):
    """``env_list_reply``: every environment the user can see."""

    envs: list[EnvDescription]


class EnvInfoReply(Reply, frozen=True):
    """``env_info_reply``: one environment."""

    env: EnvDescription


class EnvOperationReply(Reply, frozen=True):
    """``env_create_reply``, ``env_install_reply``, ``env_remove_reply``: the operation started (progress follows
    as ``env_progress`` events)."""

    operation: str
    kind: Literal["create", "install", "remove"]
    target: str


class EnvCancelReply(Reply, frozen=True):
    """``env_cancel_reply``: the state the operation ended in."""

    state: str


class KernelDescription(msgspec.Struct, frozen=True, kw_only=True):
    """One kernel as ``kernel_list`` shows it (no secrets)."""

    kernel_id: KernelId
    name: str
    label: str = ""
    start_token: str = ""  # the start's own name for it, as its client gave it (kernel_start's start_token)
    env: str
    env_name: str = ""
    kind: str
    state: str
    execution_state: str = "unknown"
    started: float = 0.0
    last_activity: float = 0.0
    connections: int = 0
    pid: int = 0
    restarts: int = 0
    cwd: str = ""
    lease: float | None = None
    lease_left: float | None = None
    # Where it runs (local, slurm) and, in a Slurm job, the job's id, node, partition and seconds left.
    placement: str = "local"
    job_id: int | None = None
    node: str | None = None
    partition: str | None = None
    time_left: int | None = None
    spare: bool = False  # a spare kernel (kernel_list with spares)


class KernelStartReply(Reply, frozen=True):
    """``kernel_start_reply``: the kernel, ready (it answered kernel_info), and how to connect to it."""

    kernel: KernelDescription
    connection: dict[str, Any]
    connection_file: str
    kernel_info: dict[str, Any]
    timing: dict[str, float] = {}


class KernelListReply(Reply, frozen=True):
    """``kernel_list_reply``: the user's own kernels."""

    kernels: list[KernelDescription]


class SparesReply(Reply, frozen=True):
    """``spares_reply``: the spares now kept for the environment (the request capped by the host)."""

    env: str
    count: int
    host_cap: int


class KernelInfoReply(Reply, frozen=True):
    """``kernel_info_reply``: one kernel and how to connect to it (attach again)."""

    kernel: KernelDescription
    connection: dict[str, Any]
    connection_file: str
    kernel_info: dict[str, Any]


class KernelInterruptReply(Reply, frozen=True):
    """``kernel_interrupt_reply``: how the kernel was interrupted."""

    mode: Literal["signal", "message"]


class KernelRestartReply(Reply, frozen=True):
    """``kernel_restart_reply``: the kernel, running again with the same id, ports and key."""

    kernel: KernelDescription
    kernel_info: dict[str, Any]
    timing: dict[str, float] = {}


class KernelShutdownReply(Reply, frozen=True):
    """``kernel_shutdown_reply``: the kernel stopped, with its exit code (None: unknown)."""

    kernel_id: KernelId
    exit_code: int | None = None


class KernelLeaseReply(Reply, frozen=True):
    """``kernel_lease_reply``: the lease the kernel now holds (None: detached)."""

    kernel_id: KernelId
    lease: float | None


class EchoReply(Reply, frozen=True):
    """``echo_reply``: the data, and the pid of the worker that echoed it."""

    data: str
    pid: int


class AccountCheckReply(Reply, frozen=True):
    """``account_check_reply``: the account may still log in."""

    user: str
