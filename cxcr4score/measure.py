"""Per-cell measurements from labels and RGB, wrapping the Numba kernels.

No scoring thresholds are applied here: changing a threshold must never rerun pixel work.
"""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd

from ._kernels import statistics as kernels
from ._kernels.rows import row_bands, thread_bands
from .constants import (
    COMPARTMENT_NAMES, CYTOPLASM, HEM_BINS, HEM_BINS_PER_OD, HIST_BINS, HIST_LOW, MEMBRANE, MEMBRANE_RIDGE,
    MEMBRANE_RING, MIN_LINE_SECTORS, N_CODES, N_SECTORS, NUCLEUS, Q_SCALE, RING_RIDGE, SECTOR_COLUMNS,
)
from .stains import channel_pair_rows, check_rgb, check_tables

#: Pixel histograms of :func:`measure_cells` (and ``in_scope`` values): the scored region's
#: cells, and its cells typed tumour.
REGION, TUMOUR = 1, 2
#: Columns of the per-cell accumulators after label 0 and code 0 are dropped: codes 1-6.
_N_CELL_CODES = N_CODES - 1
#: Sectors are taken about nucleus centroids rounded to 1 / _CENTROID_GRID of a pixel.
_CENTROID_GRID = float(2**20)
#: Rows per parallel work item of the statistics kernel.
_ROWS_PER_BAND = 16


def label_stats(labels, n):
    """Pixel count and bounding box of every label 1..n - 1 of a label image.

    Parameters
    ----------
    labels : (M, N) ndarray of int
    n : int
        One more than the largest label counted.

    Returns
    -------
    areas : (n,) ndarray of int64
        Label 0 counts 0.
    boxes : (n, 4) ndarray of int64
        (first row, first col, last row + 1, last col + 1); label 0 and absent labels get
        an empty box (int64 max, int64 max, 0, 0).
    """
    labels = np.ascontiguousarray(labels)
    n_threads = numba.get_num_threads()
    areas = np.zeros((n_threads, n), np.int64)
    boxes = np.zeros((n_threads, n, 4), np.int64)
    boxes[..., :2] = np.iinfo(np.int64).max
    kernels.label_stats_kernel(labels, thread_bands(labels.shape[0]), areas, boxes)
    return areas.sum(axis=0), np.concatenate([boxes[..., :2].min(axis=0), boxes[..., 2:].max(axis=0)], axis=1)


def label_areas(labels):
    """Pixel count of every label 0..labels.max() of a non-negative integer image (int64)."""
    labels = np.ascontiguousarray(labels)
    areas, _ = label_stats(labels, int(labels.max(initial=0)) + 1)
    areas[0] = labels.size - areas[1:].sum()
    return areas


def _label_moments(labels, n_cells, origin_row, origin_col):
    """Per label 1..n_cells: (count, sum a, sum b, sum a^2, sum b^2, sum ab), a and b the
    pixel's row and column minus the label's integer origin (int64, exact); row 0 holds the
    count of label-0 pixels and zeros."""
    labels = np.ascontiguousarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"expected a 2-D label image, got shape {labels.shape}")
    sums = np.zeros((numba.get_num_threads(), n_cells + 1, 6), np.int64)
    bands = row_bands(labels.shape[0], _ROWS_PER_BAND)
    kernels.label_moments_kernel(labels, origin_row.astype(np.int64), origin_col.astype(np.int64), bands, sums)
    return sums.sum(axis=0)


def nucleus_centroids(nucleus_labels, n_cells):
    """Centroid (row, col) and pixel area of every nucleus label 1..n_cells.

    Returns
    -------
    rows, cols : (n_cells + 1,) ndarray of float64
        Index 0 is unused (background); a label with no pixels gets NaN.
    area : (n_cells + 1,) ndarray of int64
    """
    origin = np.zeros(n_cells + 1, np.int64)
    return _centroids(_label_moments(nucleus_labels, n_cells, origin, origin))


