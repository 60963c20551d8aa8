"""Cell type from nucleus morphology: tumour, immune (lymphocyte), stroma (spindle) or unknown.

CXCR4 is also expressed by lymphocytes, so scoring every detected cell can make a
tumour-negative slide with a positive infiltrate look eligible. These rules use textbook
nuclear morphology and the nuclei around each cell (measured in its tile, whose halo holds
them: the same answer however the slide was tiled), not a trained model:

- stroma: spindle nuclei (fibroblasts, endothelium), long axis at least 1.8 times the short
  (spindle nuclei are 2.5-6 times longer than wide; blur and pixels round thin ones) and
  thin: at most 5.5 um wide (an ovoid carcinoma nucleus is elongated too, but wide); and
  small nuclei outside nests (below);
- immune: small (a lymphocyte nucleus is 7-8 um across; as outlined, <= 65 um^2), round and
  dense, darker than the slide's larger nuclei;
- tumour: the other nuclei of at least 20 um^2 (carcinoma nuclei are usually 40-100 um^2);
  one smaller than 40 um^2 only among tumour-sized neighbours (a nest), else stroma;
- unknown: the rest (fragments, debris).

Context enters twice, from the nuclei around each cell (:func:`neighbour_nucleus_area`):
carcinoma grows in cohesive nests of large nuclei, stroma and infiltrates do not. A small
nucleus with the shape of neither a fibroblast nor a lymphocyte (a fibroblast cut across, a
histiocyte) is tumour only in a nest; and the darkness reference is taken from the large nuclei
of nests, so that the pale fibroblasts of a stroma-rich slide do not lower it until tumour
nuclei read as lymphocytes.

The result is a morphology-based tumour source (``tumour_source: morphology``): a
pathologist still reviews the call, and an ROI of the invasive tumour remains the stronger
delineation.
"""

from __future__ import annotations

import numpy as np

CELL_TYPES = ("tumour", "immune", "stroma", "unknown")
#: Long-to-short axis ratio from which a nucleus is spindle-shaped (stroma); below the 2.5 of
#: textbook spindle nuclei because a 2-4 um wide nucleus is rounded by blur and pixels.
SPINDLE_AXIS_RATIO = 1.8
#: Widest spindle nucleus (um; the short axis of the ellipse with the nucleus's area and axis
#: ratio). A fibroblast nucleus is 1.5-3 um wide and blur and outlining add about 2 um
#: (generated fibroblasts measure 4.5-5.1 um); an ovoid carcinoma nucleus is 5-10 um wide. On
#: real Ki67 fields a quarter of the pathologists' tumour nuclei are 1.8 times longer than wide,
#: most of them wider than this: without it they were typed stroma.
SPINDLE_MAX_WIDTH_UM = 5.5
#: Largest lymphocyte nucleus as measured (um^2) and its most elongated shape. A lymphocyte
#: nucleus is a 7-8 um disc (38-50 um^2), and its outline at 0.5 um/px adds a rim: on real Ki67
#: fields the pathologists' lymphocytes measure 49 um^2 (median; 90th percentile 74) and 1.23
#: times longer than wide (90th percentile 1.56). The textbook 40 um^2 left 85% of them to the
#: tumour. 65 um^2 is a 9 um disc.
IMMUNE_MAX_AREA_UM2 = 65.0
IMMUNE_MAX_AXIS_RATIO = 1.6
#: A lymphocyte nucleus is at least this much darker (hematoxylin OD) than the median of the
#: slide's larger nuclei: condensed chromatin against the vesicular chromatin of carcinoma (real
#: lymphocytes 1.77 times, median, 10th percentile 1.39; tumour nuclei 1.01, 75th percentile
#: 1.29). With the wider size limit it is what keeps small dark tumour nuclei tumour.
IMMUNE_DARKNESS = 1.45
#: Nuclei larger than this (um^2) set the darkness reference: mostly carcinoma nuclei.
REFERENCE_MIN_AREA_UM2 = 40.0
#: Smallest nucleus taken as a tumour cell (um^2).
TUMOUR_MIN_AREA_UM2 = 20.0
#: A nucleus smaller than this (um^2) that is neither spindle nor lymphocyte is tumour only in a
#: nest: a carcinoma nucleus is usually 40-100 um^2, a fibroblast cut across 25-36 as outlined.
SMALL_NUCLEUS_MAX_UM2 = 40.0
#: Fewer larger nuclei in nests than this: the darkness reference is the median of all larger
#: nuclei; fewer larger nuclei: of all nuclei.
_MIN_REFERENCE_NUCLEI = 20
#: Reach of a cell's context (um): the nuclei whose centroids are this close to its own. Nest
#: cells are 12-18 um apart, so it holds a cell's ring of neighbours.
NEIGHBOUR_RADIUS_UM = 25.0
#: A nucleus is in a nest when the median area of the other nuclei within
#: :data:`NEIGHBOUR_RADIUS_UM` is at least this (um^2): carcinoma nuclei are 40-100 um^2, the
#: stroma's fibroblasts and lymphocytes about 25-30 as outlined at 0.5 um/px. On generated
#: stroma-rich tiles it holds 74-86% of the tumour cells and 4-15% of the others; on the real
#: Ki67 fields, where lymphocytes lie among tumour cells and measure 49 um^2 as outlined, nearly
#: every cell is in a nest, so it changes little there (method.md section 9).
NEST_NEIGHBOUR_AREA_UM2 = 32.0
#: Relative shift of the typing limits (lymphocyte darkness, area and roundness; spindle
#: width; the nest's neighbour area) under which a call is re-made: typing is a boundary too, and a call that rests on
#: cells near it is not stable (DESIGN section 5 re-makes the call under each variant).
TYPING_TOLERANCE = 0.1


