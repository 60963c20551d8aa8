"""Numba thread counts in tests: run a block at a given count, and skip a comparison of one
thread with two where only one is available (it would compare one thread with itself)."""

import contextlib

import numba
import pytest

#: Thread counts a test can run at here: 1, and 2 where Numba has two.
THREAD_COUNTS = (1, 2) if numba.config.NUMBA_NUM_THREADS >= 2 else (1,)

#: For tests whose point is that 1 and 2 threads agree.
needs_two_threads = pytest.mark.skipif(
    numba.config.NUMBA_NUM_THREADS < 2,
    reason=f"NUMBA_NUM_THREADS is {numba.config.NUMBA_NUM_THREADS}: 1 and 2 threads cannot be compared",
)


@contextlib.contextmanager
def numba_threads(n):
    """Run the block with ``n`` Numba threads, then restore the previous count."""
    before = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(before)