def nucleus_shape(nucleus_labels, n_cells):
    """Centroid, pixel area and long-to-short axis ratio of every nucleus, in one pass.

    Parameters
    ----------
    nucleus_labels : (M, N) ndarray of int
    n_cells : int

    Returns
    -------
    rows, cols : (n_cells + 1,) ndarray of float64
        As :func:`nucleus_centroids`.
    area : (n_cells + 1,) ndarray of int64
    axis_ratio : (n_cells + 1,) ndarray of float64
        sqrt(lambda_max / lambda_min) of the pixel-coordinate covariance, each eigenvalue
        plus 1/12 (the variance of a uniform unit pixel) so that one-pixel-wide nuclei stay
        finite; index 0 and empty labels are NaN. As ``regionprops``' major / minor axis.
    """
    origin = np.zeros(n_cells + 1, np.int64)
    raw = _label_moments(nucleus_labels, n_cells, origin, origin)
    rows, cols, area = _centroids(raw)
    # Moments about the rounded centroid are small exact integers (no cancellation in the
    # float formulas below); shifted from the raw ones in exact integer arithmetic.
    origin_row = np.rint(np.nan_to_num(rows)).astype(np.int64)
    origin_col = np.rint(np.nan_to_num(cols)).astype(np.int64)
    n, sa, sb, saa, sbb, sab = _shifted_moments(raw, origin_row, origin_col).T.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        var_r = (saa - sa * sa / n) / n + 1 / 12
        var_c = (sbb - sb * sb / n) / n + 1 / 12
        cov = (sab - sa * sb / n) / n
        half_gap = np.sqrt(((var_r - var_c) / 2) ** 2 + cov**2)
        mean = (var_r + var_c) / 2
        ratio = np.sqrt((mean + half_gap) / (mean - half_gap))
    ratio[0] = np.nan
    return rows, cols, area, ratio


