"""Process-wide settings of a compute process: thread counts and reuse of freed memory.

Called once at the start of a process that runs the pipeline (the workflow's job scripts,
``cxcr4score score`` and ``cxcr4score bench``), never on import: they change the whole
process, not just this package.
"""

from __future__ import annotations

import ctypes
import sys

#: glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Allocations up to this size come from the heap, and this much freed memory is kept.
HEAP_LIMIT_BYTES = 1 << 30


def set_threads(n):
    """Numba's and OpenCV's thread counts (a job's ``threads:``), clamped to what Numba allows.

    Returns
    -------
    int
        The count set.
    """
    import cv2
    import numba

    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    cv2.setNumThreads(n)
    return n


def keep_freed_memory():
    """Serve large arrays from the malloc heap and keep freed memory for reuse (glibc only).

    By default glibc maps every allocation above a threshold that grows to at most 32 MB
    straight from the kernel and unmaps it when freed, so each new full-tile plane (64 MB
    at 4096^2 float32) arrives as fresh pages the kernel must zero, one fault per page. The
    pipeline allocates a dozen such planes per tile: on a 4096^2 tile, deconvolution took
    49 ms instead of 21 and the whole chain 0.94 s instead of 0.76. Freed memory is reused
    instead, and the process keeps its memory until it ends (a workflow job handles one
    chunk; ``cxcr4score score`` reuses it from one image to the next). Reuse can fragment the heap where array sizes vary: the peak resident size of
    our chain on a 4096^2 tile went from 831 to 843 MB, that of the scikit-image reference
    from 1614 to 1848 MB.

    Returns
    -------
    bool
        Whether the allocator took both settings (False off glibc, e.g. macOS or musl, or
        on a glibc that caps the mapping threshold at 32 MB).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    # Older glibc refuses a mapping threshold above 32 MB; then at least arrays up to that
    # size are reused. Keeping freed memory is set either way.
    mapped = bool(mallopt(_M_MMAP_THRESHOLD, HEAP_LIMIT_BYTES)) or bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20))
    kept = bool(mallopt(_M_TRIM_THRESHOLD, HEAP_LIMIT_BYTES))
    return mapped and kept
