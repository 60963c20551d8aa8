"""Colour deconvolution by table lookup: one read of the RGB image, one or two planes written.

The tables fold the optical density of each 8-bit channel value and the inverse stain
matrix (:func:`cxcr4score.stains.concentration_tables`); the two-plane kernel reads a pair
table whose rows hold the red and green channels' summed contributions, so a pixel costs
two lookups (:func:`cxcr4score.stains.channel_pair_rows`).
"""

import numba
import numpy as np

from .vector import _sum_rows_into_planes


#: Rows of a channel-pair table (:func:`cxcr4score.stains.channel_pair_rows`): row 256 r + g holds the red and
#: green channels' summed contributions, row RG_ROWS + b the blue channel's.
RG_ROWS = 256 * 256


@numba.njit(cache=True)
def _pair_rows(r, g, b):
    """The pair-table rows of a pixel: 256 r + g (red and green) and RG_ROWS + b (blue)."""
    return np.int64(r) * 256 + np.int64(g), RG_ROWS + np.int64(b)


@numba.njit(parallel=True, cache=True)
def deconvolve_kernel(rgb, pairs, hematoxylin, dab):
    """hematoxylin[i, j], dab[i, j] = pairs[256 r + g] + pairs[RG_ROWS + b] for the pixel's (r, g, b).

    Two 8-byte loads a pixel instead of six 4-byte ones (faster than both the six scalar
    lookups and the loop vectoriser's gathers).
    """
    n_rows, n_cols = rgb.shape[0], rgb.shape[1]
    for i in numba.prange(n_rows):
        row, planes = rgb[i], (hematoxylin[i], dab[i])
        for j in range(n_cols):
            rg, b = _pair_rows(row[j, 0], row[j, 1], row[j, 2])
            _sum_rows_into_planes(planes, j, pairs, rg, b)