def _centroids(raw):
    area = raw[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        return raw[:, 1] / area, raw[:, 2] / area, area


def _shifted_moments(raw, origin_row, origin_col):
    """Moments (count, sum a, sum b, sum a^2, sum b^2, sum ab) about a per-label integer origin
    from those about 0 (``_label_moments``), exactly: a = i - o gives sum a = sum i - o n,
    sum a^2 = sum i^2 - 2 o sum i + o^2 n, sum ab = sum ij - o_c sum i - o_r sum j + o_r o_c n.
    The raw sums grow as n R^2 (R the largest row or column), which int64 holds for any image
    below about 50,000^2 pixels; chunks are 2048^2 plus halo."""
    n, si, sj, sii, sjj, sij = raw.T
    o_r, o_c = origin_row, origin_col
    return np.stack([n, si - o_r * n, sj - o_c * n, sii - 2 * o_r * si + o_r * o_r * n,
                     sjj - 2 * o_c * sj + o_c * o_c * n, sij - o_c * si - o_r * sj + o_r * o_c * n], axis=1)


def measure_cells(
    rgb,
    cell_labels,
    compartments,
    *,
    n_cells,
    tables,
    alt_dab_table,
    centroid_row,
    centroid_col,
    in_scope,
):
    """Per-cell DAB and hematoxylin statistics per compartment, in one pass over the pixels.

    Parameters
    ----------
    rgb : (M, N, 3) ndarray of uint8
    cell_labels : (M, N) ndarray of int32
        0 outside cells, 1..n_cells inside.
    compartments : (M, N) ndarray of uint8
        0 background, 1 nucleus, 2 cytoplasm, 3 membrane band, 4 membrane capture ring
        (cytoplasm), 5 and 6 band and ring pixels on a DAB ridge (the located membrane); see
        :func:`cxcr4score.segment.compartments`.
    n_cells : int
    tables : (2, 3, 256) ndarray of float32
        Concentration tables (hematoxylin, DAB).
    alt_dab_table : (3, 256) ndarray of float32
        DAB table under the alternative background choice (same as ``tables[1]`` when
        there is none).
    centroid_row, centroid_col : (n_cells + 1,) ndarray of float64
        Nucleus centroids; the membrane band is split into 16 sectors about them.
    in_scope : (n_cells + 1,) ndarray of uint8
        Which pixel histograms a cell's pixels enter: 0 none, 1 the region's (:data:`REGION`),
        2 the region's and the tumour cells' (:data:`TUMOUR`); bool is read as 0 / 1.

    Returns
    -------
    table : pandas.DataFrame
        One row per label 1..n_cells (index ``label``): ``n_<compartment>`` pixel counts,
        ``dab_<compartment>`` and ``dab_<compartment>_sd`` (mean and SD of DAB OD, NaN when
        the compartment is empty; cytoplasm includes the capture ring off ridges, membrane the
        band and the ridge pixels of the ring), ``dab_<compartment>_alt``, ``dab_cell``,
        ``dab_cell_sd``, ``dab_cell_alt``, ``hematoxylin_nucleus`` and the sector values
        ``dab_membrane_sector_SS``. ``dab_membrane`` (and its ``_alt``) and the sectors are the
        located membrane (:func:`located_membrane`), ``membrane_line_sectors`` how many
        sectors hold its line; ``dab_membrane_band`` is the band mean alone.
    hist : (2, 200, 800) ndarray of int64
        Joint histograms of the pixels of cells with ``in_scope`` >= 1 (``hist[REGION]``) and
        == 2 (``hist[TUMOUR]``): hematoxylin in bins of 0.02 OD (rows), DAB in bins of 0.005
        OD (columns), both from -1 to 3 and clamped at both ends; see
        :func:`split_by_hematoxylin`.

    Notes
    -----
    Sums are exact integers of OD quantised to ``rint(OD * 2**20)``, so the result does not
    depend on the number of threads; means and SDs are taken once, in float64.
    """
    rgb = check_rgb(rgb)
    tables = check_tables(tables)
    shape = rgb.shape[:2]
    for name, array in (("cell_labels", cell_labels), ("compartments", compartments)):
        if array.shape != shape:
            raise ValueError(f"{name} shape {array.shape} does not match image shape {shape}")
    cells = np.ascontiguousarray(cell_labels, dtype=np.int32)
    comps = np.ascontiguousarray(compartments, dtype=np.uint8)
    alt = np.ascontiguousarray(alt_dab_table, dtype=np.float32)
    if alt.shape != (3, 256):
        raise ValueError(f"alt_dab_table must have shape (3, 256), got {alt.shape}")
    scope = np.ascontiguousarray(in_scope, dtype=np.uint8)
    if scope.size and scope.max() > TUMOUR:
        raise ValueError(f"in_scope values must be 0, 1 or 2, got {scope.max()}")
    rows = np.ascontiguousarray(centroid_row, dtype=np.float64)
    cols = np.ascontiguousarray(centroid_col, dtype=np.float64)
    for name, array in (("in_scope", scope), ("centroid_row", rows), ("centroid_col", cols)):
        if array.shape != (n_cells + 1,):
            raise ValueError(f"{name} must have shape ({n_cells + 1},), got {array.shape}")
    # Centroids on a 2**-20 pixel grid: a tile's centroid and the whole image's differ by an
    # integer offset plus float rounding, which could move a pixel on a sector edge into the
    # next sector; on the grid, offsets from pixels are exact in both.
    rows, cols = (np.round(a * _CENTROID_GRID) / _CENTROID_GRID for a in (rows, cols))

    n_threads = numba.get_num_threads()
    # Per thread; rows N_CODES k + m for label k and compartment code m (label 0 and code 0 are
    # accumulated and dropped); sums of (q(DAB), q(DAB)^2, q(alternative DAB), q(hematoxylin)).
    n_keys = (n_cells + 1) * N_CODES
    count = np.zeros((n_threads, n_keys), np.int64)
    sums = np.zeros((n_threads, n_keys, 4), np.int64)
    # Per sector: band pixels, their q(DAB) and q(alternative DAB); the same of ridge pixels.
    sectors = np.zeros((n_threads, n_cells + 1, N_SECTORS, 6), np.int64)
    # The region's and the tumour cells' histograms, then 8 spare bins that count the pixels
    # outside cells.
    hist = np.zeros((n_threads, 2 * HEM_BINS * HIST_BINS + 8), np.int64)
    bands = row_bands(shape[0], _ROWS_PER_BAND)
    invalid = np.zeros(n_threads, np.int64)
    kernels.cell_stats_kernel(rgb, cells, comps, channel_pair_rows((*tables, alt)), rows, cols, scope, bands,
                               count, sums, sectors, hist, invalid)
    if invalid.any():
        raise ValueError(f"{invalid.sum()} pixels have a cell label outside 0..{n_cells} or a compartment code "
                         f"outside 0..{N_CODES - 1}")
    count = count.sum(axis=0).reshape(n_cells + 1, N_CODES)[1:, 1:]
    sums = sums.sum(axis=0).reshape(n_cells + 1, N_CODES, 4)[1:, 1:]
    sectors = sectors.sum(axis=0)[1:]
    joint = hist[:, : 2 * HEM_BINS * HIST_BINS].sum(axis=0).reshape(2, HEM_BINS, HIST_BINS)
    table = _to_table(count, sums[..., 0], sums[..., 1], sums[..., 2], sums[:, NUCLEUS - 1, 3], sectors)
    return table, joint


def nucleus_hematoxylin(hematoxylin, cell_labels, compartments, n_cells):
    """Mean hematoxylin OD of each cell's nucleus compartment, exactly as :func:`measure_cells`
    gives it (``hematoxylin_nucleus``), from the deconvolved plane.

    Cells are typed by it before they are measured (their type decides which pixel histogram
    their pixels enter). :func:`cxcr4score.stains.deconvolve` reads the same lookup tables as
    the measurement kernel, so the plane holds the same float32 values, and their fixed-point
    sums are the same integers (exact in float64 below 2**53).

    Parameters
    ----------
    hematoxylin : (M, N) ndarray of float32
        From :func:`cxcr4score.stains.deconvolve` with the tables given to :func:`measure_cells`.
    cell_labels, compartments : (M, N) ndarray
        As for :func:`measure_cells`.
    n_cells : int

    Returns
    -------
    (n_cells,) ndarray of float64
        Per label 1..n_cells; NaN for a cell without nucleus pixels.
    """
    nucleus = (np.asarray(compartments) == NUCLEUS) & (np.asarray(cell_labels) > 0)
    labels = np.asarray(cell_labels)[nucleus].astype(np.int64)
    q = np.rint(np.asarray(hematoxylin)[nucleus].astype(np.float64) * Q_SCALE)
    total = np.bincount(labels, weights=q, minlength=n_cells + 1)[1 : n_cells + 1]
    count = np.bincount(labels, minlength=n_cells + 1)[1 : n_cells + 1]
    return _mean(total, count)


def split_by_hematoxylin(hist, hematoxylin_min):
    """Collapse a joint histogram to DAB histograms below / at or above a hematoxylin OD.

    Parameters
    ----------
    hist : (200, 800) ndarray of int64
        From :func:`measure_cells`.
    hematoxylin_min : float
        Effectively rounded up to the 0.02 OD grid of the hematoxylin bins.

    Returns
    -------
    (2, 800) ndarray of int64
        Row 0: pixels with hematoxylin below ``hematoxylin_min``; row 1: the others.
    """
    hist = np.asarray(hist, dtype=np.int64)
    if hist.shape != (HEM_BINS, HIST_BINS):
        raise ValueError(f"joint histogram must have shape ({HEM_BINS}, {HIST_BINS}), got {hist.shape}")
    lower_edges = HIST_LOW + np.arange(HEM_BINS) / HEM_BINS_PER_OD
    high = lower_edges >= hematoxylin_min - 1e-9
    return np.stack([hist[~high].sum(axis=0), hist[high].sum(axis=0)])


def slide_histogram(hists, hematoxylin_min, *, tumour_only):
    """The chunks' joint histograms (see :func:`measure_cells`; any iterable, read one at a time)
    summed, of the region's cells or of its tumour cells only, and split at ``hematoxylin_min``
    (see :func:`split_by_hematoxylin`); a slide without chunks gives empty rows."""
    joint = sum(hists, empty_histogram())
    return split_by_hematoxylin(joint[TUMOUR - 1 if tumour_only else REGION - 1], hematoxylin_min)


def empty_histogram():
    """The joint histograms of a slide without in-scope pixels (region, tumour cells)."""
    return np.zeros((2, HEM_BINS, HIST_BINS), np.int64)


def empty_table():
    """The table of :func:`measure_cells` for an image without cells (all columns, no rows)."""
    zeros = np.zeros((0, _N_CELL_CODES), np.int64)
    return _to_table(zeros, zeros, zeros, zeros, np.zeros(0, np.int64), np.zeros((0, N_SECTORS, 6), np.int64))


def _mean(total, n):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / (Q_SCALE * n), np.nan)


