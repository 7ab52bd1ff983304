"""Kernels: how they are launched, identified, talked to, relayed and recorded.

The per-user kernel worker (``ssd.workers.kernel``, running as the user) runs
them; the broker reads their records (sealing, adoption, reaping) and the
client library reuses the channel plumbing for its tunnel. Nothing here talks
to the broker.
"""
