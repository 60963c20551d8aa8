"""Process-wide settings of a compute process: thread counts, reuse of freed memory, and
compiling the kernels before parallel jobs start.

Called once at the start of a process that runs the pipeline (the workflow's job scripts,
``cxcr4score score`` and ``cxcr4score bench``), never on import: they change the whole
process, not just this package.
"""

from __future__ import annotations

import ctypes
import re
import sys
from pathlib import Path

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


def own_peak_rss_kib():
    """This process's peak resident set size in KiB (``VmHWM``), or None without ``/proc``.

    Linux carries ``ru_maxrss`` over ``execve`` from the forked copy of the parent, so a
    child of a large benchmark process would report the parent's size there; ``VmHWM`` is the
    peak of the process's own address space.
    """
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmHWM:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(found.group(1)) if found else None


def keep_freed_memory():
    """Serve large arrays from the malloc heap and keep freed memory for reuse (glibc only).

    By default glibc maps every allocation above a threshold that grows to at most 32 MB
    straight from the kernel and unmaps it when freed, so each new full-tile plane (64 MB
    at 4096^2 float32) arrives as fresh pages the kernel must zero, one fault per page. The
    pipeline allocates a dozen such planes per tile, and the page faults cost about as much
    as the deconvolution itself (docs/performance.md). Freed memory is reused instead, and
    the process keeps its memory until it ends (a workflow job handles one chunk;
    ``cxcr4score score`` reuses it from one image to the next). Reuse can fragment the heap
    where array sizes vary, which raises the peak resident size a little.

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


def warm_up():
    """Compile every kernel, or load it from Numba's cache, for the types the pipeline uses.

    Run once before parallel jobs start (the workflow's ``validate_inputs`` rule), so that
    they load cached machine code instead of each compiling the same kernels at once.
    """
    import numpy as np

    from . import measure, segment, stains, tissue
    from ._kernels.resample import area_resize_kernel

    rows, cols = np.indices((96, 96))
    discs = ((rows - 30) ** 2 + (cols - 30) ** 2 <= 64) | ((rows - 30) ** 2 + (cols - 44) ** 2 <= 64)
    discs |= (rows - 70) ** 2 + (cols - 60) ** 2 <= 49
    rgb = np.repeat(np.where(discs, 90, 230).astype(np.uint8)[..., None], 3, axis=2)
    rgb[85, 10] = 0  # a speck: a tissue fragment too small to keep
    tables = stains.concentration_tables((240.0, 240.0, 240.0), stains.stain_matrix())
    hematoxylin, ridges = segment.hematoxylin_and_ridges(*stains.deconvolve(rgb, tables), mpp=0.5)
    tissue.tissue_mask(rgb, mpp=0.5, min_area_um2=20.0)
    nuclei = segment.detect_nuclei(hematoxylin, mpp=0.5)
    cells = segment.expand_cells(nuclei, mpp=0.5)
    codes, _ = segment.compartments(cells, nuclei, mpp=0.5, capture_um=2.0, ridges=ridges)
    n = int(nuclei.max())
    centroid_row, centroid_col, _, _ = measure.nucleus_shape(nuclei, n)
    measure.measure_cells(
        rgb, cells, codes, n_cells=n, tables=tables, alt_dab_table=tables[1],
        centroid_row=centroid_row, centroid_col=centroid_col, in_scope=np.ones(n + 1, bool),
    )
    area_resize_kernel(rgb, np.empty((10, 10, 3), np.uint8), 0, 0, 0, 0, 1.5, 1.5)
    return n
