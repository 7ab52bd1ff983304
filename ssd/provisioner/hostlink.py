"""The provisioner's calls to the host: each on a fresh connection, logging in by key when the session is gone.

Every call opens its own short connection, so the provisioner works in
whichever event loop jupyter_client runs it. Authentication never prompts (a
notebook server has no terminal).
"""

from __future__ import annotations

import getpass
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from jupyter_client.connect import KernelConnectionInfo

from ssd.client import AsyncClient, HostSpec, parse_host
from ssd.client.discovery import async_resolve_name
from ssd.client.hostspec import is_address
from ssd.errors import ErrorCode, RemoteError, SSDError, key_not_authorized, translate

__all__ = ["call_host", "for_kernel_manager", "resolve_host"]

T = TypeVar("T")


async def call_host(spec: HostSpec, host: str, user: str, operation: Callable[[AsyncClient], Awaitable[T]]) -> T:
    """Run *operation* on a fresh connection to *spec*, logging in as *user* by key once if needed.

    Raises only SSDError: zmq, OS and timeout errors are translated here (ssd.errors.translate).
    """
    try:
        async with AsyncClient(spec) as client:
            try:
                return await operation(client)
            except RemoteError as exc:
                if exc.code != ErrorCode.NOT_AUTHORIZED:
                    raise
            await _login(client, host, user or getpass.getuser())
            return await operation(client)
    except SSDError:
        raise
    except Exception as exc:
        error = translate(exc)
        if error is None:
            raise
        raise error from exc


async def _login(client: AsyncClient, host: str, user: str) -> None:
    with key_not_authorized(
        f"This client's key is not authorized for {user} there and has no session.\n"
        f"Authorize it once with:\n    ssd-ctl login {host} --user {user} && ssd-ctl copy-id {host}"
    ):
        await client.login(user)


async def resolve_host(text: str) -> HostSpec:
    """HOST as ssd-ctl reads it, without blocking the event loop (mDNS for bare unknown names)."""
    try:
        spec = parse_host(text)
    except ValueError as exc:
        raise SSDError(f"the kernelspec's host is invalid: {exc}", code=ErrorCode.KERNELSPEC_INVALID) from None
    if spec.address is not None or ":" in text or is_address(spec.host):
        return spec
    return await async_resolve_name(spec.host) or spec


def for_kernel_manager(info: dict[str, Any]) -> KernelConnectionInfo:
    """Connection info as KernelManager compares it with its session's: the key as bytes (despite the type)."""
    result = dict(info)
    if isinstance(result.get("key"), str):
        result["key"] = result["key"].encode()
    return cast(KernelConnectionInfo, result)
