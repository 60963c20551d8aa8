"""Per-cell and per-label statistics in one pass over the pixels, as exact integer sums."""

import numba
import numpy as np

from ..constants import (
    HEM_BINS, HEM_BINS_PER_OD, HIST_BINS, HIST_BINS_PER_OD, HIST_LOW, MEMBRANE, MEMBRANE_RIDGE, N_CODES, N_SECTORS, Q_SCALE,
    RING_RIDGE,
)
from .deconvolution import _pair_rows
from .rows import _run_starts
from .vector import _add_difference, _sum_rows_into_planes


@numba.njit(cache=True)
def _bin(value, bins_per_od, n_bins):
    """floor((value - HIST_LOW) * bins_per_od) in float64, clamped to [0, n_bins - 1]."""
    # Clamping before truncating gives the same index as floor-then-clamp, branch-free.
    x = min(max((np.float64(value) - HIST_LOW) * bins_per_od, 0.0), n_bins - 1.0)
    return int(x)


#: tan(22.5 deg): the sector edges nearest each axis, compared with |dy| / |dx|.
_TAN_SECTOR = np.tan(np.pi / N_SECTORS * 2.0)


#: Relative margin within which a point counts as on a sector edge and gets atan2.
_EDGE_MARGIN = 1e-9


@numba.njit(cache=True)
def sector_of(dy, dx):
    """Sector floor((atan2(dy, dx) + pi) / (2 pi) * 16), clamped to 15, mostly without atan2.

    The sector edges are the axes, the diagonals and the lines |dy| = tan(22.5 deg) |dx|
    and |dx| = tan(22.5 deg) |dy|; a point clearly off every edge is placed by comparing
    |dy| and |dx| (exact for the float64 formula, whose error is ~1e-15 rad). Points within
    a relative 1e-9 of an edge (on an axis or a diagonal, where the float64 rounding of the
    formula decides, and where -0.0 and +0.0 differ) take the atan2 formula itself.
    """
    ax, ay = abs(dx), abs(dy)
    margin = _EDGE_MARGIN * (ax + ay)
    # Bitwise | rather than `or`, and sums of comparisons rather than if-chains: the
    # angle of neighbouring band pixels is unpredictable, so branches would mostly miss.
    on_edge = (
        (ax <= margin)
        | (ay <= margin)
        | (abs(ay - ax) <= margin)
        | (abs(ay - _TAN_SECTOR * ax) <= margin)
        | (abs(ax - _TAN_SECTOR * ay) <= margin)
    )
    if on_edge:
        s = int((np.arctan2(dy, dx) + np.pi) / (2.0 * np.pi) * N_SECTORS)
        return min(s, N_SECTORS - 1)
    # k: which 22.5-degree slice of the quadrant, counted from the x axis.
    k = int(ay > _TAN_SECTOR * ax) + int(ay > ax) + int(ax < _TAN_SECTOR * ay)
    upper = dy > 0
    return 8 * int(upper) + (k if upper == (dx > 0) else 7 - k)


