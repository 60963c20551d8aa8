"""Area-average resampling of a pyramid level onto the analysis grid, by global indices."""

import numba
import numpy as np


@numba.njit(cache=True)
def _area_weights(first_out, n_out, first_in, n_in, scale):
    """Weights of input pixels [first_in, first_in + n_in) in outputs [first_out, first_out + n_out).

    Output pixel i covers input coordinates [i * scale, (i + 1) * scale); the weight of input
    pixel r is the length of its overlap with that span divided by ``scale``. Returns the
    first overlapping input index (relative to first_in), the count, and the weights.
    """
    span = int(np.ceil(scale)) + 1
    start = np.empty(n_out, np.int64)
    count = np.empty(n_out, np.int64)
    weights = np.zeros((n_out, span), np.float64)
    for k in range(n_out):
        a = (first_out + k) * scale
        b = (first_out + k + 1) * scale
        r0 = max(int(np.floor(a)), first_in)
        r1 = min(int(np.ceil(b)), first_in + n_in)
        start[k] = r0 - first_in
        count[k] = max(0, r1 - r0)
        for m in range(count[k]):
            r = r0 + m
            weights[k, m] = (min(b, r + 1.0) - max(a, float(r))) / scale
    return start, count, weights


@numba.njit(parallel=True, cache=True)
def area_resize_kernel(region, out, first_row, first_col, region_row, region_col, scale_row, scale_col):
    """out[i, j] = area average of the level pixels under analysis pixel (first_row + i, first_col + j).

    ``region`` holds level pixels starting at (region_row, region_col); weights depend only on
    global indices, so any box of the grid equals the same crop of the whole-slide result.
    Rows first, then columns, in float64; rounded half to even.
    """
    n_rows, n_cols = out.shape[0], out.shape[1]
    r_start, r_count, r_weight = _area_weights(first_row, n_rows, region_row, region.shape[0], scale_row)
    c_start, c_count, c_weight = _area_weights(first_col, n_cols, region_col, region.shape[1], scale_col)
    for i in numba.prange(n_rows):
        line = np.zeros((region.shape[1], 3), np.float64)
        for m in range(r_count[i]):
            w = r_weight[i, m]
            for c in range(region.shape[1]):
                for ch in range(3):
                    line[c, ch] += w * region[r_start[i] + m, c, ch]
        for j in range(n_cols):
            for ch in range(3):
                acc = 0.0
                for m in range(c_count[j]):
                    acc += c_weight[j, m] * line[c_start[j] + m, ch]
                out[i, j, ch] = np.uint8(min(255.0, max(0.0, np.rint(acc))))
