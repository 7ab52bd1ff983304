"""Kernels: how they are launched, identified, talked to and recorded.

Used by the per-user kernel worker (``ssd.workers.kernel``), which runs as the
user; nothing here talks to the broker.
"""
