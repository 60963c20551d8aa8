"""Plain NumPy / scikit-image references for every kernel and fast path (DESIGN section 6).

Each function here is written for clarity, from the definitions in DESIGN section 5, with
no lookup tables, no fixed point and no Numba; the package's kernels must agree with them.
The ``reference_pipeline_*`` functions are also the speed baseline of the benchmark:
vectorised library calls only.
"""

from __future__ import annotations

import heapq

import numpy as np
from scipy import ndimage as ndi
from skimage import filters, morphology, segmentation
from skimage.feature import peak_local_max

N_SECTORS = 16


def deconvolve(rgb, i0, matrix):
    """Float64 Beer-Lambert deconvolution: OD per channel, then OD @ inv(M).

    Returns hematoxylin and DAB concentration planes (float64, not clipped).
    """
    i0 = np.asarray(i0, dtype=np.float64)
    values = rgb.astype(np.float64)
    od = -np.log10(np.clip(values, 1.0, i0) / i0)
    concentrations = od @ np.linalg.inv(np.asarray(matrix, dtype=np.float64))
    return concentrations[..., 0], concentrations[..., 1]


def _mean_by_label(values, labels, n):
    counts = np.bincount(labels, minlength=n + 1)
    sums = np.bincount(labels, weights=values, minlength=n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)[1:], counts[1:]


#: Compartments as sets of codes: 1 nucleus, 2 cytoplasm, 3 band, 4 capture ring, 5 band on
#: a DAB ridge, 6 ring on a DAB ridge (DESIGN section 5).
COMPARTMENT_CODES = {"nucleus": (1,), "cytoplasm": (2, 4), "membrane": (3, 5, 6)}
BAND_CODES, RIDGE_CODES = (3, 5), (5, 6)


def on_centroid_grid(centroids):
    """Centroids rounded to 2**-20 px, about which sectors are taken (as ``measure_cells``)."""
    return np.round(np.asarray(centroids, dtype=np.float64) * 2.0**20) / 2.0**20


def _sector_means(values, cells, where, centroid_row, centroid_col, n):
    """(n + 1, 16) means of ``values`` over the pixels ``where`` per cell and sector (atan2 about
    the centroids on the 2**-20 px grid), and counts."""
    centroid_row, centroid_col = on_centroid_grid(centroid_row), on_centroid_grid(centroid_col)
    rows, cols = np.nonzero(where & (cells > 0))
    labels = cells[rows, cols]
    flat = labels * N_SECTORS + sector(rows - centroid_row[labels], cols - centroid_col[labels])
    sums = np.bincount(flat, weights=values[rows, cols], minlength=(n + 1) * N_SECTORS)
    counts = np.bincount(flat, minlength=(n + 1) * N_SECTORS)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / counts, np.nan)
    return means.reshape(n + 1, N_SECTORS), counts.reshape(n + 1, N_SECTORS)


def located_membrane(dab, cells, codes, centroid_row, centroid_col, min_line_sectors=6):
    """The membrane where it is, by definition: per sector the mean DAB of its ridge pixels
    (codes 5, 6), else of its band pixels (3, 5); per cell the mean over its ridge sectors when
    there are at least ``min_line_sectors`` of them, else over the sectors that have either
    (NaN if none). Returns ((n,) membrane, (n, 16) sector values, (n,) sectors with ridge pixels)."""
    n = int(cells.max())
    ridge, n_ridge = _sector_means(dab, cells, np.isin(codes, RIDGE_CODES), centroid_row, centroid_col, n)
    band, _ = _sector_means(dab, cells, np.isin(codes, BAND_CODES), centroid_row, centroid_col, n)
    sectors = np.where(n_ridge > 0, ridge, band)[1:]
    membrane = np.full(n, np.nan)
    for i in range(n):
        line = n_ridge[i + 1] > 0
        values = sectors[i][line] if line.sum() >= min_line_sectors else sectors[i][~np.isnan(sectors[i])]
        if values.size:
            membrane[i] = values.mean()
    return membrane, sectors, (n_ridge[1:] > 0).sum(axis=1)


