"""zooserve.runtimes.allocator: after a big buffer is freed, the next one still comes from mmap
(given back to the OS when freed) rather than from a heap that keeps it. Each case runs in a
fresh interpreter: malloc settings are process-wide and glibc's adaptive threshold moves once."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

FRAME = 1280 * 720 * 3  # one decoded 720p frame, RGB: above the default 1 MB threshold

PROBE = f"""
import ctypes
from zooserve.runtimes.allocator import pin_mmap_threshold

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena ordblks smblks hblks hblkhd usmblks "
                                              "fsmblks uordblks fordblks keepcost").split()]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
pinned = pin_mmap_threshold()
first = bytearray({FRAME})
del first  # glibc now raises its threshold above a frame's size, unless it is pinned
before = libc.mallinfo2().hblkhd
second = bytearray({FRAME})
print(pinned, libc.mallinfo2().hblkhd - before >= {FRAME})
"""


def has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not has_mallinfo2(), reason="needs glibc >= 2.33 (mallinfo2)")
@pytest.mark.parametrize(
    ("setting", "expected"),
    [(None, "True True"), ("4096", "True False"), ("0", "False False")],
)
def test_a_freed_frame_does_not_move_the_next_one_into_the_heap(
    setting: str | None, expected: str
) -> None:
    """Default 1 MB: the second frame is mmapped. 4 MB (above a frame) and 0 (glibc's
    adaptive threshold, what the server had before) put it on the heap."""
    env = {"ZOOSERVE_MALLOC_MMAP_THRESHOLD_KB": setting} if setting is not None else {}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == expected
