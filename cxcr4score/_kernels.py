"""Numba kernels: fused lookup-table deconvolution and one-pass per-cell statistics.

Written by hand because no library fuses these steps: scikit-image would deconvolve to
float64 planes (three passes and 48 bytes per pixel) and then measure each compartment in
a separate ``regionprops`` pass. Each kernel here reads the RGB image once.

Kernels take only arrays and scalars and do arithmetic only; the wrappers in
:mod:`cxcr4score.measure` validate, make arrays contiguous and allocate (STYLE section 3).
Parallel loops give each thread its own accumulator slice, indexed by
``numba.get_thread_id()`` and reduced serially by the wrapper; accumulators are integers
(OD quantised to ``round(OD * 2**20)``), so results are identical for any thread count.
No fastmath.
"""

from __future__ import annotations

import numba
import numpy as np

#: Fixed-point scale of optical density in the accumulators (DESIGN section 6).
Q_SCALE = float(2**20)
#: Number of angular sectors of the membrane band (DESIGN section 5).
N_SECTORS = 16
#: Compartment codes (DESIGN section 3).
BACKGROUND, NUCLEUS, CYTOPLASM, MEMBRANE = 0, 1, 2, 3
#: Joint histogram of tumour-region pixels: DAB in 800 bins of 0.005 OD and hematoxylin in
#: 200 bins of 0.02 OD, both from -1 to 3 (clamped), so that pixel-score thresholds on either
#: stain are applied after the pixel pass.
HIST_LOW = -1.0
HIST_BINS_PER_OD, HIST_BINS = 200.0, 800
HEM_BINS_PER_OD, HEM_BINS = 50.0, 200


@numba.njit(parallel=True, cache=True)
def deconvolve_kernel(rgb, tables, hematoxylin, dab):
    """hematoxylin[i, j] = sum_c tables[0, c, rgb[i, j, c]]; dab likewise with tables[1]."""
    n_rows, n_cols = rgb.shape[0], rgb.shape[1]
    for i in numba.prange(n_rows):
        for j in range(n_cols):
            r, g, b = rgb[i, j, 0], rgb[i, j, 1], rgb[i, j, 2]
            hematoxylin[i, j] = tables[0, 0, r] + tables[0, 1, g] + tables[0, 2, b]
            dab[i, j] = tables[1, 0, r] + tables[1, 1, g] + tables[1, 2, b]


@numba.njit(cache=True)
def _bin(value, bins_per_od, n_bins):
    """floor((value - HIST_LOW) * bins_per_od) in float64, clamped to [0, n_bins - 1]."""
    index = int(np.floor((np.float64(value) - HIST_LOW) * bins_per_od))
    return min(max(index, 0), n_bins - 1)


@numba.njit(parallel=True, cache=True)
def cell_stats_kernel(
    rgb,
    cells,
    compartments,
    tables,
    alt_dab_table,
    centroid_row,
    centroid_col,
    in_scope,
    row_bands,
    count,
    dab_sum,
    dab_sq,
    alt_sum,
    hem_sum,
    sector_count,
    sector_sum,
    hist,
):
    """One pass over the pixels accumulating per (thread, cell, compartment) integer sums.

    For a pixel of cell k (``cells > 0``) and compartment m (1 nucleus, 2 cytoplasm,
    3 membrane), with q(x) = rint(x * 2**20) of the float32 concentration x:
    count[t, k, m-1] += 1, dab_sum += q(DAB), dab_sq += q(DAB)**2, alt_sum += q(DAB under the
    alternative I0); nucleus pixels add q(hematoxylin) to hem_sum[t, k]; membrane pixels add
    to sector_count/sector_sum[t, k, s], s = floor((atan2(i - cy, j - cx) + pi) / (2 pi) * 16);
    pixels of in-scope cells add to hist[t, hematoxylin bin, DAB bin].
    Runs of equal (cell, compartment) along a row are summed locally and flushed at a change.
    ``row_bands`` holds the first row of each band of rows a loop iteration handles.
    """
    n_cols = rgb.shape[1]
    two_pi = 2.0 * np.pi
    for band in numba.prange(row_bands.shape[0] - 1):
        t = numba.get_thread_id()
        for i in range(row_bands[band], row_bands[band + 1]):
            run_cell = 0
            run_comp = 0
            run_n = 0
            run_sum = 0
            run_sq = 0
            run_alt = 0
            for j in range(n_cols + 1):
                if j < n_cols:
                    k = cells[i, j]
                    m = compartments[i, j]
                else:  # sentinel: flush the last run of the row
                    k = 0
                    m = 0
                if k != run_cell or m != run_comp:
                    if run_cell > 0 and run_comp > 0:
                        c = run_comp - 1
                        count[t, run_cell, c] += run_n
                        dab_sum[t, run_cell, c] += run_sum
                        dab_sq[t, run_cell, c] += run_sq
                        alt_sum[t, run_cell, c] += run_alt
                    run_cell = k
                    run_comp = m
                    run_n = 0
                    run_sum = 0
                    run_sq = 0
                    run_alt = 0
                if k == 0 or m == 0:
                    continue
                r, g, b = rgb[i, j, 0], rgb[i, j, 1], rgb[i, j, 2]
                d = tables[1, 0, r] + tables[1, 1, g] + tables[1, 2, b]
                q = np.int64(np.rint(np.float64(d) * Q_SCALE))
                d_alt = alt_dab_table[0, r] + alt_dab_table[1, g] + alt_dab_table[2, b]
                run_n += 1
                run_sum += q
                run_sq += q * q
                run_alt += np.int64(np.rint(np.float64(d_alt) * Q_SCALE))
                h = tables[0, 0, r] + tables[0, 1, g] + tables[0, 2, b]
                if m == 1:
                    hem_sum[t, k] += np.int64(np.rint(np.float64(h) * Q_SCALE))
                elif m == 3:
                    angle = np.arctan2(i - centroid_row[k], j - centroid_col[k])
                    s = int((angle + np.pi) / two_pi * N_SECTORS)
                    if s >= N_SECTORS:
                        s = N_SECTORS - 1
                    sector_count[t, k, s] += 1
                    sector_sum[t, k, s] += q
                if in_scope[k]:
                    hist[t, _bin(h, HEM_BINS_PER_OD, HEM_BINS), _bin(d, HIST_BINS_PER_OD, HIST_BINS)] += 1


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