def cell_statistics(dab, hematoxylin, cells, codes, centroid_row, centroid_col):
    """Per-cell compartment means of DAB (and nuclear hematoxylin) and the located membrane.

    Returns a dict of (n,) arrays: ``dab_nucleus``, ``dab_cytoplasm``, ``dab_membrane``
    (:func:`located_membrane`), ``membrane_line_sectors``, ``dab_membrane_band`` (codes 3, 5),
    ``dab_cell``, ``hematoxylin_nucleus``, ``n_<compartment>``, and ``sectors`` (n, 16).
    """
    n = int(cells.max())
    out = {}
    inside = cells > 0
    for name, compartment in COMPARTMENT_CODES.items():
        where = np.isin(codes, compartment) & inside
        out[f"dab_{name}"], out[f"n_{name}"] = _mean_by_label(dab[where], cells[where], n)
    band = np.isin(codes, BAND_CODES) & inside
    out["dab_membrane_band"], _ = _mean_by_label(dab[band], cells[band], n)
    out["dab_membrane"], out["sectors"], out["membrane_line_sectors"] = located_membrane(
        dab, cells, codes, centroid_row, centroid_col)
    out["dab_cell"], _ = _mean_by_label(dab[inside], cells[inside], n)
    nucleus = (codes == 1) & inside
    out["hematoxylin_nucleus"], _ = _mean_by_label(hematoxylin[nucleus], cells[nucleus], n)
    return out


def dab_ridges(dab, *, mpp, sigma_um=0.5, radius_um=1.5, min_rise=0.04, min_contrast=0.5):
    """DAB ridge pixels by definition (``segment.dab_ridges``): scipy's Gaussian (mirrored
    border, cut at 3 sigmas), the opening by ``morphology.disk`` (outside ignored), rise >=
    ``min_rise`` and >= ``min_contrast`` x the opening, and >= both neighbours along a row, a column or a
    diagonal; the outermost pixels are not ridges."""
    smoothed = ndi.gaussian_filter(dab.astype(np.float64), sigma_um / mpp, mode="mirror", truncate=3.0)
    radius = int(round(radius_um / mpp))
    opened = disk_filter(disk_filter(smoothed, radius, take_max=False), radius, take_max=True)
    rise = smoothed - opened
    ridge = (rise >= min_rise) & (rise >= min_contrast * opened)
    crest = np.zeros_like(ridge)
    c = smoothed[1:-1, 1:-1]
    for dy, dx in ((1, 0), (0, 1), (1, 1), (1, -1)):
        before = smoothed[1 - dy : smoothed.shape[0] - 1 - dy, 1 - dx : smoothed.shape[1] - 1 - dx]
        after = smoothed[1 + dy : smoothed.shape[0] - 1 + dy, 1 + dx : smoothed.shape[1] - 1 + dx]
        crest[1:-1, 1:-1] |= (c >= before) & (c >= after)
    return ridge & crest


def brown_outlines(labels, dab, *, mpp, sigma_um, min_dab=0.4, reach_um=3.0, fraction=0.3):
    """Brown nuclei grown by definition (``segment.brown_outlines``): nuclei with mean DAB >=
    ``min_dab`` expanded by ``reach_um`` (``skimage.segmentation.expand_labels``, the others
    left out), keeping the new pixels outside every nucleus whose DAB, smoothed by scipy's
    Gaussian (mirrored border, cut at 3 sigmas), is >= ``fraction`` x that nucleus's mean."""
    n = int(labels.max())
    mean = ndi.mean(dab.astype(np.float64), labels, index=np.arange(n + 1))
    brown = np.asarray(mean) >= min_dab
    brown[0] = False
    grown = segmentation.expand_labels(np.where(brown[labels], labels, 0), distance=reach_um / mpp)
    smoothed = ndi.gaussian_filter(dab.astype(np.float64), sigma_um / mpp, mode="mirror", truncate=3.0)
    take = (labels == 0) & (grown > 0) & (smoothed >= fraction * np.asarray(mean)[grown])
    return np.where(take, grown, labels)