def _sd(total, sq, n):
    # Population SD from exact integer sums: n * sum(q^2) - sum(q)^2 is exact in int64 for
    # realistic cells, and is converted to float only once.
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (n * sq.astype(np.float64) - total.astype(np.float64) ** 2) / (n.astype(np.float64) ** 2)
        return np.where(n > 0, np.sqrt(np.maximum(var, 0.0)) / Q_SCALE, np.nan)


def located_membrane(sectors):
    """Membrane DAB per cell and sector where the membrane is, and the cell's membrane.

    A sector's membrane is the mean of its DAB-ridge pixels (the stained line located in the
    band and capture ring, :func:`cxcr4score.segment.dab_ridges`) where it has any, else the
    mean of its band pixels (no line stands out: the band reads the boundary's level). A cell
    with a line in at least ``MIN_LINE_SECTORS`` sectors reads the mean over those sectors
    (the line's intensity; its extent is ``membrane_completeness``); any other cell the mean
    over its sectors with either.

    Parameters
    ----------
    sectors : (n, 16, 6) ndarray of int64
        Per sector: band pixel count, q(DAB) and q(alternative DAB) sums, then the same of
        ridge pixels (as :func:`measure_cells` accumulates them).

    Returns
    -------
    sector_dab : (n, 16) ndarray of float64
        NaN where a sector has neither.
    membrane, membrane_alt : (n,) ndarray of float64
        NaN for a cell without band or ridge pixels.
    line_sectors : (n,) ndarray of int64
        How many of the cell's sectors hold ridge pixels (its line is its membrane from
        ``MIN_LINE_SECTORS``).
    """
    band_n, ridge_n = sectors[..., 0], sectors[..., 3]
    on_line = ridge_n > 0
    line_sectors = on_line.sum(axis=1)
    has_line = line_sectors >= MIN_LINE_SECTORS
    out = []
    for offset in (1, 2):
        out.append(np.where(on_line, _mean(sectors[..., 3 + offset], ridge_n),
                            _mean(sectors[..., offset], band_n)))
    sector_dab, sector_alt = out
    read = ~np.isnan(sector_dab) & (on_line | ~has_line[:, None])
    n_read = read.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        membrane = np.where(n_read > 0, np.where(read, sector_dab, 0.0).sum(axis=1) / n_read, np.nan)
        membrane_alt = np.where(n_read > 0, np.where(read, sector_alt, 0.0).sum(axis=1) / n_read, np.nan)
    return sector_dab, membrane, membrane_alt, line_sectors


