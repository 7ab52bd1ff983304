"""A process's memory as tests measure it: resident now, the kernel's high-water mark, a sampled peak."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Peak", "peak_rss", "rss", "sampled_peak"]


def rss(pid: int) -> int:
    """Resident bytes of *pid* now."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss(pid: int) -> int:
    """The highest resident bytes *pid* ever had (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) << 10
    raise AssertionError("no VmHWM")


@dataclass
class Peak:
    """The highest value a sampler saw."""

    value: int


@contextmanager
def sampled_peak(sample: Callable[[], int], interval: float = 0.005) -> Iterator[Peak]:
    """Call *sample* on a thread every *interval* seconds while the block runs; the peak it saw."""
    peak = Peak(sample())
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval):
            peak.value = max(peak.value, sample())

    sampler = threading.Thread(target=run, name="memory-sampler")
    sampler.start()
    try:
        yield peak
    finally:
        stop.set()
        sampler.join()
