"""Cells of a slide's sampled tissue tiles, measured as a chunk measures its cells.

``slide_info`` decides a few things per slide before any chunk is measured (whether the stain
is nuclear, the typing reference, how a call moves with the segmentation) from the cells of
some tissue tiles. Those tiles are small and have no halo; every cell found in one is kept.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import celltype, measure, segment, stains


def tile_cells(rgb, *, tables, mpp, config, baseline, dab_threshold=None):
    """Segment and measure every cell of one tile.

    Parameters
    ----------
    rgb : (M, N, 3) ndarray of uint8
        A tissue tile at ``mpp``.
    tables : ndarray
        :func:`cxcr4score.stains.concentration_tables` of the slide.
    mpp : float
    config : dict
        Effective configuration (nuclei, cell expansion and membrane keys).
    baseline : float
        The slide's nucleus baseline (:func:`cxcr4score.segment.signal_baseline`).
    dab_threshold : float, optional
        As :func:`cxcr4score.segment.segment_cells`.

    Returns
    -------
    pandas.DataFrame or None
        One row per cell: the columns of :func:`cxcr4score.measure.measure_cells`, plus
        ``membrane_exposed_fraction``, ``nucleus_area_um2``, ``nucleus_axis_ratio`` and
        ``neighbour_nucleus_area_um2`` (among the tile's nuclei); None without a nucleus.
    """
    hematoxylin, dab = stains.deconvolve(rgb, tables)
    nuclei, cells, codes, exposed = segment.segment_cells(hematoxylin, dab, mpp=mpp, config=config,
                                                          baseline=baseline, dab_threshold=dab_threshold)
    n = int(nuclei.max(initial=0))
    if n == 0:
        return None
    rows, cols, nucleus_px, axis_ratio = measure.nucleus_shape(nuclei, n)
    stats, _ = measure.measure_cells(rgb, cells, codes, n_cells=n, tables=tables,
                                     alt_dab_table=tables[stains.DAB], centroid_row=rows,
                                     centroid_col=cols, in_scope=np.ones(n + 1, np.uint8))
    stats["membrane_exposed_fraction"] = exposed[1 : n + 1]
    stats["nucleus_area_um2"] = nucleus_px[1:] * mpp**2
    stats["nucleus_axis_ratio"] = axis_ratio[1:]
    stats["neighbour_nucleus_area_um2"] = celltype.neighbour_nucleus_area(rows[1:] * mpp, cols[1:] * mpp,
                                                                        nucleus_px[1:] * mpp**2)
    return stats.reset_index(drop=True)


def sampled_cells(tiles, columns, **kwargs):
    """:func:`tile_cells` of every tile, the given columns, concatenated (typed columns kept
    when no tile holds a nucleus).

    Parameters
    ----------
    tiles : sequence of (M, N, 3) ndarray of uint8
    columns : sequence of str
        Columns of :func:`tile_cells` to keep.
    **kwargs
        As :func:`tile_cells`.

    Returns
    -------
    pandas.DataFrame
    """
    tables = [t[list(columns)] for t in (tile_cells(rgb, **kwargs) for rgb in tiles) if t is not None]
    if not tables:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in columns})
    return pd.concat(tables, ignore_index=True)