def reference_pipeline_ridges(hematoxylin, dab, *, mpp, radius_um=1.0):
    """(hematoxylin without ridges, ridges): :func:`dab_ridges`, and on the ridges and their
    8 neighbours the hematoxylin lowered to its opening by ``morphology.disk``."""
    ridges = dab_ridges(dab, mpp=mpp)
    radius = int(round(radius_um / mpp))
    opened = disk_filter(disk_filter(hematoxylin, radius, take_max=False), radius, take_max=True)
    near = ndi.binary_dilation(ridges, structure=np.ones((3, 3), bool))
    return np.where(near, np.minimum(opened, hematoxylin), hematoxylin), ridges


def quantised_cell_sums(rgb, cells, codes, tables, alt_dab_table, centroid_row, centroid_col, in_scope):
    """The integer sums ``measure.measure_cells`` accumulates, pixel by pixel in NumPy.

    Concentrations are the float32 sums of the three channels' table entries, added in
    channel order; q = rint(float64(x) * 2**20) (DESIGN section 6). Returns a dict of int64
    arrays over labels 1..n: ``count``, ``dab_sum``, ``dab_sq`` and ``alt_sum`` (n, 6) for codes
    1-6, ``hem_sum`` (n,) of nucleus pixels, ``sectors`` (n, 16, 6): count, q(DAB) and
    q(alternative DAB) of band pixels (codes 3, 5), then of ridge pixels (5, 6), by sector
    (atan2, :func:`sector`), and ``hist`` (2, 200, 800): pixels of cells with in_scope >= 1, then
    == 2, by floor((H + 1) * 50) and floor((DAB + 1) * 200), clamped.
    """
    n = len(in_scope) - 1
    r, g, b = (rgb[..., c].astype(np.intp) for c in range(3))

    def concentration(table):
        return (table[0][r] + table[1][g]) + table[2][b]  # float32, in channel order

    def q(x):
        return np.rint(x.astype(np.float64) * 2.0**20).astype(np.int64)

    hem, dab = concentration(tables[0]), concentration(tables[1])
    q_dab, q_alt, q_hem = q(dab), q(concentration(alt_dab_table)), q(hem)
    inside = (cells > 0) & (codes > 0)
    k, m = cells[inside], codes[inside].astype(np.intp) - 1
    out = {}
    for name, values in (("count", np.ones_like(q_dab)), ("dab_sum", q_dab), ("dab_sq", q_dab * q_dab),
                         ("alt_sum", q_alt)):
        out[name] = np.zeros((n + 1, 6), np.int64)
        np.add.at(out[name], (k, m), values[inside])
        out[name] = out[name][1:]
    nucleus = inside & (codes == 1)
    out["hem_sum"] = np.zeros(n, np.int64)
    np.add.at(out["hem_sum"], cells[nucleus] - 1, q_hem[nucleus])
    out["sectors"] = np.zeros((n + 1, N_SECTORS, 6), np.int64)
    centroid_row, centroid_col = on_centroid_grid(centroid_row), on_centroid_grid(centroid_col)
    for first, selected in ((0, BAND_CODES), (3, RIDGE_CODES)):
        rows, cols = np.nonzero(inside & np.isin(codes, selected))
        labels = cells[rows, cols]
        sectors = sector(rows - centroid_row[labels], cols - centroid_col[labels])
        for offset, values in enumerate((np.ones_like(q_dab), q_dab, q_alt)):
            np.add.at(out["sectors"], (labels, sectors, first + offset), values[rows, cols])
    out["sectors"] = out["sectors"][1:]
    scope = np.asarray(in_scope).astype(np.int64)[cells]
    out["hist"] = np.zeros((2, 200, 800), np.int64)
    for plane, scoped in enumerate((inside & (scope >= 1), inside & (scope == 2))):
        hem_bin = np.clip((hem[scoped].astype(np.float64) + 1.0) * 50.0, 0.0, 199.0).astype(np.int64)
        dab_bin = np.clip((dab[scoped].astype(np.float64) + 1.0) * 200.0, 0.0, 799.0).astype(np.int64)
        np.add.at(out["hist"][plane], (hem_bin, dab_bin), 1)
    return out


