"""Process-wide settings (cxcr4score.runtime), each checked in a fresh process."""

import ast
import subprocess
import sys
from pathlib import Path

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


_SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"
#: Heavy modules no rule script but the report's needs (skimage.morphology and the scipy.ndimage
#: it pulls in once took a third of each job's start-up; matplotlib draws the report only).
_NOT_NEEDED = ("skimage", "scipy.ndimage", "matplotlib")


def _script_imports(script):
    """The module-level import statements of a rule script, as source."""
    tree = ast.parse(script.read_text())
    return "\n".join(ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)))


@pytest.mark.parametrize("script", ["validate_inputs", "slide_info", "measure_chunk", "merge_slide", "qc_slide",
                                    "eligibility"])
def test_rule_scripts_do_not_import_modules_they_do_not_use(script):
    """Start-up of a job is mostly imports (docs/performance.md); a fresh process importing what
    the script imports loads none of ``_NOT_NEEDED``."""
    imports = _script_imports(_SCRIPTS / f"{script}.py")
    assert "cxcr4score" in imports
    probe = (f"import sys\nsys.path.insert(0, {str(_SCRIPTS)!r})\n{imports}\n"
             f"print(' '.join(m for m in {_NOT_NEEDED!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == []


def test_runtime_imports_no_kernels_until_warm_up():
    """_common.start imports runtime in every job, the report's too: the kernels come with warm_up."""
    probe = "import sys\nfrom cxcr4score import runtime\nprint(' '.join(sorted(m for m in sys.modules if m.startswith(('numba', 'cxcr4score.')))))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["cxcr4score.runtime"]
