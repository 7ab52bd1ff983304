"""What a kernelspec's ``ssd-provisioner`` config (or ``c.SSDProvisioner`` in Jupyter's config) may set: the
host, environment, kind and user, the kernel's folder, its lease, and for a kernel in a Slurm job its resources
and how long it may wait in Slurm's queue."""

from __future__ import annotations

from typing import Any

from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase
from traitlets import Float, Instance, Unicode

__all__ = ["ProvisionerSettings"]


class ProvisionerSettings(KernelProvisionerBase):
    """SSDProvisioner's config: what a kernelspec's ``config`` (or ``c.SSDProvisioner``) may set."""

    host = Unicode("", config=True, help="The ssd host: HOST[:PORT], an address or a discovered name.")
    env = Unicode("", config=True, help="The environment on the host: its prefix (or a name only it has).")
    kind = Unicode("ipykernel", config=True, help="The kernel: ipykernel or spyder (spyder-kernels).")
    user = Unicode("", config=True, help="The user on the host to log in as by key (default: your user name here).")
    cwd = Unicode(
        "",
        config=True,
        help="The kernel's working folder on the host (default: the notebook's folder where the user has it "
        "there, as with a shared home; else the user's home).",
    )
    lease = Float(
        30.0,
        config=True,
        help="Seconds the host holds the kernel per renewal (renewed every third of it): once this Jupyter is gone, "
        "the host shuts the kernel down after the lease and its grace (kernels.lease_grace). 0: no lease.",
    )
    slurm = Instance(
        dict,
        allow_none=True,
        config=True,
        help="Run the kernel in a Slurm job of the host (a cluster's login node) with these resources: partition, "
        "time, cpus, mem, gpus (each unset: the host's default). None: on the host itself.",
    )
    queue_timeout = Float(
        3600.0,
        config=True,
        help="Seconds a kernel's Slurm job may wait in Slurm's queue; then the job is cancelled and the start fails "
        "naming Slurm's reason. 0: as long as Slurm holds it.",
    )

    def __init__(self, **kwargs: Any) -> None:
        # A kernelspec written by a newer ssd may carry config keys this version does not know:
        # traitlets would turn them into a DeprecationWarning, so they are dropped with a log line.
        names = set(self.class_trait_names())
        unknown = sorted(key for key in kwargs if key not in names)
        super().__init__(**{key: value for key, value in kwargs.items() if key in names})
        if unknown:
            self.log.warning("ssd-provisioner: ignored unknown kernelspec config keys %s", ", ".join(unknown))
