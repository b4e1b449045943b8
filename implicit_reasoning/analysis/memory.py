"""Memory of a benchmark block: CUDA's allocator peak, or on CPU the kernel's peak RSS reset per block.

On Linux, writing "5" to /proc/self/clear_refs resets VmHWM (the peak resident set) to the current
RSS, so a block's peak RSS minus its starting RSS is the memory that block added at its worst moment,
even with both benchmarked sides in one process. Freed heap pages are handed back first (gc, then
glibc's ``malloc_trim``) so that one side's freed memory does not hide the next side's growth.
"""

from __future__ import annotations

import ctypes
import gc
import resource
import sys


def rss_mb() -> float:
    """Peak resident set size of this process so far (MB; Linux reports KB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def status_mb(field_name: str) -> float | None:
    """A memory line of /proc/self/status in MB (VmRSS: now, VmHWM: peak since the last reset), None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def start_cpu_peak() -> float | None:
    """Begin one block's CPU peak: free what can be freed, reset the kernel's peak RSS (VmHWM) to the current
    RSS and return that RSS (MB); None where the peak cannot be reset (not Linux, no /proc write access)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc keeps freed heap pages resident otherwise
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # "5": reset the peak resident set size to the current one (Linux >= 4.0)
    except OSError:
        return None
    return status_mb("VmRSS")