@numba.njit(parallel=True, cache=True)
def cell_stats_kernel(
    rgb,
    cells,
    compartments,
    stain_pairs,
    centroid_row,
    centroid_col,
    in_scope,
    row_bands,
    count,
    sums,
    sectors,
    hist,
    invalid,
):
    """One pass over the pixels accumulating per (thread, cell, compartment) integer sums.

    ``stain_pairs`` holds (hematoxylin, DAB, alternative DAB, 0) contributions: row 256 r + g
    those of the red and green channels, row RG_ROWS + b those of blue. For a pixel of cell k and compartment m (0 background,
    1 nucleus, 2 cytoplasm, 3 membrane band, 4 capture ring, 5 band on a DAB ridge, 6 ring on
    a DAB ridge), with q(x) = rint(x * 2**20) of the
    float32 concentration x and key = N_CODES k + m: count[t, key] += 1 and sums[t, key] +=
    (q(DAB), q(DAB)**2, q(alternative DAB), q(hematoxylin)); label 0 and code 0 accumulate
    like the others (the caller drops them). Band pixels (3, 5) of cells (k > 0) add 1,
    q(DAB) and q(alternative DAB) to sectors[t, k, s, 0:3] and ridge pixels (5, 6) to
    sectors[t, k, s, 3:6], s = :func:`sector_of` (i - cy, j - cx). Pixels of cells (k > 0,
    m > 0) with in_scope[k] >= 1 add 1 to hist[t, b], b = HIST_BINS * hematoxylin bin + DAB
    bin (the region's histogram), and those with in_scope[k] == 2 also to hist[t, HEM_BINS *
    HIST_BINS + b] (the tumour cells'); background pixels go to one of 8 spare bins after
    both. ``row_bands`` holds the first row of each band of rows a loop iteration handles.
    """
    n_cols = rgb.shape[1]
    n_bins = HEM_BINS * HIST_BINS
    n_labels = in_scope.shape[0]
    for band in numba.prange(row_bands.shape[0] - 1):
        t = numba.get_thread_id()
        thread_count, thread_sums, thread_sectors, thread_hist = count[t], sums[t], sectors[t], hist[t]
        # Runs of equal (cell, compartment) are a few pixels long, so branches on where they
        # end would mostly mispredict. Each row goes instead through short loops without
        # data-dependent branches, most of which LLVM vectorises: concentrations (two
        # 16-byte table rows a pixel, into one plane per stain); q values, histogram bins and
        # (cell, compartment) keys; histogram counts; starts of runs; running sums of q. Then
        # each run adds the difference of the running sums at its ends. The concentrations go
        # to 1-D planes, not to an (n, 4) array: LLVM does not know the row length of a 2-D
        # array, so the loop reading it stayed scalar (several times slower).
        hem_plane, dab_plane, alt_plane = np.empty(n_cols, np.float32), np.empty(n_cols, np.float32), np.empty(n_cols, np.float32)
        planes = (hem_plane, dab_plane, alt_plane)
        q_dab = np.empty(n_cols, np.int64)
        q_alt = np.empty(n_cols, np.int64)
        q_hem = np.empty(n_cols, np.int64)
        bins = np.empty(n_cols, np.int64)
        keys = np.empty(n_cols, np.int64)
        starts = np.empty(n_cols + 1, np.int64)
        running = np.empty((n_cols + 1, 4), np.int64)
        running[0] = 0
        for i in range(row_bands[band], row_bands[band + 1]):
            rgb_row, cell_row, comp_row = rgb[i], cells[i], compartments[i]
            for j in range(n_cols):
                rg, b = _pair_rows(rgb_row[j, 0], rgb_row[j, 1], rgb_row[j, 2])
                _sum_rows_into_planes(planes, j, stain_pairs, rg, b)
            for j in range(n_cols):
                h, d = hem_plane[j], dab_plane[j]
                q_hem[j] = np.int64(np.rint(np.float64(h) * Q_SCALE))
                q_dab[j] = np.int64(np.rint(np.float64(d) * Q_SCALE))
                q_alt[j] = np.int64(np.rint(np.float64(alt_plane[j]) * Q_SCALE))
                k, m = np.int64(cell_row[j]), np.int64(comp_row[j])
                keys[j] = k * N_CODES + m
                # Background pixels count in spare bins, a different one for neighbouring
                # pixels so that their increments do not wait on each other.
                joint = _bin(h, HEM_BINS_PER_OD, HEM_BINS) * HIST_BINS + _bin(d, HIST_BINS_PER_OD, HIST_BINS)
                bins[j] = joint if (k > 0) & (m > 0) else 2 * n_bins + (j & 7)
            for j in range(n_cols):
                thread_hist[bins[j]] += 1
            n_runs = _run_starts(keys, starts)
            s_dab = s_sq = s_alt = s_hem = 0
            for j in range(n_cols):
                q = q_dab[j]
                s_dab += q
                s_sq += q * q
                s_alt += q_alt[j]
                s_hem += q_hem[j]
                running[j + 1, 0] = s_dab
                running[j + 1, 1] = s_sq
                running[j + 1, 2] = s_alt
                running[j + 1, 3] = s_hem
            for r in range(n_runs):
                a, b = starts[r], starts[r + 1]
                k, m = cell_row[a], comp_row[a]
                # Accumulators are indexed without bounds checks: a label or code out of
                # range is counted in invalid[t] (the caller raises), once per run.
                if (k < 0) | (k >= n_labels) | (m >= N_CODES):
                    invalid[t] += b - a
                    continue
                key = keys[a]
                thread_count[key] += b - a
                _add_difference(thread_sums, key, running, b, a)
                if k == 0 or m == 0:
                    continue
                scope = in_scope[k]
                if scope == 0:  # counted above; out of the histograms' scope
                    for j in range(a, b):
                        thread_hist[bins[j]] -= 1
                elif scope == 2:  # a tumour cell: in the tumour cells' histogram too
                    for j in range(a, b):
                        thread_hist[bins[j] + n_bins] += 1
                if (m == MEMBRANE) | (m == MEMBRANE_RIDGE):  # the band
                    _add_sectors(thread_sectors[k], 0, i - centroid_row[k], centroid_col[k], a, b, q_dab, q_alt)
                if (m == MEMBRANE_RIDGE) | (m == RING_RIDGE):  # the located membrane
                    _add_sectors(thread_sectors[k], 3, i - centroid_row[k], centroid_col[k], a, b, q_dab, q_alt)