def _pool(a, codes):
    """Sum of the per-code columns of ``a`` (codes 1..6 at columns 0..5) over ``codes``."""
    return sum(a[:, c - 1] for c in codes)


def _to_table(count, dab_sum, dab_sq, alt_sum, hem_sum, sectors):
    # Compartments from codes: the capture ring is cytoplasm; ridge pixels of the band and the
    # ring are the membrane, as is the rest of the band.
    pools = {"nucleus": (NUCLEUS,), "cytoplasm": (CYTOPLASM, MEMBRANE_RING),
             "membrane": (MEMBRANE, MEMBRANE_RIDGE, RING_RIDGE)}
    columns = {}
    for name in COMPARTMENT_NAMES:
        n = _pool(count, pools[name])
        total = _pool(dab_sum, pools[name])
        columns[f"n_{name}"] = n
        columns[f"dab_{name}"] = _mean(total, n)
        columns[f"dab_{name}_sd"] = _sd(total, _pool(dab_sq, pools[name]), n)
        columns[f"dab_{name}_alt"] = _mean(_pool(alt_sum, pools[name]), n)
    band = (MEMBRANE, MEMBRANE_RIDGE)
    columns["dab_membrane_band"] = _mean(_pool(dab_sum, band), _pool(count, band))
    sector_dab, columns["dab_membrane"], columns["dab_membrane_alt"], columns["membrane_line_sectors"] = \
        located_membrane(sectors)
    n_cell = count.sum(axis=1)
    columns["dab_cell"] = _mean(dab_sum.sum(axis=1), n_cell)
    columns["dab_cell_sd"] = _sd(dab_sum.sum(axis=1), dab_sq.sum(axis=1), n_cell)
    columns["dab_cell_alt"] = _mean(alt_sum.sum(axis=1), n_cell)
    columns["hematoxylin_nucleus"] = _mean(hem_sum, count[:, 0])
    for s, name in enumerate(SECTOR_COLUMNS):
        columns[name] = sector_dab[:, s]
    index = pd.RangeIndex(1, count.shape[0] + 1, name="label")
    return pd.DataFrame(columns, index=index)
