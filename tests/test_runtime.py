"""Process-wide settings (cxcr4score.runtime), each checked in a fresh process."""

import subprocess
import sys

import pytest

from cxcr4score import runtime

# Page faults of allocating, writing and freeing a 64 MB array, the second time round.
_FAULTS = """
import resource, sys
import numpy as np
from cxcr4score import runtime
if sys.argv[1] == "keep":
    assert runtime.keep_freed_memory()
for _ in range(2):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    plane = np.empty(16 * 2**20, np.float32)
    plane.fill(1.0)
    del plane
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _second_allocation_faults(mode):
    done = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_large_arrays_are_reused_without_page_faults():
    """Reference: the same process without the setting, where glibc unmaps the 64 MB array
    on free and the next one faults in fresh pages (at least 32, one per 2 MB huge page)."""
    assert _second_allocation_faults("default") >= 32
    assert _second_allocation_faults("keep") < 8


def test_set_threads_clamps_to_numba_limit():
    import cv2
    import numba

    before = numba.get_num_threads(), cv2.getNumThreads()
    try:
        assert runtime.set_threads(10**6) == numba.config.NUMBA_NUM_THREADS
        assert runtime.set_threads(0) == 1
        assert numba.get_num_threads() == 1 and cv2.getNumThreads() == 1
    finally:
        numba.set_num_threads(before[0])
        cv2.setNumThreads(before[1])
