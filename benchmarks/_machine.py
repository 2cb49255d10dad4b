"""What every benchmark reports about the machine it ran on."""

from __future__ import annotations

import platform


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def fresh_memory_costs(directory: str, mb: int = 128) -> dict[str, float]:
    """What first touches of memory cost here, against touching it again.

    Some VMs (Firecracker with a virtio balloon and free page reporting, like the machines
    these benchmarks ran on) hand freed guest pages back to the host, so the first touch
    of fresh memory faults into the hypervisor: it is charged to the thread as CPU time.
    A file's new data lands in fresh page-cache pages the same way, so this slows every
    staged file and table text a log writes, however little work is done per byte.

    Returns:
        ``fresh_page_us``/``touched_page_us``: µs per 4 KiB page, first and second touch
        of an anonymous mapping; ``new_file_mb_s``/``overwrite_mb_s``: writing ``mb`` MiB
        to a new file, then over the same bytes of it.
    """
    import mmap
    import os
    import time

    import numpy as np

    pages = (mb << 20) // 4096
    region = mmap.mmap(-1, mb << 20)
    view = np.frombuffer(region, np.uint8)
    times = []
    for value in (1, 2):  # one byte a page
        start = time.perf_counter()
        view[::4096] = value
        times.append((time.perf_counter() - start) / pages * 1e6)
    del view
    region.close()
    data = os.urandom(1 << 20)
    path = os.path.join(directory, f"fresh-memory-probe-{os.getpid()}")
    rates = []
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for _ in range(2):
                start = time.perf_counter()
                for i in range(mb):
                    os.pwrite(fd, data, i << 20)
                rates.append(mb / (time.perf_counter() - start))
        finally:
            os.close(fd)
    finally:
        os.remove(path)
    return {
        "fresh_page_us": round(times[0], 3),
        "touched_page_us": round(times[1], 3),
        "new_file_mb_s": round(rates[0]),
        "overwrite_mb_s": round(rates[1]),
    }
