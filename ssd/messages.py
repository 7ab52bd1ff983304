"""Typed request contents, one frozen struct per request type.

The broker converts a request's content into its struct right after parsing
(unknown fields and wrong types are refused with a message naming the field),
and workers do the same before acting, so raw dicts never travel inward.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar, get_args

import msgspec

__all__ = [
    "KERNEL_KINDS",
    "AccountCheckRequest",
    "ContentError",
    "EchoRequest",
    "EnvCancelRequest",
    "EnvCreateRequest",
    "EnvInfoRequest",
    "EnvInstallRequest",
    "EnvListRequest",
    "EnvRemoveRequest",
    "KernelId",
    "KernelInfoRequest",
    "KernelInterruptRequest",
    "KernelKind",
    "KernelLeaseRequest",
    "KernelListRequest",
    "KernelRestartRequest",
    "KernelShutdownRequest",
    "KernelStartRequest",
    "KeyAddRequest",
    "KeyRemoveRequest",
    "LoginRequest",
    "LogoutRequest",
    "PingRequest",
    "RequestContent",
    "ServerInfoRequest",
    "SlurmOptions",
    "SparesRequest",
    "WhoamiRequest",
    "decode_content",
    "parse_content",
]

MAX_ECHO = 64 * 1024


# omit_defaults: a client sends only what it sets, so an older server, which refuses fields it does not know,
# still takes a request that leaves a newer field at its default.
class RequestContent(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Base of every request content."""


class PingRequest(RequestContent, frozen=True):
    """``ping_request``: echoed back with the server's time."""

    data: Annotated[str, msgspec.Meta(max_length=1024)] = ""


class ServerInfoRequest(RequestContent, frozen=True):
    """``server_info_request``: no parameters."""


class EchoRequest(RequestContent, frozen=True):
    """``echo_request`` to the diagnostic worker: echo *data* after *delay* seconds."""

    data: Annotated[str, msgspec.Meta(max_length=MAX_ECHO)] = ""
    delay: Annotated[float, msgspec.Meta(ge=0, le=30)] = 0.0


class LoginRequest(RequestContent, frozen=True):
    """``login_request``: bind this connection's key to *username* (password, or an authorized key)."""

    username: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    # None: log in with the client's authorized key instead of a password.
    password: Annotated[str, msgspec.Meta(max_length=4096)] | None = None

    def __repr__(self) -> str:  # never show the password, not even in a traceback
        return f"LoginRequest(username={self.username!r}, password={'***' if self.password else None})"


class AccountCheckRequest(RequestContent, frozen=True):
    """``account_check_request``, from the broker alone (no client route): is the request's user still enabled?"""


class LogoutRequest(RequestContent, frozen=True):
    """``logout_request``: end this key's session."""


class WhoamiRequest(RequestContent, frozen=True):
    """``whoami_request``: which user this key is bound to, and until when."""


class KeyAddRequest(RequestContent, frozen=True):
    """``key_add_request`` (copy-id): authorize this connection's key for its user."""

    comment: Annotated[str, msgspec.Meta(max_length=200, pattern=r"^[^\x00-\x1f]*$")] = ""


# A CURVE public key in Z85 (its checksum-free form is checked by the worker: ssd.keys.is_valid_public_key).
PublicKey = Annotated[str, msgspec.Meta(min_length=40, max_length=40, pattern=r"^[!#-&(-+\--:<-\]^a-{}]+$")]


class KeyRemoveRequest(RequestContent, frozen=True):
    """``key_remove_request`` (revoke-id): remove *key* (default: this connection's) from its user's own
    authorized keys, or with *all* every key there; *dry_run* only tells whether they are listed."""

    key: PublicKey | None = None
    all: bool = False
    dry_run: bool = False


class EnvListRequest(RequestContent, frozen=True):
    """``env_list_request``: the user's environments."""


class EnvInfoRequest(RequestContent, frozen=True):
    """``env_info_request``: one environment, by name or prefix."""

    env: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


Spec = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Tool = Literal["auto", "pip", "venv", "conda", "mamba", "micromamba"]


class EnvCreateRequest(RequestContent, frozen=True):
    """``env_create_request``: a new environment; answered at once with an operation id."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    python: Annotated[str, msgspec.Meta(max_length=20)] | None = None
    packages: Annotated[list[Spec], msgspec.Meta(max_length=50)] = []
    tool: Tool = "auto"
    # Convenience: also install the spyder-kernels that this Spyder version needs.
    spyder: Annotated[str, msgspec.Meta(max_length=20)] | None = None


class EnvInstallRequest(RequestContent, frozen=True):
    """``env_install_request``: install packages into a discovered, writable environment."""

    env: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    packages: Annotated[list[Spec], msgspec.Meta(max_length=50)] = []
    tool: Tool = "auto"
    spyder: Annotated[str, msgspec.Meta(max_length=20)] | None = None


class EnvRemoveRequest(RequestContent, frozen=True):
    """``env_remove_request``: remove a discovered, writable environment."""

    env: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class EnvCancelRequest(RequestContent, frozen=True):
    """``env_cancel_request``: stop a running operation."""

    operation: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


EnvName = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
KernelId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")]
KernelKind = Literal["spyder", "ipykernel"]
_SlurmWord = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9:_.+-]+$")]


class SlurmOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """A Slurm kernel's resources (None: the host's default): ``ssd.kernels.slurm.SlurmRequest``'s shape."""

    partition: _SlurmWord | None = None
    time: _SlurmWord | None = None
    cpus: Annotated[int, msgspec.Meta(ge=1, le=100000)] | None = None
    mem: _SlurmWord | None = None
    gpus: Annotated[int, msgspec.Meta(ge=0, le=1024)] | None = None


