"""A small fixed measurement, run in a subprocess with NUMBA_DISABLE_JIT=1 by test_kernels.

usage: python tests/nojit_case.py OUT.npz
"""

import sys

import numpy as np

from cxcr4score import measure, stains
from cxcr4score._kernels import area_resize_kernel


def measure_small_case():
    """Deconvolve, measure and area-resize a fixed random 40 x 48 image with 8 blocky cells."""
    rng = np.random.default_rng(11)
    rgb = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
    cells = np.kron(rng.integers(0, 9, size=(10, 12)), np.ones((4, 4), dtype=np.int64)).astype(np.int32)
    codes = rng.integers(1, 4, size=cells.shape).astype(np.uint8)
    codes[cells == 0] = 0
    matrix = stains.stain_matrix()
    tables = stains.concentration_tables((244.0, 240.0, 251.0), matrix)
    rows, cols, _ = measure.nucleus_centroids(np.where(codes == 1, cells, 0), 8)
    table, hist = measure.measure_cells(
        rgb, cells, codes, n_cells=8, tables=tables, alt_dab_table=tables[1],
        centroid_row=np.nan_to_num(rows), centroid_col=np.nan_to_num(cols),
        in_scope=np.ones(9, dtype=bool),
    )
    _, dab = measure.deconvolve(rgb, tables)
    resized = np.empty((13, 17, 3), np.uint8)
    area_resize_kernel(rgb, resized, 2, 3, 4, 6, 1.37, 1.41)
    return table, hist, dab, resized


if __name__ == "__main__":
    table, hist, dab, resized = measure_small_case()
    np.savez(sys.argv[1], table=table.to_numpy(), hist=hist, dab=dab, resized=resized)
