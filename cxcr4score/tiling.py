"""Tiles with a halo, so that a job's memory is bounded by the tile, never by the slide, and
chunks of tiles, so that a slide is a handful of jobs, not hundreds.

The analysis grid (the slide at the analysis pixel size) is cut into square cores; each is
read with a halo wide enough that every cell whose nucleus centroid lies in the core is
segmented and measured exactly as on the whole image, and a cell belongs to the tile whose
core holds its nucleus centroid (DESIGN section 6). A ``measure_chunk`` job measures the
tiles of one chunk in turn. Pure geometry: no pixels here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .celltype import NEIGHBOUR_RADIUS_UM
from .segment import BROWN_OUTLINE_UM, OUTLINE_WINDOW_UM, RIDGE_REACH_UM

#: Core sides are multiples of this (analysis pixels).
CORE_STEP_PX = 256


#: Most analysis pixels of a tile core, in millions: a job holds one tile at a time, and
#: 4 Mpix (2048 px) keeps it near 1 GB whatever its chunk_mpix.
TILE_MPIX = 4


def core_px(chunk_mpix):
    """Side of a tile core (analysis pixels) for config ``chunk_mpix``: the square root of that
    many pixels, at most :data:`TILE_MPIX`, to the nearest multiple of :data:`CORE_STEP_PX`
    (at least one)."""
    return CORE_STEP_PX * max(1, round(math.sqrt(min(chunk_mpix, TILE_MPIX) * 1e6) / CORE_STEP_PX))


def group_tiles(n_tiles, *, core_px, chunk_mpix):
    """The tiles of each chunk: runs of consecutive tiles (row-major, so strips of the slide)
    whose cores add up to about ``chunk_mpix`` million pixels (at least one tile).

    Returns
    -------
    list of list of int
        Tile indices per chunk, in order.
    """
    per_chunk = max(1, round(chunk_mpix * 1e6 / core_px**2))
    return [list(range(start, min(start + per_chunk, n_tiles))) for start in range(0, n_tiles, per_chunk)]


@dataclass(frozen=True)
class Tile:
    """One tile: its core (owned cells) and the halo-expanded box that is read, in analysis px.

    Boxes are ``(top, left, bottom, right)``, bottom/right exclusive; the read box is clipped
    to the slide.
    """

    index: int
    core: tuple[int, int, int, int]
    read: tuple[int, int, int, int]

    def to_json(self):
        """A JSON-serialisable dict (for the slide_info checkpoint)."""
        return {"index": self.index, "core": list(self.core), "read": list(self.read)}

    @classmethod
    def from_json(cls, data):
        """Inverse of :meth:`to_json`."""
        return cls(int(data["index"]), tuple(data["core"]), tuple(data["read"]))


def halo_um(config):
    """Halo width (um) from the configuration.

    The reach of what decides a nucleus's outline: the largest nucleus kept (diameter of a disc
    of ``max_area_um2``), 3 sigma of the smoothing, twice the background radius (an opening is
    an erosion then a dilation), the outline window, the reach of DAB ridges into the
    hematoxylin (``segment.RIDGE_REACH_UM``) and the growth of brown nuclei
    (``segment.BROWN_OUTLINE_UM``); beyond it, the farther of the cell expansion and membrane
    band around the nucleus and the neighbours its type is read from
    (``celltype.NEIGHBOUR_RADIUS_UM``), whose outlines must be whole too. About 84 um at
    defaults.
    """
    nuclei = config["nuclei"]
    diameter = 2.0 * math.sqrt(nuclei["max_area_um2"] / math.pi)
    nucleus_reach = (diameter + 3.0 * nuclei["sigma_um"] + 2.0 * nuclei["background_radius_um"]
                     + OUTLINE_WINDOW_UM + RIDGE_REACH_UM + BROWN_OUTLINE_UM)
    cell_reach = config["cell_expansion_um"] + max(config["membrane_band_um"], config["membrane_capture_um"])
    return nucleus_reach + max(cell_reach, NEIGHBOUR_RADIUS_UM)


def plan_tiles(shape, *, halo_px, core_px, tissue=None):
    """Tiles covering an analysis grid of ``shape``, skipping those with no tissue.

    Parameters
    ----------
    shape : (int, int)
        Rows and columns of the slide at analysis resolution.
    halo_px : int
        Halo width in analysis pixels.
    core_px : int
        Core side in analysis pixels.
    tissue : (P, Q) ndarray of bool, optional
        Tissue mask on a coarser grid spanning the same slide; a tile is kept when its read
        box (core plus halo) holds any tissue. Every tile is kept when omitted.

    Returns
    -------
    list of Tile
        Row-major; indices 0..k-1 in that order.
    """
    rows, cols = int(shape[0]), int(shape[1])
    if rows <= 0 or cols <= 0 or core_px <= 0 or halo_px < 0:
        raise ValueError(f"need a positive shape and core and a non-negative halo, got {shape}, {core_px}, {halo_px}")
    tiles = []
    for top in range(0, rows, core_px):
        for left in range(0, cols, core_px):
            core = (top, left, min(top + core_px, rows), min(left + core_px, cols))
            read = (max(0, core[0] - halo_px), max(0, core[1] - halo_px),
                    min(rows, core[2] + halo_px), min(cols, core[3] + halo_px))
            if tissue is None or _has_tissue(tissue, read, (rows, cols)):
                tiles.append(Tile(len(tiles), core, read))
    return tiles


def _has_tissue(tissue, box, shape):
    scale_r, scale_c = tissue.shape[0] / shape[0], tissue.shape[1] / shape[1]
    top, left = int(box[0] * scale_r), int(box[1] * scale_c)
    bottom, right = max(top + 1, math.ceil(box[2] * scale_r)), max(left + 1, math.ceil(box[3] * scale_c))
    return bool(np.any(tissue[top:bottom, left:right]))


def in_core(rows, cols, tile):
    """Which centroids (analysis px, relative to the read box) lie in the tile's core."""
    top, left = tile.core[0] - tile.read[0], tile.core[1] - tile.read[1]
    bottom, right = tile.core[2] - tile.read[0], tile.core[3] - tile.read[1]
    rows, cols = np.asarray(rows), np.asarray(cols)
    return (rows >= top - 0.5) & (rows < bottom - 0.5) & (cols >= left - 0.5) & (cols < right - 0.5)