@numba.njit(cache=True)
def _add_sectors(cell_sectors, first, dy, centroid_col, a, b, q_dab, q_alt):
    """Add pixels a .. b - 1 of a row (at dy from the centroid) to cell_sectors[s, first:first + 3]."""
    for j in range(a, b):
        s = sector_of(dy, j - centroid_col)
        cell_sectors[s, first] += 1
        cell_sectors[s, first + 1] += q_dab[j]
        cell_sectors[s, first + 2] += q_alt[j]


@numba.njit(parallel=True, cache=True)
def label_moments_kernel(labels, origin_row, origin_col, row_bands, sums):
    """Integer moments of every label 1..n about an integer origin, per thread.

    For each pixel (i, j) with label k in 1..n (n = origin_row.shape[0] - 1), with
    a = i - origin_row[k], b = j - origin_col[k]:
    sums[t, k] += (1, a, b, a*a, b*b, a*b). Integers, so any thread count gives the same sums.
    A run of L equal labels along a row (a fixed, b = b0 .. b0 + L - 1) is added at once from
    the closed forms of sum b and sum b**2, which are exact in integers. Label 0 pixels
    are only counted (sums[t, 0, 0]); other labels are skipped.
    """
    n_cols = labels.shape[1]
    n = origin_row.shape[0] - 1
    for band in numba.prange(row_bands.shape[0] - 1):
        t = numba.get_thread_id()
        starts = np.empty(n_cols + 1, np.int64)
        for i in range(row_bands[band], row_bands[band + 1]):
            row = labels[i]
            for r in range(_run_starts(row, starts)):
                j, end = starts[r], starts[r + 1]
                k = row[j]
                if 0 < k <= n:
                    length = end - j
                    a = i - origin_row[k]
                    b0 = j - origin_col[k]
                    # sum over t < L of t and of t**2; L * (L - 1) is even, L (L - 1) (2L - 1) divisible by 6.
                    t1 = length * (length - 1) // 2
                    t2 = length * (length - 1) * (2 * length - 1) // 6
                    sum_b = length * b0 + t1
                    sums[t, k, 0] += length
                    sums[t, k, 1] += a * length
                    sums[t, k, 2] += sum_b
                    sums[t, k, 3] += a * a * length
                    sums[t, k, 4] += length * b0 * b0 + 2 * b0 * t1 + t2
                    sums[t, k, 5] += a * sum_b
                elif k == 0:
                    sums[t, 0, 0] += end - j


@numba.njit(parallel=True, cache=True)
def label_stats_kernel(labels, row_bands, areas, boxes):
    """areas[t, k] = pixel count and boxes[t, k] = (first row, first col, last row + 1,
    last col + 1) of every label k >= 1 in thread t's bands of rows (``row_bands``, as
    :func:`row_bands`); ``boxes`` must start as (big, big, 0, 0) rows."""
    # By runs of one label (a label's five accumulators per pixel made each update wait on
    # the previous pixel's).
    for band in numba.prange(row_bands.shape[0] - 1):
        t = numba.get_thread_id()
        thread_areas, thread_boxes = areas[t], boxes[t]
        starts = np.empty(labels.shape[1] + 1, np.int64)
        for i in range(row_bands[band], row_bands[band + 1]):
            row = labels[i]
            for r in range(_run_starts(row, starts)):
                _add_run(thread_areas, thread_boxes, row[starts[r]], i, starts[r], starts[r + 1])


@numba.njit(cache=True)
def _add_run(areas, boxes, k, i, start, stop):
    """Count the run [start, stop) of label k (nothing for k <= 0) in row i into areas and boxes."""
    if k > 0:
        areas[k] += stop - start
        boxes[k, 0] = min(boxes[k, 0], i)
        boxes[k, 1] = min(boxes[k, 1], start)
        boxes[k, 2] = max(boxes[k, 2], i + 1)
        boxes[k, 3] = max(boxes[k, 3], stop)
