"""DAB ridges (the stained membrane's crest) and hematoxylin lowered beside them, each in one
pass over the pixels (the NumPy expressions of these tests took several full-image passes)."""

import numba
import numpy as np


@numba.njit(cache=True)
def _crest(up, mid, down, j):
    """mid[j] is at least both neighbours along the row, the column or a diagonal."""
    c = mid[j]
    return (((c >= mid[j - 1]) & (c >= mid[j + 1])) | ((c >= up[j]) & (c >= down[j]))
            | ((c >= up[j - 1]) & (c >= down[j + 1])) | ((c >= up[j + 1]) & (c >= down[j - 1])))


@numba.njit(parallel=True, cache=True)
def ridge_kernel(smoothed, rise, min_rise, contrast, out):
    """out = 1 where rise >= min_rise, rise >= contrast * (smoothed - rise) and smoothed is a
    crest (:func:`_crest`); 0 elsewhere and on the outermost pixels. float32 arithmetic."""
    n_rows, n_cols = smoothed.shape
    min_rise, contrast = np.float32(min_rise), np.float32(contrast)
    for i in numba.prange(n_rows):
        row_out = out[i]
        row_out[0] = 0
        row_out[n_cols - 1] = 0
        if i == 0 or i == n_rows - 1:
            row_out[:] = 0
            continue
        up, mid, down, r = smoothed[i - 1], smoothed[i], smoothed[i + 1], rise[i]
        for j in range(1, n_cols - 1):
            line = (r[j] >= min_rise) & (r[j] >= contrast * (mid[j] - r[j]))
            row_out[j] = np.uint8(line and _crest(up, mid, down, j))


@numba.njit(parallel=True, cache=True)
def lower_near_ridges_kernel(hematoxylin, opened, low, scale, ridges, out):
    """out = min(hematoxylin, opened OD) where a ridge lies in the 3 x 3 neighbourhood, else
    hematoxylin; ``opened`` is on the OD grid (OD = low + value / scale, in float32)."""
    n_rows, n_cols = hematoxylin.shape
    low, scale = np.float32(low), np.float32(scale)
    for i in numba.prange(n_rows):
        # Ridges in the column of three rows, padded by one column each side with none.
        column = np.zeros(n_cols + 2, np.uint8)
        for y in range(max(i - 1, 0), min(i + 2, n_rows)):
            row = ridges[y]
            for j in range(n_cols):
                column[j + 1] |= row[j]
        h, o, row_out = hematoxylin[i], opened[i], out[i]
        for j in range(n_cols):
            near = (column[j] | column[j + 1] | column[j + 2]) != 0
            lowered = min(np.float32(o[j]) / scale + low, h[j])
            row_out[j] = lowered if near else h[j]
