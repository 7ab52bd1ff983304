"""SSDProvisioner: the kernel provisioner jupyter_client calls (how and when: ``ssd.provisioner``)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from jupyter_client.connect import KernelConnectionInfo

from ssd.client import AsyncClient, HostSpec
from ssd.client.lease import LeaseKeeper, Trouble
from ssd.errors import ErrorCode, RemoteError, SSDError, TransportError
from ssd.kernelerrors import KernelStartError
from ssd.provisioner.failures import explained, warning
from ssd.provisioner.hostlink import call_host, for_kernel_manager, resolve_host
from ssd.provisioner.settings import ProvisionerSettings
from ssd.provisioner.spec import check_config, check_slurm
from ssd.provisioner.starting import Starter, StartRequest
from ssd.replies import KernelDescription

__all__ = ["SSDProvisioner"]
T = TypeVar("T")

_GONE = ("dead", "gone")
_POLL_INTERVAL = 0.5  # seconds between polls while wait() waits for a remote kernel to end


class SSDProvisioner(ProvisionerSettings):
    """A kernel started, watched and stopped by the ssd daemon on ``host``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.remote_id = ""  # the kernel's id on the host (not Jupyter's kernel_id)
        self._running = False  # has_process: from a launch until wait() saw the kernel end
        self._exit_code: int | None = None  # set once the remote kernel is known to have ended
        # The host no longer lists it (shut down, or forgotten): nothing left to stop there. A kernel that
        # died stays listed for a while, restartable in place, and must still be shut down to go.
        self._gone_on_host = False
        self._replaced = False  # restarted in place by the daemon: launch_kernel reuses it
        self._restart_failed = False  # the host could not restart it in place: not asked twice per restart
        self._restart_failure: KernelStartError | None = None  # why, said once by launch_kernel
        self._env_vars: dict[str, str] = {}
        self._notebook_dir = ""  # the notebook's folder here, tried on the host when the spec names no cwd
        self._label = ""  # the notebook's path (Jupyter Server's JPY_SESSION_NAME), shown by ssd-ctl kernels
        self._spec: HostSpec | None = None
        self._starter: Starter | None = None  # the last start: a shutdown while its job is queued cancels it
        self._launching: asyncio.Task[Any] | None = None  # the task in launch_kernel, while it runs
        self._trouble = Trouble(self.log)
        self._keeper = LeaseKeeper(self._renew_lease, max(self.lease / 3, 0.2), self._report)

    # -- start --------------------------------------------------------------------------

    @property
    def has_process(self) -> bool:
        """True from a launch until ``wait`` saw the remote kernel end (KernelManager.has_kernel)."""
        return self._running

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """Check the kernelspec's config and keep its ``env`` stanza (KernelManager.pre_start_kernel)."""
        try:
            check_config(self.host, self.env, self.kind)
            check_slurm(self.slurm, self.host)
        except Exception as exc:
            raise self._explained(exc) from None
        kwargs = await super().pre_launch(**kwargs)
        environ = kwargs["env"]
        # Only the kernelspec's own variables travel; the host decides which it accepts.
        self._env_vars = {name: str(environ[name]) for name in self.kernel_spec.env if name in environ}
        self._notebook_dir = str(kwargs.get("cwd") or "")
        self._label = str(environ.get("JPY_SESSION_NAME") or "")[:200]
        kwargs.pop("extra_arguments", None)
        return {**kwargs, "cmd": list(self.kernel_spec.argv)}

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        """Start the kernel on the host (or take the one restarted in place); return its connection info.

        Called by KernelManager.launch_kernel during start_kernel and restart_kernel.
        Errors a person can act on (unreachable, untrusted, not authorized,
        environment gone, kernel package missing) are raised with the fix.
        """
        restarting, failed = self._replaced, self._restart_failure
        self._launching = asyncio.current_task()
        try:
            kernel, connection = await self._call(self._attach if self._replaced and self.remote_id else self._start)
        except Exception as exc:
            # The KernelManager logs this once (and Jupyter Server answers it); a cause chain would repeat it.
            raise self._explained(exc, "restart a kernel" if failed else "start a kernel") from None
        finally:
            self._launching = None
            self._replaced = self._restart_failed = False
            self._restart_failure = None
        if failed is not None and not restarting:
            self.log.warning("%s\nA new kernel was started instead (new ports).", failed)
        self.remote_id = kernel.kernel_id
        self._running = True
        self._exit_code = None
        self._gone_on_host = False
        self.connection_info = for_kernel_manager(connection)
        self.log.info("ssd-provisioner: kernel %s in %s on %s", self.remote_id, self.env, self.host)
        if kernel.lease:
            self._keep_lease()
        return self.connection_info

    async def _start(self, client: AsyncClient) -> tuple[KernelDescription, dict[str, Any]]:
        """``kernel_start`` (``ssd.provisioner.starting``): on the host, or in a Slurm job that may wait queued."""
        self._starter = Starter(self._start_request(), self.log)
        return await self._starter.start(client)

    def _start_request(self) -> StartRequest:
        return StartRequest(
            host=self.host,
            env=self.env,
            kind=self.kind,
            cwd=self.cwd,
            notebook_dir=self._notebook_dir,
            label=self._label,
            name=f"jupyter {self.kernel_spec.display_name}"[:100] if self.kernel_spec else "jupyter",
            lease=self.lease,
            env_vars=self._env_vars,
            slurm=dict(self.slurm) if self.slurm is not None else None,
            queue_timeout=self.queue_timeout,
        )

    async def _attach(self, client: AsyncClient) -> tuple[KernelDescription, dict[str, Any]]:
        """The kernel the host restarted in place, with its connection info as this client reaches it."""
        reply = await client.kernel_info(self.remote_id)
        return reply.kernel, client.connection_info(reply.connection)

    def _explained(self, exc: BaseException, doing: str = "start a kernel") -> KernelStartError:
        return explained(exc, host=self.host, env=self.env, doing=doing)

    # -- state --------------------------------------------------------------------------

    async def poll(self) -> int | None:
        """None while the kernel runs on the host, else an exit code (KernelManager.is_alive).

        A host that cannot be reached counts as running: a network blip must
        not make Jupyter's restarter start a second kernel.
        """
        shutting_down = self._shutting_down()
        code = await self._poll_host()
        if code is not None and not shutting_down and self._shutting_down():
            # A shutdown began while the host was asked: the answer may be that shutdown's work, and
            # jupyter_client's async restarter (unlike its sync one) would restart the kernel on it.
            # This poll answers as of when it asked; the shutdown's own polls see the end.
            return None
        return code

    def _shutting_down(self) -> bool:
        """Whether the kernel manager that owns this provisioner is shutting the kernel down."""
        return bool(getattr(self.parent, "shutting_down", False))

    async def _poll_host(self) -> int | None:
        """poll's answer from the host (or what is already known)."""
        if self._exit_code is not None or self._replaced or not self.remote_id:
            return 0 if self._exit_code is None else self._exit_code
        try:
            reply = await self._call(lambda c: c.kernel_info(self.remote_id))
        except SSDError as exc:
            if exc.code != ErrorCode.KERNEL_NOT_FOUND:
                self._report(exc)  # unreachable, not authorized, untrusted: said once, not every poll
                return None
            self._exit_code = 0  # shut down and forgotten by the host; its exit code went with it
            self._gone_on_host = True
            return self._exit_code
        self._report(None)
        if reply.kernel.lease:
            self._keep_lease()  # a no-op while it renews; after load_provisioner_info, from the first poll on
        if reply.kernel.state in _GONE:
            self._exit_code = 1
            return self._exit_code
        return None

    async def wait(self) -> int | None:
        """Wait until the kernel has ended; the caller bounds this with a timeout (KernelManager)."""
        while (code := await self.poll()) is None:  # noqa: ASYNC110 (the state is on another machine)
            await asyncio.sleep(_POLL_INTERVAL)
        self._running = False
        return code

    # -- signals and stopping -----------------------------------------------------------

    async def send_signal(self, signum: int) -> None:
        """SIGINT interrupts through the daemon; SIGTERM, SIGKILL, SIGQUIT, SIGHUP shut the kernel down."""
        if signum == 0 or self._exit_code is not None or not self.remote_id:
            return
        if signum == signal.SIGINT:
            try:
                await self._call(lambda c: c.kernel_interrupt(self.remote_id))
            except RemoteError as exc:
                if exc.code not in (ErrorCode.KERNEL_NOT_FOUND, ErrorCode.KERNEL_DEAD):
                    raise
            return
        if signum in (signal.SIGTERM, signal.SIGKILL, signal.SIGQUIT, signal.SIGHUP):
            await self._shutdown_remote()
            return
        raise SSDError(
            f"ssd cannot send {signal.Signals(signum).name} to a remote kernel: SIGINT interrupts it, "
            "SIGTERM or SIGKILL shuts it down",
            code=ErrorCode.UNSUPPORTED_SIGNAL,
        )

    async def shutdown_requested(self, restart: bool = False) -> None:
        """The KernelManager just sent shutdown_request to the kernel: for a restart, restart it in place."""
        if restart:
            await self._restart_in_place()

    async def terminate(self, restart: bool = False) -> None:
        """The kernel did not exit in time (KernelManager.finish_shutdown): stop it on the host."""
        await self._stop(restart)

    async def kill(self, restart: bool = False) -> None:
        """Stop the kernel now (KernelManager.kill_kernel, ``shutdown_kernel(now=True)``).

        ``restart_kernel(now=True)`` (also the restarter's, after a crash) kills with ``restart=False`` and
        only tells ``cleanup`` that a restart follows: the host kills the process but keeps the kernel listed
        as dead, so that ``cleanup(restart=True)`` can restart it in place and ``cleanup()`` shuts it down.
        """
        if restart:
            await self._stop(restart)
            return
        if self._replaced or self._gone_on_host or self._exit_code is not None or not self.remote_id:
            return  # nothing runs there (a kernel that died is still listed, restartable)
        try:
            await self._call(lambda c: c.kernel_shutdown(self.remote_id, keep=True))
        except RemoteError as exc:
            if exc.code == ErrorCode.KERNEL_NOT_FOUND:
                self._exit_code, self._gone_on_host = 0, True
            elif exc.code == ErrorCode.BAD_REQUEST:  # an older ssd, which cannot keep a killed kernel listed
                await self._shutdown_remote()
            elif exc.code != ErrorCode.KERNEL_BUSY:
                raise
        except TransportError as exc:
            self._report(exc)  # cleanup() tries to shut it down once more, and says so if it cannot

    async def _stop(self, restart: bool) -> None:
        if self._replaced:
            return
        if restart and await self._restart_in_place():
            return
        await self._shutdown_remote()

    async def _restart_in_place(self) -> bool:
        """``kernel_restart`` on the host: same id, ports and key; False if the kernel could not be restarted."""
        if self._replaced or self._restart_failed or self._gone_on_host or not self.remote_id:
            return self._replaced
        try:
            # A kernel that already exited (Jupyter's shutdown_request reached it first) is still listed
            # as dead by the host, which restarts it on the same ports.
            await self._call(lambda c: c.kernel_restart(self.remote_id))
        except SSDError as exc:
            # kernel_not_found: the host forgot it; launch_kernel starts a new one. Either way, launch_kernel
            # says why (once): its own error if it fails too, else this one.
            self._restart_failure = self._explained(exc, f"restart kernel {self.remote_id} in place")
            self._restart_failed = True
            if exc.code == ErrorCode.KERNEL_NOT_FOUND:
                self._exit_code = 0
                self._gone_on_host = True
            return False
        self._replaced = True
        return True

    async def _shutdown_remote(self) -> None:
        """``kernel_shutdown`` (polite, then forced, on the host); a kernel already gone is fine."""
        if self._gone_on_host or not self.remote_id:
            return
        try:
            code = (await self._call(lambda c: c.kernel_shutdown(self.remote_id))).exit_code
        except RemoteError as exc:
            if exc.code == ErrorCode.KERNEL_BUSY:  # already stopping there: poll() sees it go
                return
            if exc.code != ErrorCode.KERNEL_NOT_FOUND:
                raise
            code = None
        except TransportError as exc:
            self.log.warning(
                "ssd-provisioner: cannot reach %s to stop kernel %s (%s); it may still run there: ssd-ctl stop %s %s",
                *(self.host, self.remote_id, exc, self.host, self.remote_id),
            )
            return
        if self._exit_code is None:
            self._exit_code = code if code is not None else 0
        self._gone_on_host = True

    async def cleanup(self, restart: bool = False) -> None:
        """After a shutdown (KernelManager.cleanup_resources): make sure nothing is left on the host; before
        a restart, restart the (killed or crashed) kernel in place, so that its clients keep their ports."""
        if restart:
            await self._restart_in_place()
            return
        self._keeper.stop()
        await self._cancel_queued()
        await self._shutdown_remote()
        self._running = False

    async def _cancel_queued(self) -> None:
        """A shutdown while the start's Slurm job is queued: cancel the start, which cancels the job (``scancel``).

        The start's task is cancelled, not failed: jupyter_client's start and shutdown both settle the kernel
        manager's ``ready`` future, and the second to settle it raises InvalidStateError (unless cancelled).
        """
        starter, launching = self._starter, self._launching
        if starter is None or launching is None or launching is asyncio.current_task() or not starter.queue.waiting:
            return
        launching.cancel()
        await starter.queue.ended()

    # -- the lease ----------------------------------------------------------------------

    def _keep_lease(self) -> None:
        """Renew the kernel's lease from now on (while this process lives and the kernel is not cleaned up)."""
        if self.lease:
            self._keeper.start()

    async def _renew_lease(self) -> None:
        """One renewal (the keeper's thread); a kernel the host no longer has is not an error."""
        if not self.remote_id or self._gone_on_host:
            return
        try:
            await self._call(lambda c: c.kernel_lease(self.remote_id))
        except RemoteError as exc:
            if exc.code != ErrorCode.KERNEL_NOT_FOUND:
                raise

    def _report(self, exc: SSDError | None) -> None:
        """Warn once about a host that cannot be asked about the kernel; quiet until that changes."""
        self._trouble.report(*(warning(exc, self.remote_id, self.host) if exc else (None,)))

    # -- timing and persistence ---------------------------------------------------------

    def get_shutdown_wait_time(self, recommended: float = 5.0) -> float:
        """Every check crosses the network and the host grants a grace period (5 s) before forcing: 10 s at least."""
        return max(recommended, 10.0)

    def get_stable_start_time(self, recommended: float = 10.0) -> float:
        """A remote start includes connecting and the host's discovery of the environment: 30 s at least."""
        return max(recommended, 30.0)

    async def get_provisioner_info(self) -> dict[str, Any]:
        """What a restarted Jupyter server needs to find this kernel again: host, env, kind, user and its id."""
        info: dict[str, Any] = await super().get_provisioner_info()
        connection = dict(info.get("connection_info") or {})
        if isinstance(connection.get("key"), bytes):
            connection["key"] = connection["key"].decode()  # JSON-friendly; load_provisioner_info encodes it back
        info.update(
            connection_info=connection,
            host=self.host,
            env=self.env,
            kind=self.kind,
            user=self.user,
            cwd=self.cwd,
            remote_kernel_id=self.remote_id,
        )
        return info

    async def load_provisioner_info(self, provisioner_info: dict[str, Any]) -> None:
        """Take over a kernel from saved info (the inverse of ``get_provisioner_info``); ``poll`` tells if it lives."""
        await super().load_provisioner_info(provisioner_info)
        self.connection_info = for_kernel_manager(dict(self.connection_info))
        for name in ("host", "env", "kind", "user", "cwd"):
            if provisioner_info.get(name):
                setattr(self, name, str(provisioner_info[name]))
        self.remote_id = str(provisioner_info.get("remote_kernel_id") or "")
        self._running = bool(self.remote_id)
        self._exit_code = None
        self._replaced = False
        self._spec = None

    # -- talking to the daemon ----------------------------------------------------------

    async def _call(self, operation: Callable[[AsyncClient], Awaitable[T]]) -> T:
        """Run *operation* on a fresh connection to the host, logging in by key once if the session is missing."""
        return await call_host(await self._host_spec(), self.host, self.user, operation)

    async def _host_spec(self) -> HostSpec:
        """The host, with a bare name that DNS does not know looked up as a discovered ssd instance."""
        if self._spec is None:
            self._spec = await resolve_host(self.host)
        return self._spec
