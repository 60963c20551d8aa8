"""The analysis grid of a slide: which pyramid level is read, at what pixel size, and how.

Coordinates: *level-0* pixels of the file, *level* pixels of the pyramid level that is read,
and *analysis* pixels of the grid the science runs on (DESIGN section 3: the coarsest level
with mpp <= analysis_mpp x 1.05, area-averaged down to analysis_mpp). Pixel centres sit at
integer coordinates in every plane, so a point maps as ``(a + 0.5) * f - 0.5``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._kernels.resample import area_resize_kernel
from .pixel_size import MPP_TOLERANCE

#: Longest side of the overview (tissue mask, background, QC thumbnail), in pixels.
OVERVIEW_PX = 2048
#: Rows of a level decoded at once while building the overview.
_BAND_ROWS = 2048
#: Level pixels per analysis pixel from which :func:`read_box` may read the level at half
#: resolution: the half-resolution plane then has mpp <= analysis_mpp x (1 + MPP_TOLERANCE),
#: the rule :func:`choose_grid` applies to pyramid levels.
_HALF_FROM = 2 / (1 + MPP_TOLERANCE)


@dataclass(frozen=True)
class Grid:
    """How a slide maps onto the analysis grid."""

    level: int
    level_shape: tuple[int, int]
    level_mpp: float  # um per level pixel
    mpp: float  # um per analysis pixel (effective)
    shape: tuple[int, int]  # analysis grid (rows, cols)
    native_mpp: float  # um per level-0 pixel

    @property
    def level_per_analysis(self):
        """Level pixels per analysis pixel (1.0 when the level is used as it is)."""
        return self.mpp / self.level_mpp

    @property
    def to_level0(self):
        """Level-0 pixels per analysis pixel."""
        return self.mpp / self.native_mpp


def choose_grid(levels, *, native_mpp, analysis_mpp):
    """The level to read and the analysis grid it gives.

    Parameters
    ----------
    levels : sequence of slide_reader.Level
        Pyramid levels, finest first.
    native_mpp : float
        Level-0 pixel size (um).
    analysis_mpp : float

    Returns
    -------
    Grid
        The coarsest level with mpp <= ``analysis_mpp`` x 1.05 (level 0 if all are coarser);
        a level finer than ``analysis_mpp`` x 0.95 is area-averaged to ``analysis_mpp``.
    """
    fine_enough = [k for k, lv in enumerate(levels) if native_mpp * lv.downsample <= analysis_mpp * (1 + MPP_TOLERANCE)]
    level = max(fine_enough, key=lambda k: levels[k].downsample) if fine_enough else 0
    shape = tuple(int(v) for v in levels[level].shape)
    level_mpp = native_mpp * levels[level].downsample
    if level_mpp >= analysis_mpp * (1 - MPP_TOLERANCE):
        return Grid(level, shape, level_mpp, level_mpp, shape, native_mpp)
    out = tuple(max(1, round(v * level_mpp / analysis_mpp)) for v in shape)
    effective = level_mpp * (shape[0] / out[0] + shape[1] / out[1]) / 2
    return Grid(level, shape, level_mpp, effective, out, native_mpp)


def read_box(reader, grid, box, *, reduced_decode=True):
    """RGB of an analysis-grid box ``(top, left, bottom, right)``, area-averaged as needed.

    Analysis pixel (i, j) is the area average of the level pixels under
    ``[i * Ly / Gy, (i + 1) * Ly / Gy) x [j * Lx / Gx, (j + 1) * Lx / Gx)`` (L level, G grid
    sizes), computed from global indices, so a box equals the same crop of the whole slide:
    tiles agree with the whole image exactly. (OpenCV's INTER_AREA resizes one array as a
    whole, so a tile resized on its own would be sampled on a shifted grid.)

    Parameters
    ----------
    reader : slide_reader.SlideReader
    grid : Grid
    box : tuple of int
        ``(top, left, bottom, right)`` in analysis pixels, inside the grid.
    reduced_decode : bool
        Where the analysis pixel is at least about twice the level's (``Ly / Gy`` and
        ``Lx / Gx`` >= 2 / 1.05, the tolerance by which :func:`choose_grid` accepts a level)
        and the reader can decode the level at half resolution in the codec (JPEG tiles:
        :meth:`~cxcr4score.slide_reader.SlideReader.half_shape`), read the level at half
        resolution and area-average that onto the grid (the same rule with ``L / 2``):
        about 2.4 times faster on 40x slides, and within one grey level of the exact
        average on average (docs/performance.md). False always averages decoded level
        pixels.

    Returns
    -------
    (bottom - top, right - left, 3) ndarray of uint8
    """
    top, left, bottom, right = (int(v) for v in box)
    if grid.level_per_analysis == 1.0:
        return reader.read_region(grid.level, top, left, bottom - top, right - left)
    (level_rows, level_cols), (rows, cols) = grid.level_shape, grid.shape
    half = (reduced_decode and min(level_rows / rows, level_cols / cols) >= _HALF_FROM
            and reader.half_shape(grid.level) is not None)
    # The plane read is the level (d = 1) or the level at half resolution (d = 2), whose pixel k
    # spans level pixels [2k, 2k + 2): analysis pixel i spans [i * L / (d G), (i + 1) * L / (d G)).
    d = 2 if half else 1
    read = reader.read_region_half if half else reader.read_region
    # Plane pixels under the box, in integer arithmetic (floor and ceil of k * L / (d G)).
    p_top, p_left = top * level_rows // (d * rows), left * level_cols // (d * cols)
    p_bottom, p_right = -(-bottom * level_rows // (d * rows)), -(-right * level_cols // (d * cols))
    region = read(grid.level, p_top, p_left, p_bottom - p_top, p_right - p_left)
    if (level_rows, level_cols) == (d * rows, d * cols):
        return region  # exactly the grid: area averaging would copy it
    out = np.empty((bottom - top, right - left, 3), np.uint8)
    area_resize_kernel(np.ascontiguousarray(region), out, top, left, p_top, p_left,
                       level_rows / (d * rows), level_cols / (d * cols))
    return out


def read_overview(reader, grid, *, max_px=OVERVIEW_PX):
    """A low-resolution RGB of the whole slide, from the coarsest fitting level, band by band.

    Returns
    -------
    rgb : (P, Q, 3) ndarray of uint8
    mpp : float
        Its pixel size: the analysis pixel size when the whole grid fits in ``max_px`` (then
        the overview *is* the analysis image), else coarser.
    """
    factor = max(grid.shape) / max_px
    if factor <= 1.0:
        return read_box(reader, grid, (0, 0, *grid.shape)), grid.mpp
    overview = choose_grid(reader.levels, native_mpp=grid.native_mpp, analysis_mpp=grid.mpp * factor)
    band = max(1, int(_BAND_ROWS / overview.level_per_analysis))  # overview rows per read
    rows = [read_box(reader, overview, (top, 0, min(top + band, overview.shape[0]), overview.shape[1]))
            for top in range(0, overview.shape[0], band)]
    return np.concatenate(rows, axis=0), overview.mpp
