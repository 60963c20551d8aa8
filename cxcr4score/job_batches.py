"""Which slides the workflow scores several per job: small single-file images, in sheet order.

A workflow job pays a fixed start-up (Python, the libraries, the Numba cache) of about a second.
A whole slide spends minutes in its chunk jobs and hardly notices; a small TMA core, biopsy or
exported field spends more on start-up than on its pixels, four jobs over. Such images are
batched: one job measures several of them and one more scores them.

The choice is made when the workflow is parsed, from file sizes alone (every cluster job parses
the workflow again, so it must be cheap and must not read pixels). A file's size is a proxy for
its pixel count; a wrong guess costs time only, never a different result.
"""

from __future__ import annotations

import os

from .images import RASTER_SUFFIXES, TIFF_SUFFIXES

#: Formats whose pixels are all in the one file the sheet names (MIRAX, VSI, VMS and DICOM
#: keep theirs in companion files, which the file's size does not count).
SINGLE_FILE_SUFFIXES = TIFF_SUFFIXES | RASTER_SUFFIXES


def small_image_batches(paths, *, max_mb, per_job):
    """Group the small images of a sheet into batches of at most ``per_job``.

    Parameters
    ----------
    paths : mapping of str to str
        Slide id to image path, in sheet order.
    max_mb : float
        Images of a single-file format whose file is at most this many MB (10^6 bytes) are
        small; 0 batches none.
    per_job : int
        Most images in one batch.

    Returns
    -------
    dict of str to list of str
        Batch name (``"1"``, ``"2"``, ...) to the slide ids in it, in sheet order. A slide in
        no batch runs through the per-slide, per-chunk rules.
    """
    small = [slide_id for slide_id, path in paths.items() if max_mb > 0 and _is_small(path, max_mb)]
    return {str(k + 1): small[start:start + per_job] for k, start in enumerate(range(0, len(small), per_job))}


def _is_small(path, max_mb):
    if os.path.splitext(path)[1].lower() not in SINGLE_FILE_SUFFIXES:
        return False
    try:
        return os.stat(path).st_size <= max_mb * 1e6
    except OSError:  # missing or unreadable: validate_inputs names it
        return False
