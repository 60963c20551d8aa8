"""Helpers shared by the kernels: bands of rows for parallel loops, runs of equal values,
row copies and NaN-free extremes."""

import numba
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros


def row_bands(n_rows, rows_per_band):
    """First row of each band of ``rows_per_band`` rows (and ``n_rows``), as int64."""
    return np.append(np.arange(0, n_rows, max(1, rows_per_band), dtype=np.int64), np.int64(n_rows))


def thread_bands(n_rows):
    """Row bands splitting ``n_rows`` evenly over Numba's current thread count."""
    return row_bands(n_rows, -(-n_rows // max(1, numba.get_num_threads())))


def _trailing_zeros_py(word):
    """Index of the lowest set bit of a nonzero unsigned integer."""
    word = int(word)
    return (word & -word).bit_length() - 1


_trailing_zeros = _trailing_zeros_py if numba.config.DISABLE_JIT else trailing_zeros


#: Pixels whose change flags :func:`_run_starts` packs into one 64-bit word.
_RUN_WORD = 64


@numba.njit(cache=True)
def _run_starts(values, starts):
    """starts[r] = first index of the r-th run of equal values of the 1-D ``values``, and
    starts[n_runs] = len(values); returns n_runs.

    The change flags of 64 neighbours are packed into one word (a loop LLVM vectorises), and
    the set bits are taken out lowest first, so the work a pixel is a comparison and the
    work a run a few instructions. Runs are a few pixels long: a loop branching at each
    pixel on a change mispredicts about once a run, and a branch-free loop (a store and a
    comparison a pixel) waits on its own count.
    """
    n = values.shape[0]
    starts[0] = 0
    if n == 0:
        return 0
    n_runs, j = 1, 1
    while j + _RUN_WORD <= n:
        changes = np.uint64(0)
        for t in range(_RUN_WORD):
            changes |= np.uint64(values[j + t] != values[j + t - 1]) << np.uint64(t)
        while changes:
            starts[n_runs] = j + np.int64(_trailing_zeros(changes))  # int64: no float mixing
            n_runs += 1
            changes &= changes - np.uint64(1)
        j += _RUN_WORD
    for k in range(j, n):
        starts[n_runs] = k
        n_runs += values[k] != values[k - 1]
    starts[n_runs] = n
    return n_runs


@numba.njit(cache=True)
def _copy_row(source, target):
    """target[x] = source[x] for every x of two 1-D arrays of one length.

    A loop, not ``target[:] = source``: Numba compiles array-to-array slice assignment as a
    general broadcasting copy, many times slower than this loop, and the disk filter copies
    rows on every output row.
    """
    for x in range(source.shape[0]):
        target[x] = source[x]


@numba.njit(cache=True, inline="always")
def _larger(u, v):
    """max(u, v) of two numbers that are not NaN.

    A comparison, not the builtin: Numba's float ``max`` and ``min`` also order NaN, which
    keeps LLVM from using vector max and min instructions.
    """
    return u if u > v else v


@numba.njit(cache=True, inline="always")
def _smaller(u, v):
    """min(u, v) of two numbers that are not NaN (see :func:`_larger`)."""
    return u if u < v else v