KERNEL_KINDS: tuple[KernelKind, ...] = get_args(KernelKind)  # the one list of kernel kinds
VarName = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
VarValue = Annotated[str, msgspec.Meta(max_length=4096, pattern=r"^[^\x00]*$")]


LeaseSeconds = Annotated[float, msgspec.Meta(ge=1, le=86400)]


class KernelStartRequest(RequestContent, frozen=True):
    """``kernel_start_request``: start a kernel in an environment; answered once it replied to kernel_info."""

    env: EnvName
    kind: KernelKind = "spyder"
    cwd: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)] | None = None
    env_vars: Annotated[dict[VarName, VarValue], msgspec.Meta(max_length=64)] = {}
    name: Annotated[str, msgspec.Meta(max_length=100, pattern=r"^[^\x00-\x1f]*$")] = ""
    # What the frontend shows it for: a notebook's path (the provisioner), "spyder" (the plugin); ssd-ctl kernels.
    label: Annotated[str, msgspec.Meta(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")] = ""
    # Start it again (same id and ports) when it dies without being asked to.
    restart: bool = False
    # Seconds the kernel is held for its frontend, which renews the lease (kernel_lease); once it lapsed and no
    # client is connected, the host shuts the kernel down after its kernels.lease_grace. None: no lease.
    lease: LeaseSeconds | None = None
    # Where it runs: on this host, or in a Slurm job with these resources (checked against [slurm]).
    placement: Literal["local", "slurm"] = "local"
    slurm: SlurmOptions | None = None
    # The client's name for this start, echoed in its kernel's kernel_state events and kernel_list entry: how
    # a client follows its own kernel before the reply (which waits for a Slurm job), among other starts.
    start_token: Annotated[str, msgspec.Meta(max_length=64, pattern=r"^[A-Za-z0-9_-]*$")] = ""


class KernelListRequest(RequestContent, frozen=True):
    """``kernel_list_request``: the user's own kernels (or, with *spares*, their spare kernels alone)."""

    spares: bool = False


class SparesRequest(RequestContent, frozen=True):
    """``spares_request``: how many spare kernels to keep ready in an environment (capped by kernels.spares)."""

    env: EnvName
    count: Annotated[int, msgspec.Meta(ge=0, le=16)]


class KernelInfoRequest(RequestContent, frozen=True):
    """``kernel_info_request`` (to ssd, not to a kernel): one kernel with its connection info."""

    kernel: KernelId


class KernelInterruptRequest(RequestContent, frozen=True):
    """``kernel_interrupt_request``: interrupt the running cell (the kernelspec's mode, or the one given)."""

    kernel: KernelId
    mode: Literal["signal", "message"] | None = None


class KernelRestartRequest(RequestContent, frozen=True):
    """``kernel_restart_request``: a new process with the same id, ports and key."""

    kernel: KernelId


class KernelShutdownRequest(RequestContent, frozen=True):
    """``kernel_shutdown_request``: polite shutdown, forced after the grace period."""

    kernel: KernelId
    # Jupyter's kill before a restart: stop the process at once but keep the kernel listed as dead,
    # restartable in place (same ports and key) by kernel_restart.
    keep: bool = False


class KernelLeaseRequest(RequestContent, frozen=True):
    """``kernel_lease_request``: renew a kernel's lease (for *lease* seconds, default its own), or detach it."""

    kernel: KernelId
    action: Literal["renew", "detach"] = "renew"
    lease: LeaseSeconds | None = None


C = TypeVar("C", bound=RequestContent)


class ContentError(ValueError):
    """Content did not match its request type; the message names the field."""


def parse_content(content: Any, kind: type[C]) -> C:
    """Convert raw content into *kind*, or raise ContentError."""
    try:
        return msgspec.convert(content, kind)
    except msgspec.ValidationError as exc:
        raise ContentError(str(exc).replace("`$.", "`").replace("`$`", "content")) from None


def decode_content(data: bytes, kind: type[C]) -> C:
    """Decode JSON content into *kind* (a worker reading the broker's encoding), or raise ContentError."""
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise ContentError(str(exc).replace("`$.", "`").replace("`$`", "content")) from None
