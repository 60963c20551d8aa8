"""A small fixed measurement, run in a subprocess with NUMBA_DISABLE_JIT=1 by test_kernels.

usage: python tests/nojit_case.py OUT.npz
"""

import sys

import numpy as np

from cxcr4score import measure, segment, stains, tissue
from cxcr4score._kernels.resample import area_resize_kernel


def measure_small_case():
    """Deconvolve, measure and area-resize a fixed random 40 x 48 image with 8 blocky cells."""
    rng = np.random.default_rng(11)
    rgb = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
    cells = np.kron(rng.integers(0, 9, size=(10, 12)), np.ones((4, 4), dtype=np.int64)).astype(np.int32)
    codes = rng.integers(1, 7, size=cells.shape).astype(np.uint8)  # every code, ridge codes too
    codes[cells == 0] = 0
    matrix = stains.stain_matrix()
    tables = stains.concentration_tables((244.0, 240.0, 251.0), matrix)
    rows, cols, _ = measure.nucleus_centroids(np.where(codes == 1, cells, 0), 8)
    table, hist = measure.measure_cells(
        rgb, cells, codes, n_cells=8, tables=tables, alt_dab_table=tables[1],
        centroid_row=np.nan_to_num(rows), centroid_col=np.nan_to_num(cols),
        in_scope=np.ones(9, dtype=bool),
    )
    _, dab = stains.deconvolve(rgb, tables)
    resized = np.empty((13, 17, 3), np.uint8)
    area_resize_kernel(rgb, resized, 2, 3, 4, 6, 1.37, 1.41)
    return table, hist, dab, resized


def segment_small_case():
    """Segment a fixed 56 x 80 image: two touching nuclei and one apart, plus the tissue mask
    (rows wider than 64 pixels, so that the run starts' 64-pixel words are taken too).

    Runs the morphology, labelling, expansion, compartment, moment, OD-sum and
    deconvolution and ridge kernels; returns their outputs by name.
    """
    rows, cols = np.indices((56, 80))
    discs = ((rows - 20) ** 2 + (cols - 18) ** 2 <= 64) | ((rows - 20) ** 2 + (cols - 33) ** 2 <= 64)
    discs |= (rows - 42) ** 2 + (cols - 48) ** 2 <= 36
    noise = np.random.default_rng(12).integers(0, 20, size=(56, 80, 3))
    rgb = (np.where(discs, 80, 225)[..., None] + noise).astype(np.uint8)
    tables = stains.concentration_tables((245.0, 245.0, 245.0), stains.stain_matrix())
    hematoxylin, dab = stains.deconvolve(rgb, tables)
    dab[10, 5:70] += 0.4  # a membrane line: ridges, and hematoxylin lowered beside them
    dab[(rows - 42) ** 2 + (cols - 48) ** 2 <= 64] += 0.8  # a brown nucleus, and its brown rim
    hematoxylin, ridges = segment.hematoxylin_and_ridges(hematoxylin, dab, mpp=0.5)
    nuclei = segment.detect_nuclei(hematoxylin, mpp=0.5, dab=dab)
    cells = segment.expand_cells(nuclei, mpp=0.5)
    codes, exposed = segment.compartments(cells, nuclei, mpp=0.5, capture_um=2.0, ridges=ridges)
    n = int(nuclei.max())
    centroid_row, _, _, axis_ratio = measure.nucleus_shape(nuclei, n)
    return {
        "hematoxylin": hematoxylin, "ridges": ridges, "nuclei": nuclei, "cells": cells, "codes": codes, "exposed": exposed,
        "centroid_row": centroid_row, "axis_ratio": axis_ratio,
        "tissue": tissue.tissue_mask(rgb, mpp=0.5, min_area_um2=5.0), "white": tissue.provisional_white(rgb),
    }


if __name__ == "__main__":
    table, hist, dab, resized = measure_small_case()
    np.savez(sys.argv[1], table=table.to_numpy(), hist=hist, dab=dab, resized=resized, **segment_small_case())