def detect_nuclei(hematoxylin, *, mpp, background_radius_um=8.0, sigma_um=1.5,
                  threshold=0.1, min_area_um2=10.0, max_area_um2=400.0):
    """scikit-image nucleus detection with the same definitions as ``segment.detect_nuclei``.

    White top-hat (opening with a disk), Gaussian smoothing, threshold and half of the
    maximum within 5 um (grey dilation), closing, distance transform watershed seeded at
    maxima >= 2 um apart and >= 1 um deep, area filter.
    """
    radius = max(1, int(round(background_radius_um / mpp)))
    hem = hematoxylin - morphology.opening(hematoxylin, morphology.disk(radius))
    hem = filters.gaussian(hem, sigma=sigma_um / mpp, preserve_range=True)
    local_peak = morphology.dilation(hem, morphology.disk(int(round(5.0 / mpp))))
    foreground = (hem >= threshold) & (hem >= 0.5 * local_peak)
    foreground = morphology.closing(foreground, morphology.disk(1))
    components, _ = ndi.label(foreground, structure=np.ones((3, 3)))
    distance = filters.gaussian(ndi.distance_transform_edt(foreground), sigma=1.0, preserve_range=True)
    peaks = peak_local_max(distance, min_distance=max(1, int(round(2.0 / mpp))),
                           threshold_abs=1.0 / mpp, labels=components, exclude_border=False)
    markers = np.zeros(foreground.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    seeded = np.zeros(components.max() + 1, dtype=bool)
    seeded[components[tuple(peaks.T)]] = True
    unseeded = ~seeded[components] & foreground
    markers[unseeded] = components[unseeded] + len(peaks)
    labels = segmentation.watershed(-distance, markers, mask=foreground)
    area = np.bincount(labels.ravel()) * mpp * mpp
    keep = (area >= min_area_um2) & (area <= max_area_um2)
    keep[0] = False
    return np.where(keep[labels], labels, 0)


def membrane_band(cells, nuclei, *, band_px):
    """Membrane band by brute force: a cell pixel with another label (or none) within a disk."""
    footprint = morphology.disk(band_px)
    padded = np.pad(cells, band_px, mode="edge")
    near_other = np.zeros(cells.shape, dtype=bool)
    near_outside = np.zeros(cells.shape, dtype=bool)
    for di, dj in zip(*np.nonzero(footprint)):
        shifted = padded[di : di + cells.shape[0], dj : dj + cells.shape[1]]
        near_other |= (shifted != cells) & (shifted > 0)
        near_outside |= shifted == 0
    inside = cells > 0
    band = inside & (nuclei == 0) & (near_other | near_outside)
    return band, near_other


# --------------------------------------------------------------------------------------
# Pipeline reference (speed baseline of ``cxcr4score bench speed``)
# --------------------------------------------------------------------------------------
# One function per stage, the plain scikit-image / NumPy / pandas way: vectorised library
# calls, no lookup tables, no OpenCV, no Numba. The benchmark loads this file from the source
# checkout, times it against the package in the same run and compares their outputs.


def reference_pipeline_read(path):
    """Read the whole RGB image of a TIFF (tifffile.imread)."""
    import tifffile

    return tifffile.imread(path)


def reference_pipeline_deconvolve(rgb, i0, matrix):
    """Hematoxylin and DAB planes: :func:`deconvolve` (float64 Beer-Lambert)."""
    return deconvolve(rgb, i0, matrix)


def reference_pipeline_tissue(rgb, *, mpp, od_threshold=0.05, min_area_um2=2000.0, min_glass_fraction=0.01,
                              sigma_um=2.0, fine_um=1.0, texture_um=3.0, white_percentile=99.0, min_white=150.0,
                              glass_max_spread=0.015, glass_max_paler=0.02, glass_max_texture=0.008,
                              texture_factor=3.0, texture_min=0.006):
    """Tissue mask as ``tissue.tissue_mask`` defines it, with NumPy and scikit-image, at full resolution.

    OD summed over channels against the per-channel 99th percentile of every k-th pixel (k =
    pixels // 10^6, as ours; 255 where that is darker than ``min_white``), Gaussian smoothing;
    texture: the local standard deviation (over ``texture_um``) of the OD sum smoothed at
    ``fine_um``. Glass: the highest peak of the smoothed OD sum in 0.002 bins over [0, 0.15]
    whose spread (mode minus the 16th percentile below it, at least 0.001) is at most
    ``glass_max_spread``; a peak with more than ``glass_max_paler`` of the pixels three spreads
    below it, or whose pixels within two spreads have a median texture above
    ``glass_max_texture``, is passed over for the highest peak below it; glass needs at least
    ``min_glass_fraction`` of pixels within two spreads; a broader peak is passed over too.
    With glass, tissue is the smoothed OD
    sum ``od_threshold`` above the mode, or the texture at least max(``texture_min``,
    ``texture_factor`` x its median near the mode); without glass, the smoothed OD sum at or
    above ``od_threshold``. Then 8-connected fragments and holes smaller than ``min_area_um2``
    removed / filled.
    """
    pixels = rgb.reshape(-1, 3)
    white = np.percentile(pixels[:: max(1, len(pixels) // 1_000_000)], white_percentile, axis=0)  # same subsample
    if white.min() < min_white:
        white = np.full(3, 255.0)
    od = -np.log10(np.clip(rgb.astype(np.float64), 1.0, white) / white).sum(axis=2)
    smoothed = filters.gaussian(od, sigma=sigma_um / mpp, preserve_range=True)
    fine = filters.gaussian(od, sigma=fine_um / mpp, preserve_range=True)
    mean = filters.gaussian(fine, sigma=texture_um / mpp, preserve_range=True)
    texture = np.sqrt(np.maximum(filters.gaussian(fine**2, sigma=texture_um / mpp, preserve_range=True) - mean**2, 0))
    counts, edges = np.histogram(smoothed, bins=75, range=(0.0, 0.15))
    glass, upper = None, 75
    while glass is None and upper > 0 and counts[:upper].sum() >= min_glass_fraction * smoothed.size:
        peak = int(np.argmax(counts[:upper]))
        level = edges[peak] + 0.001
        below = smoothed[smoothed <= level]
        spread = max(level - np.percentile(below, 16), 0.001) if below.size else np.inf
        if spread > glass_max_spread:
            upper = peak
            continue
        near = np.abs(smoothed - level) <= 2 * spread
        paler = np.mean(smoothed < level - 3 * spread)
        if paler <= glass_max_paler and (not near.any() or np.median(texture[near]) <= glass_max_texture):
            glass = (level, near) if near.mean() >= min_glass_fraction else False
        else:
            upper = min(peak, int(np.floor((level - 3 * spread) / 0.002)))
    tissue = smoothed >= od_threshold
    if glass:
        level, near = glass
        threshold = max(texture_min, texture_factor * np.median(texture[near]))
        tissue = (smoothed - level >= od_threshold) | (texture >= threshold)
    min_px = max(1, int(round(min_area_um2 / mpp**2)))
    tissue = morphology.remove_small_objects(tissue, max_size=min_px - 1, connectivity=2)
    return morphology.remove_small_holes(tissue, max_size=min_px - 1, connectivity=2)


def reference_pipeline_nuclei(hematoxylin, *, mpp, background_radius_um=8.0, sigma_um=1.5,
                              threshold=0.1, min_area_um2=10.0, max_area_um2=400.0):
    """Nucleus labels 1..n: :func:`detect_nuclei` (parameters of ``segment.NucleusParams``), renumbered."""
    labels = detect_nuclei(hematoxylin, mpp=mpp, background_radius_um=background_radius_um, sigma_um=sigma_um,
                           threshold=threshold, min_area_um2=min_area_um2, max_area_um2=max_area_um2)
    return segmentation.relabel_sequential(labels)[0]


def reference_pipeline_compartments(nuclei, *, mpp, expansion_um=5.0, band_um=1.0, capture_um=0.0, ridges=None):
    """Cells, compartment codes and exposed band fraction, as ``segment`` defines them.

    Cells: ``skimage.segmentation.expand_labels``. Band: a cell pixel outside the nucleus
    with another cell (grey dilation / erosion of the labels over a disk differs from it) or
    no cell (erosion of the cell mask) within ``band_um``; borders replicated. Cytoplasm
    within ``capture_um - band_um`` of the band (binary dilation with a disk) is the capture
    ring (4) when ``capture_um`` > ``band_um``; band and ring pixels on ``ridges`` are 5 and 6.

    Returns
    -------
    cells : (M, N) ndarray of int
    codes : (M, N) ndarray of uint8
        0 background, 1 nucleus, 2 cytoplasm, 3 membrane, 4 capture ring, 5 / 6 on a ridge.
    exposed : (n + 1,) ndarray of float64
        Share of each cell's band near no other cell (NaN without band).
    """
    cells = segmentation.expand_labels(nuclei, distance=expansion_um / mpp)
    inside = cells > 0
    nucleus = (nuclei > 0) & inside

    def near_boundary(width_um):
        footprint = morphology.disk(max(1, int(round(width_um / mpp))))
        above = morphology.dilation(cells, footprint, mode="nearest") != cells
        big = np.iinfo(cells.dtype).max
        below = morphology.erosion(np.where(inside, cells, big), footprint, mode="nearest") != cells
        near_outside = ~morphology.erosion(inside, footprint, mode="nearest")
        return above | below, near_outside

    near_other, near_outside = near_boundary(band_um)
    band = inside & ~nucleus & (near_other | near_outside)
    ring = np.zeros_like(band)
    if capture_um > band_um:
        reach = morphology.disk(max(1, int(round((capture_um - band_um) / mpp))))
        ring = inside & ~nucleus & ~band & morphology.dilation(band, reach)
    on_ridge = np.zeros_like(band) if ridges is None else ridges.astype(bool)
    codes = np.select([nucleus, band & on_ridge, band, ring & on_ridge, ring, inside], [1, 5, 3, 6, 4, 2], 0)
    codes = codes.astype(np.uint8)
    n = int(cells.max())
    band_count = np.bincount(cells[band], minlength=n + 1)
    exposed_count = np.bincount(cells[band & ~near_other], minlength=n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        exposed = np.where(band_count > 0, exposed_count / band_count, np.nan)
    return cells, codes, exposed


def reference_pipeline_measure(dab, hematoxylin, nuclei, cells, codes, exposed):
    """Per-cell table: nucleus centroids (``ndi.center_of_mass``) and :func:`cell_statistics`.

    Returns
    -------
    pandas.DataFrame
        Index ``label`` 1..n; ``row``, ``col`` (nucleus centroid), the compartment means of
        :func:`cell_statistics` (``dab_membrane`` the located membrane, ``dab_membrane_band``
        the band mean), ``dab_membrane_sector_00`` .. ``_15`` and ``membrane_exposed_fraction``.
    """
    import pandas as pd

    n = int(cells.max())
    index = np.arange(1, n + 1)
    centroids = np.array(ndi.center_of_mass(np.ones(nuclei.shape), nuclei, index)).reshape(-1, 2)
    rows = np.concatenate([[np.nan], centroids[:, 0]])
    cols = np.concatenate([[np.nan], centroids[:, 1]])
    stats = cell_statistics(dab, hematoxylin, cells, codes, rows, cols)
    sectors = stats.pop("sectors")
    table = pd.DataFrame(stats, index=pd.Index(index, name="label"))
    table[[f"dab_membrane_sector_{s:02d}" for s in range(N_SECTORS)]] = sectors
    table.insert(0, "col", cols[1:])
    table.insert(0, "row", rows[1:])
    table["membrane_exposed_fraction"] = exposed[1 : n + 1]
    return table


def reference_pipeline_score(table, *, thresholds, mpp, compartments=("membrane", "cytoplasm"),
                             exposed_max=0.5, block_um=500.0):
    """Classes, class counts per block and the H-score, with NumPy and pandas.

    A compartment's class is the number of thresholds at or below its mean (NaN: none); an
    exposed cell's membrane takes its cytoplasm's class unless a line was located on at least
    6 of its sectors; the class is the highest of
    ``compartments``, else the whole cell's, else 0 (DESIGN section 5, class rule ``max``).

    Returns
    -------
    dict
        ``classes`` (n,) int, ``blocks`` (DataFrame of n0..n3 per block), ``counts`` (4,)
        and ``h_score``.
    """
    import pandas as pd

    def classify(values):
        values = np.asarray(values, dtype=np.float64)
        return np.where(np.isnan(values), -1, np.digitize(values, thresholds))

    per = {c: classify(table[f"dab_{c}"]) for c in ("nucleus", "cytoplasm", "membrane", "cell")}
    exposed = table["membrane_exposed_fraction"].to_numpy() > exposed_max
    exposed &= table["membrane_line_sectors"].to_numpy() < 6
    per["membrane"] = np.where(exposed, per["cytoplasm"], per["membrane"])
    classes = np.max([per[c] for c in compartments], axis=0)
    classes = np.where(classes < 0, per["cell"], classes)
    classes = np.where(classes < 0, 0, classes)
    block = (np.floor(table["row"].to_numpy() * mpp / block_um) * (1 << 20)
             + np.floor(table["col"].to_numpy() * mpp / block_um)).astype(np.int64)
    blocks = pd.crosstab(block, classes).reindex(columns=range(4), fill_value=0)
    counts = np.bincount(classes, minlength=4)
    return {"classes": classes, "blocks": blocks, "counts": counts,
            "h_score": 100.0 * float(counts @ np.arange(4)) / max(1, counts.sum())}


def disk_filter(image, radius, *, take_max, row_step=1):
    """Grey dilation (``take_max``) or erosion by ``morphology.disk(radius)``, outside ignored;
    with ``row_step`` s, only the disk rows at offsets that are multiples of s.

    scipy.ndimage with a constant border of -inf (dilation) or +inf (erosion), i.e. OpenCV's
    default border for ``cv2.dilate`` / ``cv2.erode``.
    """
    footprint = morphology.disk(radius).astype(bool)
    footprint[(np.arange(footprint.shape[0]) - radius) % row_step != 0] = False
    values = image.astype(np.float64)
    if take_max:
        return ndi.grey_dilation(values, footprint=footprint, mode="constant", cval=-np.inf)
    return ndi.grey_erosion(values, footprint=footprint, mode="constant", cval=np.inf)


def sector(dy, dx):
    """Membrane sector of offsets (dy, dx) from the centroid, by atan2 (as in cell_statistics)."""
    angle = np.arctan2(dy, dx)
    return np.minimum((angle + np.pi) / (2 * np.pi) * N_SECTORS, N_SECTORS - 1).astype(int)


def centroids_and_axis_ratio(labels, n):
    """Centroid rows, cols and sqrt(lambda_max / lambda_min) of the covariance (+ 1/12) per label 1..n.

    Central moments from the pixel coordinates of each label, one label at a time; NaN for
    empty labels.
    """
    rows, cols, ratio = (np.full(n, np.nan) for _ in range(3))
    for k in range(1, n + 1):
        r, c = np.nonzero(labels == k)
        if r.size == 0:
            continue
        rows[k - 1], cols[k - 1] = r.mean(), c.mean()
        cov = np.cov(np.stack([r, c]).astype(np.float64), bias=True) + np.eye(2) / 12
        low, high = np.linalg.eigvalsh(cov)
        ratio[k - 1] = np.sqrt(high / low)
    return rows, cols, ratio


def od_sum(rgb, white):
    """Float64 optical density summed over channels, against ``white``, clamped at 0."""
    white = np.asarray(white, dtype=np.float64)
    return -np.log10(np.clip(rgb.astype(np.float64), 1.0, white) / white).sum(axis=2)


def label_moments(labels, n, origin_row, origin_col):
    """Per label 1..n: (count, sum a, sum b, sum a^2, sum b^2, sum ab) of its pixels, a and b
    the row and column minus the label's origin; row 0: the count of label-0 pixels."""
    sums = np.zeros((n + 1, 6), np.int64)
    sums[0, 0] = np.count_nonzero(labels == 0)
    for k in range(1, n + 1):
        r, c = np.nonzero(labels == k)
        a, b = r - origin_row[k], c - origin_col[k]
        sums[k] = (r.size, a.sum(), b.sum(), (a * a).sum(), (b * b).sum(), (a * b).sum())
    return sums


def priority_flood(levels, markers, mask):
    """Marker watershed by a heap of (level, entry order), 4-connected (up, left, right, down).

    Markers enter in raster order; a popped pixel labels each unlabelled neighbour in the
    mask with its label and pushes it at max(its level, the popped level). scikit-image's
    ``watershed`` on the same levels, except that it takes markers of equal level in heap
    order, not raster order.
    """
    out = np.where(mask, markers, 0).astype(np.int32)
    heap = [(int(levels[p]), age, p) for age, p in enumerate(zip(*np.nonzero(out)))]
    heapq.heapify(heap)
    age = len(heap)
    while heap:
        level, _, (i, j) = heapq.heappop(heap)
        for di, dj in ((-1, 0), (0, -1), (0, 1), (1, 0)):
            y, x = i + di, j + dj
            if 0 <= y < mask.shape[0] and 0 <= x < mask.shape[1] and mask[y, x] and out[y, x] == 0:
                out[y, x] = out[i, j]
                heapq.heappush(heap, (max(int(levels[y, x]), level), age, (y, x)))
                age += 1
    return out


def split_per_component(components, distance, seeds, ids, levels_per_px):
    """Each component in ``ids`` split by its own :func:`priority_flood` of -distance
    quantised to ``levels_per_px``, from ``seeds``; the basins are numbered seed +
    components.max() + 1, and pixels no seed reaches keep the component's id."""
    labels = components.astype(np.int32)
    offset = int(components.max()) + 1
    for component in ids:
        mask = components == component
        levels = np.rint(-distance * levels_per_px).astype(np.int64)
        basins = priority_flood(levels - levels.min(), np.where(mask, seeds, 0), mask)
        reached = mask & (basins > 0)
        labels[reached] = basins[reached] + offset
    return labels


def upsample_mask(coarse, smoothed, factor, threshold, shape):
    """A block mask back on the pixel grid as ``tissue._upsample_mask`` defines it: blocks
    replicated (np.repeat), except blocks with an 8-neighbour of the other value (scipy grey
    dilation / erosion), where OpenCV's bicubic resize of ``smoothed`` is thresholded.
    Also returns the interpolated values (NaN outside edge blocks)."""
    import cv2

    rows, cols = coarse.shape
    edge = ndi.grey_dilation(coarse, size=3, mode="nearest") != ndi.grey_erosion(coarse, size=3, mode="nearest")
    upsample = lambda a: np.repeat(np.repeat(a, factor, axis=0), factor, axis=1)[: shape[0], : shape[1]]  # noqa: E731
    cubic = cv2.resize(smoothed, (cols * factor, rows * factor), interpolation=cv2.INTER_CUBIC)[: shape[0], : shape[1]]
    at_edge = upsample(edge)
    return np.where(at_edge, cubic >= threshold, upsample(coarse)), np.where(at_edge, cubic, np.nan)


def label_stats(labels, n):
    """Pixel count and bounding box (first row, first col, last row + 1, last col + 1) of labels
    1..n: ``np.bincount`` and ``scipy.ndimage.find_objects``; absent labels keep (big, big, 0, 0)."""
    areas = np.bincount(labels.ravel(), minlength=n + 1)[: n + 1].astype(np.int64)
    areas[0] = 0
    boxes = np.zeros((n + 1, 4), np.int64)
    boxes[:, :2] = np.iinfo(np.int64).max
    for k, box in enumerate(ndi.find_objects(labels, max_label=n), start=1):
        if box is not None:
            boxes[k] = box[0].start, box[1].start, box[0].stop, box[1].stop
    return areas, boxes


def peak_seeds(distance, window_max, min_depth, foreground):
    """Seed pixels (mask pixels at least ``min_depth`` deep that equal their window maximum) as
    raveled indices in raster order, and the 8-connected group of each (skimage ``label``, which
    numbers groups in raster order of their first pixel)."""
    from skimage.measure import label

    seeds = (foreground != 0) & (distance >= np.float32(min_depth)) & (distance >= window_max)
    groups = label(seeds, connectivity=2)
    flat = np.flatnonzero(seeds)
    return flat, groups.ravel()[flat].astype(np.int32)
