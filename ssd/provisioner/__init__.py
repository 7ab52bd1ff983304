"""The Jupyter kernel provisioner: notebooks and ``jupyter console`` on kernels an ssd daemon runs.

A kernelspec written by ``ssd-ctl kernelspec install|sync`` names this class
(entry point ``ssd-provisioner`` in ``jupyter_client.kernel_provisioners``)
with its config: ``host``, ``env`` (a prefix on that host), ``kind``
(``ipykernel`` or ``spyder``) and ``user``. jupyter_client's KernelManager
calls it like this:

- start: ``pre_launch`` -> ``launch_kernel`` (``kernel_start`` on the host) -> ``post_launch``;
- is the kernel alive (the restarter, every few seconds; shutdowns, every 0.1 s): ``poll``;
- interrupt: ``send_signal(SIGINT)`` -> ``kernel_interrupt`` (the kernelspec's
  ``interrupt_mode`` is ``signal``, so interrupts go through the daemon, which
  signals the kernel's process group or asks its control channel as the
  environment's own kernelspec says);
- shutdown: the KernelManager sends ``shutdown_request`` to the kernel itself,
  then ``shutdown_requested`` -> ``poll``/``wait`` -> ``terminate``/``kill``
  (``kernel_shutdown``: polite, then forced, on the host) -> ``cleanup``, which
  makes sure nothing is left running there;
- restart: the same shutdown with ``restart=True``, then ``launch_kernel``.
  Jupyter's restart keeps the kernel's ports and key (its clients stay
  connected), so ``shutdown_requested(restart=True)`` (or ``kill``/``terminate``
  with ``restart=True``) asks for ``kernel_restart`` on the host: same ssd
  kernel id, same ports and key, a new process. ``restart_kernel(now=True)``
  (also the restarter's after a crash) kills without saying that a restart
  follows, then calls ``cleanup(restart=True)``: the kill leaves the kernel
  listed as dead on the host, and that cleanup restarts it in place. Only if
  the host forgot the kernel does ``launch_kernel`` start a new one (new ports);
- lease: the kernel is started with a lease that a thread renews (``lease``
  seconds, renewed every third of it) until ``cleanup``; when this Jupyter
  ends however it ends, the renewals stop and the host shuts the kernel down
  after the lease and its grace (``kernels.lease_grace``), as a local kernel
  dies with its server. ``ssd-ctl detach HOST KERNEL`` keeps it running.

Transport: the connection info handed to the KernelManager is always what
``AsyncClient.connection_info`` says for this client: the daemon's CURVE relay
with ``curve_publickey``/``curve_secretkey`` (jupyter_client 8.9+ reads them),
or the classic keys of a kernel that binds the host's address itself on a
host configured for plain LAN transport.

Authentication never prompts (a notebook server has no terminal): the
client's key must have a live session on the host or be authorized there
(``ssd-ctl copy-id``), in which case it logs in by key. Anything else fails
the start at once with the command that fixes it, on a line of its own
(``ssd.kernelerrors``: Jupyter Server answers it in the REST reply and Lab's
dialog shows it; a failed restart is logged once). Every call opens its own
short connection, so the provisioner works in whichever event loop
jupyter_client runs it.
"""

from ssd.provisioner.kernel import SSDProvisioner
from ssd.provisioner.spec import KINDS, PROVISIONER_NAME

__all__ = ["KINDS", "PROVISIONER_NAME", "SSDProvisioner"]