def neighbour_nucleus_area(row_um, col_um, area_um2, *, radius_um=NEIGHBOUR_RADIUS_UM,
                           min_area_um2=TUMOUR_MIN_AREA_UM2):
    """Median nucleus area of the other nuclei whose centroids lie within ``radius_um`` of each
    nucleus's centroid; NaN for a nucleus with none.

    Parameters
    ----------
    row_um, col_um, area_um2 : (K,) array_like of float
        Nucleus centroids (um, any origin) and areas.
    radius_um : float, optional
    min_area_um2 : float, optional
        Smaller nuclei are not neighbours: fragments and debris (typed unknown), which on the
        real Ki67 fields made tumour nuclei beside them look out of a nest.

    Returns
    -------
    (K,) ndarray of float64
    """
    # Imported here: scipy.spatial adds about 23 MB to every job that imports the package.
    from scipy.spatial import cKDTree

    points = np.column_stack([np.asarray(row_um, float), np.asarray(col_um, float)])
    area = np.asarray(area_um2, dtype=float)
    out = np.full(len(area), np.nan)
    placed = np.flatnonzero(np.isfinite(points).all(axis=1))
    if len(placed) < 2:
        return out
    pairs = placed[cKDTree(points[placed]).query_pairs(radius_um, output_type="ndarray")]
    # Each pair counts for both nuclei, as long as the other one is a cell; a per-nucleus median
    # over the sorted neighbour areas.
    owner = np.concatenate([pairs[:, 0], pairs[:, 1]])
    other = area[np.concatenate([pairs[:, 1], pairs[:, 0]])]
    cell = other >= min_area_um2
    owner, other = owner[cell], other[cell]
    order = np.lexsort([other, owner])
    owner, other = owner[order], other[order]
    count = np.bincount(owner, minlength=len(area))
    has = count > 0
    start = (np.cumsum(count) - count)[has]
    out[has] = 0.5 * (other[start + (count[has] - 1) // 2] + other[start + count[has] // 2])
    return out


def darkness_reference(area_um2, darkness, neighbour_area_um2):
    """The slide's reference nuclear darkness: the median hematoxylin OD of its nuclei larger
    than ``REFERENCE_MIN_AREA_UM2`` that lie in nests (:data:`NEST_NEIGHBOUR_AREA_UM2`), of all
    its larger nuclei when fewer than 20 do, of all nuclei when fewer than 20 are larger; NaN
    without nuclei.

    Parameters
    ----------
    area_um2, darkness, neighbour_area_um2 : (K,) array_like of float
        Nucleus areas, mean nuclear hematoxylin OD and :func:`neighbour_nucleus_area`.

    Notes
    -----
    Without the nest condition the reference of a slide whose tumour is sparse in stroma is
    set by fibroblasts cut across (large, pale): on generated tiles with 12% tumour nests it
    fell from 0.41-0.44 to 0.36-0.37 OD and a quarter of the tumour nuclei read as lymphocytes.
    """
    area, darkness = np.asarray(area_um2, dtype=float), np.asarray(darkness, dtype=float)
    if not np.isfinite(darkness).any():
        return float("nan")
    large = area > REFERENCE_MIN_AREA_UM2
    nested = large & (np.asarray(neighbour_area_um2, dtype=float) >= NEST_NEIGHBOUR_AREA_UM2)
    for chosen in (nested, large):
        if chosen.sum() >= _MIN_REFERENCE_NUCLEI:
            return float(np.nanmedian(darkness[chosen]))
    return float(np.nanmedian(darkness))


def classify_cell_types(cells, *, shift=0.0, reference=None):
    """Cell type of every cell from its nucleus.

    Parameters
    ----------
    cells : pandas.DataFrame
        ``nucleus_area_um2``, ``nucleus_axis_ratio``, ``hematoxylin_nucleus`` and
        ``neighbour_nucleus_area_um2`` (:func:`neighbour_nucleus_area`) per cell (one slide).
    shift : float, optional
        Relative shift of every typing limit towards more tumour cells (positive: lymphocytes
        must be darker, smaller and rounder, spindles thinner, nests' neighbours smaller) or
        fewer (negative); 0 is the rule itself, ``-/+ TYPING_TOLERANCE`` the stability variants.
    reference : float, optional
        The slide's reference darkness (:func:`darkness_reference`); None (or NaN): that of
        ``cells``. The workflow passes the slide's, measured on its sampled tiles before any
        chunk, so that a chunk types its cells as the whole slide does.

    Returns
    -------
    (K,) ndarray of str
        One of :data:`CELL_TYPES` per cell.

    Notes
    -----
    A lymphocyte is darker than the reference by ``IMMUNE_DARKNESS``, so the rule follows the
    slide's own counterstain intensity.
    """
    area = cells["nucleus_area_um2"].to_numpy(float)
    ratio = cells["nucleus_axis_ratio"].to_numpy(float)
    darkness = cells["hematoxylin_nucleus"].to_numpy(float)
    neighbours = cells["neighbour_nucleus_area_um2"].to_numpy(float)
    types = np.full(len(cells), "unknown", dtype=object)
    if len(cells) == 0:
        return types
    if reference is None or not np.isfinite(reference):
        reference = darkness_reference(area, darkness, neighbours)
    width = np.sqrt(4.0 * area / (np.pi * ratio))
    spindle = (ratio >= SPINDLE_AXIS_RATIO) & (width <= SPINDLE_MAX_WIDTH_UM * (1.0 - shift))
    immune = (~spindle & (area <= IMMUNE_MAX_AREA_UM2 * (1.0 - shift))
              & (ratio <= 1.0 + (IMMUNE_MAX_AXIS_RATIO - 1.0) * (1.0 - shift))
              & (darkness >= IMMUNE_DARKNESS * (1.0 + shift) * reference))
    in_nest = neighbours >= NEST_NEIGHBOUR_AREA_UM2 * (1.0 - shift)
    small_outside = ~spindle & ~immune & (area >= TUMOUR_MIN_AREA_UM2) & (area < SMALL_NUCLEUS_MAX_UM2) & ~in_nest
    tumour = ~spindle & ~immune & ~small_outside & (area >= TUMOUR_MIN_AREA_UM2)
    types[spindle | small_outside] = "stroma"
    types[immune] = "immune"
    types[tumour] = "tumour"
    return types


def scored_cells(cell_types, in_region, *, tumour_cells):
    """Which cells are scored, and which are the region's immune cells (reported apart).

    Parameters
    ----------
    cell_types : (K,) ndarray of str
        From :func:`classify_cell_types`.
    in_region : (K,) ndarray of bool
        Cells in the scored region (the ROI, or every cell without one).
    tumour_cells : {'morphology', 'all'}
        Config ``tumour_cells``: score the region's tumour cells, or all its cells.

    Returns
    -------
    scored, immune : (K,) ndarray of bool
    """
    cell_types = np.asarray(cell_types)
    in_region = np.asarray(in_region, dtype=bool)
    scored = in_region & ((cell_types == "tumour") if tumour_cells == "morphology" else True)
    return scored, in_region & (cell_types == "immune")


def tumour_source(*, has_roi, tumour_cells):
    """Where a slide's scored tumour cells come from (DESIGN section 4 ``tumour_source``):
    ``roi``, else ``morphology`` (config ``tumour_cells: morphology``) or ``all_cells``."""
    if has_roi:
        return "roi"
    return "morphology" if tumour_cells == "morphology" else "all_cells"
