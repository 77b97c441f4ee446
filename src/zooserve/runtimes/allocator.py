"""glibc malloc settings for a long-running server, applied once at start-up.

glibc serves a block of 128 KB or more with mmap and unmaps it when freed, but each such free
also raises the mmap threshold to that block's size (up to 32 MB). After the first big buffer
(a decoded frame, an activation map) is freed, frames, crops and tensors of that size come from
the per-thread heaps instead, where they fragment and stay: a 800-request soak (bench/soak.py)
grew the server's RSS by ~380-400 MB. Pinning the threshold (which also stops its adjustment)
keeps big, short-lived buffers in mmap. Where to pin it is a trade: at 128 KB every tensor of a
forward pass is mapped and unmapped (page faults: a 35 ms YOLO request took 50 ms); at 1 MB the
soak grew +75 MB (128 KB: +67 MB) and the request took 38 ms (glibc's own: 37 ms) — measured
on a quiet 2-core machine, bench/README.md "Soak".

Setting: `ZOOSERVE_MALLOC_MMAP_THRESHOLD_KB` (default 1024; 0 leaves glibc's adaptive threshold).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger("zooserve.runtimes.allocator")

#: mallopt parameter number of M_MMAP_THRESHOLD (glibc malloc.h).
M_MMAP_THRESHOLD = -3
DEFAULT_MMAP_THRESHOLD_KB = 1024
SETTING = "ZOOSERVE_MALLOC_MMAP_THRESHOLD_KB"


def mmap_threshold_kb() -> int:
    """The configured threshold in KB; 0 means leave glibc's adaptive one alone."""
    raw = os.environ.get(SETTING, "").strip()
    try:
        value = int(raw) if raw else DEFAULT_MMAP_THRESHOLD_KB
    except ValueError:
        log.warning(
            "%s=%r is not a whole number of KB: using %d", SETTING, raw, DEFAULT_MMAP_THRESHOLD_KB
        )
        return DEFAULT_MMAP_THRESHOLD_KB
    return max(0, value)


def pin_mmap_threshold(kb: int | None = None) -> bool:
    """Fix glibc's mmap threshold at `kb` (default: the setting); False where there is no
    glibc (musl, macOS) or nothing was asked. Safe to call more than once."""
    kb = mmap_threshold_kb() if kb is None else kb
    if kb <= 0:
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, kb * 1024))
