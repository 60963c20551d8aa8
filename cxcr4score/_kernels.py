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
