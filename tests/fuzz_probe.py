"""Open image files as the workflow does, one per input line; run in a subprocess by test_fuzz.

usage: python tests/fuzz_probe.py WARM_UP_IMAGE < paths

Each path read from stdin goes through what a user's run does with a slide: ``validate_inputs``'
check (:func:`cxcr4score.pipeline.validate_slide`, metadata plus one decoded tile), then
``slide_info``'s open and overview read (:func:`cxcr4score.slide_info.open_grid`,
:func:`cxcr4score.grid.read_overview`), then every analysis-grid pixel as the ``measure_chunk``
jobs read them (:func:`cxcr4score.grid.read_box`, in bands). One line per path goes to stdout:
``FUZZ {"outcome": ..., "detail": ...}`` with outcome ``result`` (every read succeeded),
``input_error`` (our :class:`~cxcr4score.errors.InputError`, detail its problems) or ``crash``
(any other exception, detail the traceback). A hang or a crash of a C decoder ends no line:
the test's timeout and the process's exit status tell them. The line ``FUZZ ready`` follows
the warm-up read (Numba compiles its kernels then).
"""

from __future__ import annotations

import faulthandler
import json
import resource
import sys
import traceback
import warnings

from cxcr4score import config as cx_config
from cxcr4score import grid as grid_module
from cxcr4score import pipeline
from cxcr4score.errors import InputError
from cxcr4score.slide_info import open_grid

#: Most analysis-grid pixels read in full (a bit flip can make an image claim a huge size; the
#: overview is still read, as slide_info reads it).
MAX_GRID_PX = 2**24
#: Analysis-grid rows per read of the full grid.
BAND_ROWS = 1024
_CONFIG = cx_config.default_config()


def probe(path: str) -> tuple[str, object]:
    """Check, open and read one image as a workflow run does.

    Parameters
    ----------
    path : str
        The image file.

    Returns
    -------
    outcome : {'result', 'input_error'}
    detail : list of str or dict
        The InputError's problems, or the level-0 size and the grid read.

    Raises
    ------
    Exception
        Anything other than InputError, unchanged (the caller reports it as a crash).
    """
    info, problems = pipeline.validate_slide(path)
    if problems:
        return "input_error", problems
    try:
        reader, grid, _, _ = open_grid(path, sheet_mpp="", config=_CONFIG)
        with reader:
            grid_module.read_overview(reader, grid)
            rows, cols = grid.shape
            if rows * cols <= MAX_GRID_PX:
                for top in range(0, rows, BAND_ROWS):
                    grid_module.read_box(reader, grid, (top, 0, min(top + BAND_ROWS, rows), cols))
    except InputError as err:
        return "input_error", err.problems
    return "result", {"width": info["width"], "height": info["height"], "grid": list(grid.shape)}


def _report(outcome: str, detail: object, warned: list[str]) -> None:
    print("FUZZ " + json.dumps({"outcome": outcome, "detail": detail, "warnings": warned}), flush=True)


def main(warm_up: str) -> None:
    """Probe ``warm_up``, print ``FUZZ ready``, then probe each path on stdin and report it."""
    faulthandler.enable()  # a segfault prints the Python stack to stderr
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # and writes no core file (they fill the disk)
    probe(warm_up)
    print("FUZZ ready", flush=True)
    for line in sys.stdin:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                outcome, detail = probe(line.rstrip("\n"))
            except BaseException:  # noqa: BLE001 (every other exception is what the fuzz test looks for)
                outcome, detail = "crash", traceback.format_exc()
        _report(outcome, detail, [f"{w.category.__name__}: {w.message}" for w in caught])


if __name__ == "__main__":
    main(sys.argv[1])
