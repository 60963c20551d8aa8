"""Numba kernels against the plain NumPy references in tests/reference.py (DESIGN section 6)."""

import importlib
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import cv2
import numba
import numpy as np
import pandas as pd
import pytest
from skimage import data

from cxcr4score import measure, runtime, stains
import cxcr4score._kernels
from cxcr4score._kernels import filters as filter_kernels
from cxcr4score._kernels import labels as label_kernels
from cxcr4score._kernels import resample as resample_kernels
from cxcr4score._kernels import rows as row_kernels
from cxcr4score._kernels.statistics import sector_of
from cxcr4score.constants import CYTOPLASM, MEMBRANE, MEMBRANE_RIDGE, MEMBRANE_RING, NUCLEUS, Q_SCALE, SECTOR_COLUMNS

from . import nojit_case, reference
from .threads import THREAD_COUNTS, needs_two_threads, numba_threads

MATRIX = stains.stain_matrix()


def _random_rgb(shape, seed):
    return np.random.default_rng(seed).integers(0, 256, size=(*shape, 3), dtype=np.uint8)


@pytest.mark.parametrize("i0", [(255.0, 255.0, 255.0), (241.3, 236.0, 247.9), (120.0, 200.0, 90.5)])
def test_deconvolve_matches_float64_beer_lambert(i0):
    """Reference: reference.deconvolve (float64 OD @ inv(M)), every 8-bit value, to 1e-5."""
    rgb = _random_rgb((64, 257), seed=1)
    rgb[0, :256] = np.arange(256)[:, None]  # every value in every channel
    hem, dab = stains.deconvolve(rgb, stains.concentration_tables(i0, MATRIX))
    ref_hem, ref_dab = reference.deconvolve(rgb, i0, MATRIX)
    assert hem.dtype == np.float32 and dab.dtype == np.float32
    np.testing.assert_allclose(hem, ref_hem, atol=1e-5, rtol=0, err_msg="hematoxylin")
    np.testing.assert_allclose(dab, ref_dab, atol=1e-5, rtol=0, err_msg="DAB")


def test_deconvolve_keeps_negative_concentrations_and_is_not_rgb2hed():
    """Reference: hand-worked Beer-Lambert: a pure-DAB pixel has DAB OD > 0 and H near 0."""
    i0 = np.array([250.0, 250.0, 250.0])
    dab_vector = MATRIX[1]
    pixel = np.round(i0 * 10 ** (-0.5 * dab_vector)).astype(np.uint8)
    hem, dab = stains.deconvolve(pixel.reshape(1, 1, 3), stains.concentration_tables(i0, MATRIX))
    assert abs(dab[0, 0] - 0.5) < 0.01  # rgb2hed would give about a sixth of this
    assert abs(hem[0, 0]) < 0.01
    white_ish = np.array([[[255, 255, 255]]], dtype=np.uint8)
    _, dab_glass = stains.deconvolve(white_ish, stains.concentration_tables((240.0, 240.0, 240.0), MATRIX))
    assert dab_glass[0, 0] == 0.0  # clamped at I0: glass brighter than I0 is OD 0, never negative OD


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 4), np.uint8)])
def test_deconvolve_rejects_non_rgb(bad):
    with pytest.raises(ValueError, match="uint8 RGB"):
        stains.deconvolve(bad, stains.concentration_tables((255, 255, 255), MATRIX))


def _random_cells(shape, n, seed):
    """Random blocky labels with random compartments (every code, every label arrangement)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, n + 1, size=(shape[0] // 4 + 1, shape[1] // 4 + 1))
    cells = np.kron(coarse, np.ones((4, 4), dtype=np.int64))[: shape[0], : shape[1]].astype(np.int32)
    codes = rng.choice([NUCLEUS, CYTOPLASM, MEMBRANE], size=shape).astype(np.uint8)
    codes[cells == 0] = 0
    return cells, codes


def _run_measure(rgb, cells, codes, i0, scope=None):
    n = int(cells.max())
    rows, cols, _ = measure.nucleus_centroids(np.where(codes == NUCLEUS, cells, 0), n)
    rows = np.nan_to_num(rows, nan=0.0)
    cols = np.nan_to_num(cols, nan=0.0)
    tables = stains.concentration_tables(i0, MATRIX)
    alt = stains.concentration_tables((255.0, 255.0, 255.0), MATRIX)[1]
    scope = np.ones(n + 1, dtype=bool) if scope is None else scope
    table, hist = measure.measure_cells(
        rgb, cells, codes, n_cells=n, tables=tables, alt_dab_table=alt, centroid_row=rows,
        centroid_col=cols, in_scope=scope,
    )
    return table, hist, rows, cols


def test_cell_statistics_match_reference():
    """Reference: reference.cell_statistics on float64 planes, random labels and compartments."""
    rgb = _random_rgb((150, 170), seed=2)
    cells, codes = _random_cells(rgb.shape[:2], 40, seed=3)
    codes = _with_ridges(codes, seed=4)
    i0 = (243.0, 239.5, 250.0)
    table, _, rows, cols = _run_measure(rgb, cells, codes, i0)
    hem, dab = reference.deconvolve(rgb, i0, MATRIX)
    ref = reference.cell_statistics(dab, hem, cells, codes, rows, cols)
    assert len(set(ref["membrane_line_sectors"])) > 3
    present = np.bincount(cells.ravel(), minlength=41)[1:] > 0
    for name in ("dab_nucleus", "dab_cytoplasm", "dab_membrane", "dab_cell", "hematoxylin_nucleus"):
        np.testing.assert_allclose(table[name].to_numpy()[present], ref[name][present], atol=1e-5, err_msg=name)
    for name in ("n_nucleus", "n_cytoplasm", "n_membrane", "membrane_line_sectors"):
        np.testing.assert_array_equal(table[name].to_numpy(), ref[name], err_msg=name)
    sectors = table[list(SECTOR_COLUMNS)].to_numpy()
    np.testing.assert_allclose(sectors, ref["sectors"], atol=1e-5, err_msg="sector means")
    _, ref_alt = reference.deconvolve(rgb, (255.0, 255.0, 255.0), MATRIX)
    ref_alt_stats = reference.cell_statistics(ref_alt, hem, cells, codes, rows, cols)
    np.testing.assert_allclose(table["dab_membrane_alt"].to_numpy()[present], ref_alt_stats["dab_membrane"][present], atol=1e-5)


def test_located_membrane_and_pooled_compartments_match_reference():
    """Reference: reference.located_membrane (per-sector masks by atan2) and plain means over
    the code sets: cytoplasm {2, 4}, membrane {3, 5, 6}, band {3, 5}."""
    rgb = _random_rgb((150, 170), seed=12)
    cells, codes = _random_cells(rgb.shape[:2], 40, seed=13)
    ring = np.random.default_rng(14).random(codes.shape) < 0.3
    codes[ring & (codes == CYTOPLASM)] = MEMBRANE_RING
    codes = _with_ridges(codes, seed=15)
    # Every third cell without a line, every third keeps it on one row only (a short line in
    # a few sectors): the three ways a cell's membrane is read.
    row_index = np.arange(codes.shape[0])[:, None]
    off_line = (cells % 3 == 0) | ((cells % 3 == 1) & (row_index % 9 != 0))
    codes = np.where(off_line & (codes >= MEMBRANE_RIDGE), codes - 2, codes).astype(np.uint8)
    assert {5, 6} <= set(np.unique(codes))
    i0 = (243.0, 239.5, 250.0)
    table, _, rows, cols = _run_measure(rgb, cells, codes, i0)
    _, dab = reference.deconvolve(rgb, i0, MATRIX)
    n = int(cells.max())
    _, n_ridge = reference._sector_means(dab, cells, codes >= MEMBRANE_RIDGE, rows, cols, n)
    line_sectors = (n_ridge[1:] > 0).sum(axis=1)
    assert (line_sectors == 0).any() and ((line_sectors > 0) & (line_sectors < 6)).any() and (line_sectors >= 6).any()
    membrane, sectors, ref_line_sectors = reference.located_membrane(dab, cells, codes, rows, cols)
    np.testing.assert_allclose(table["dab_membrane"].to_numpy(), membrane, atol=1e-5, equal_nan=True)
    np.testing.assert_array_equal(table["membrane_line_sectors"].to_numpy(), ref_line_sectors)
    np.testing.assert_allclose(table[list(SECTOR_COLUMNS)].to_numpy(), sectors, atol=1e-5, equal_nan=True)
    for name, selected in (("dab_membrane_band", (3, 5)), ("dab_cytoplasm", (2, 4))):
        where = np.isin(codes, selected) & (cells > 0)
        counts = np.bincount(cells[where], minlength=n + 1)[1:]
        sums = np.bincount(cells[where], weights=dab[where], minlength=n + 1)[1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            expected = np.where(counts > 0, sums / counts, np.nan)
        np.testing.assert_allclose(table[name].to_numpy(), expected, atol=1e-5, equal_nan=True, err_msg=name)
    membrane_px = np.isin(codes, (3, 5, 6)) & (cells > 0)
    np.testing.assert_array_equal(table["n_membrane"].to_numpy(), np.bincount(cells[membrane_px], minlength=n + 1)[1:])


def test_located_membrane_hand_worked():
    """A line in at least 6 of the 16 sectors is the membrane; a shorter one is averaged with
    the band's level in the other sectors; no line: the band's mean."""
    def cell(line_sectors, line=0.5, band=0.05):
        s = np.zeros((16, 6), np.int64)
        s[:, 0], s[:, 1], s[:, 2] = 10, round(10 * band * Q_SCALE), round(10 * band * Q_SCALE)
        s[:line_sectors, 3:] = [2, round(2 * line * Q_SCALE), round(2 * line * Q_SCALE)]
        return s
    sectors = np.stack([cell(6), cell(5), cell(0), cell(16), np.zeros((16, 6), np.int64)])
    sector_dab, membrane, membrane_alt, line_sectors = measure.located_membrane(sectors)
    assert measure.MIN_LINE_SECTORS == 6
    np.testing.assert_array_equal(line_sectors, [6, 5, 0, 16, 0])
    np.testing.assert_allclose(membrane[:4], [0.5, (5 * 0.5 + 11 * 0.05) / 16, 0.05, 0.5], atol=1e-6)
    assert np.isnan(membrane[4]) and np.isnan(sector_dab[4]).all()
    np.testing.assert_array_equal(membrane_alt, membrane)
    np.testing.assert_allclose(sector_dab[1, 4:6], [0.5, 0.05], atol=1e-6)


def test_cell_sd_matches_numpy():
    """Reference: np.std of the float64 DAB values of each cell."""
    rgb = _random_rgb((60, 60), seed=4)
    cells, codes = _random_cells(rgb.shape[:2], 6, seed=5)
    table, _, _, _ = _run_measure(rgb, cells, codes, (250.0, 250.0, 250.0))
    _, dab = reference.deconvolve(rgb, (250.0, 250.0, 250.0), MATRIX)
    for label in range(1, 7):
        values = dab[cells == label]
        if values.size:
            assert abs(table.loc[label, "dab_cell_sd"] - values.std()) < 1e-5


def test_pixel_histogram_matches_reference():
    """Reference: np.add.at binning of float64 H and DAB of in-scope cell pixels, then the split."""
    from cxcr4score.score import dab_bin_index

    rgb = _random_rgb((120, 90), seed=6)
    cells, codes = _random_cells(rgb.shape[:2], 20, seed=7)
    scope = np.full(21, measure.REGION, dtype=np.uint8)
    scope[::3] = 0
    scope[1::4] = measure.TUMOUR
    i0 = (245.0, 245.0, 245.0)
    _, both, _, _ = _run_measure(rgb, cells, codes, i0, scope=scope)
    hist, tumour = both
    hem, dab = reference.deconvolve(rgb, i0, MATRIX)
    where = (cells > 0) & (scope[cells] > 0)
    assert hist.sum() == where.sum()
    assert tumour.sum() == ((cells > 0) & (scope[cells] == measure.TUMOUR)).sum()
    assert np.all(tumour <= hist)
    hem_bins = np.clip(np.floor((hem[where] + 1.0) * 50.0), 0, 199).astype(int)
    joint = np.zeros_like(hist)
    np.add.at(joint, (hem_bins, dab_bin_index(dab[where])), 1)
    # float32 lookup vs float64 may put a pixel sitting on a bin edge into the next bin
    assert np.abs(hist - joint).sum() <= 4 * max(1, where.sum() // 10_000)
    split = measure.split_by_hematoxylin(hist, 0.1)
    expected = np.zeros_like(split)
    np.add.at(expected, ((hem[where] >= 0.1).astype(int), dab_bin_index(dab[where])), 1)
    assert np.abs(split - expected).sum() <= 4 * max(1, where.sum() // 10_000)


@needs_two_threads
def test_results_identical_for_any_thread_count():
    """Integer accumulators: 1 and 2 threads give bit-identical tables (DESIGN section 6)."""
    rgb = _random_rgb((200, 160), seed=8)
    cell_labels, codes = _random_cells(rgb.shape[:2], 50, seed=9)
    with numba_threads(1):
        one, hist_one, _, _ = _run_measure(rgb, cell_labels, codes, (240.0, 242.0, 244.0))
    with numba_threads(2):
        two, hist_two, _, _ = _run_measure(rgb, cell_labels, codes, (240.0, 242.0, 244.0))
    assert one.equals(two)
    np.testing.assert_array_equal(hist_one, hist_two)


def _expected_measure(rgb, cells, codes, tables, alt, rows, cols, scope):
    """measure_cells' table and histogram from reference.quantised_cell_sums (exact integers)."""
    ref = reference.quantised_cell_sums(rgb, cells, codes, tables, alt, rows, cols, scope)
    table = measure._to_table(ref["count"], ref["dab_sum"], ref["dab_sq"], ref["alt_sum"], ref["hem_sum"],
                              ref["sectors"])
    return table, ref["hist"]


def _synthetic_case():
    from cxcr4score import synthetic

    tile = synthetic.generate_tile(synthetic.TileSpec(size_um=(60.0, 70.0), glass_fraction=0.2), seed=31)
    codes = tile.compartments.copy()
    ring = (codes == CYTOPLASM) & (np.random.default_rng(32).random(codes.shape) < 0.4)
    codes[ring] = MEMBRANE_RING
    return tile.rgb, tile.cell_labels, _with_ridges(codes, seed=33)


def _with_ridges(codes, seed):
    """Band and ring pixels put on a ridge (codes 5, 6) at random."""
    ridge = np.random.default_rng(seed).random(codes.shape) < 0.3
    return np.where(ridge & ((codes == MEMBRANE) | (codes == MEMBRANE_RING)), codes + 2, codes).astype(np.uint8)


def _random_case(shape, n, seed):
    cells, codes = _random_cells(shape, n, seed)
    codes[(codes == CYTOPLASM) & (np.random.default_rng(seed).random(shape) < 0.3)] = MEMBRANE_RING
    return _random_rgb(shape, seed), cells, _with_ridges(codes, seed + 1)


def _edge_cases():
    rgb = _random_rgb((5, 7), seed=40)
    one_cell = np.ones((5, 7), np.int32)
    yield "empty image", rgb[:0], one_cell[:0], np.zeros((0, 7), np.uint8)
    yield "no cells", rgb, np.zeros((5, 7), np.int32), np.zeros((5, 7), np.uint8)
    yield "one cell, all membrane", rgb, one_cell, np.full((5, 7), MEMBRANE, np.uint8)
    yield "one pixel", rgb[:1, :1], one_cell[:1, :1], np.full((1, 1), NUCLEUS, np.uint8)
    codes = np.array([[0, 1, 2, 3, 4, 5, 6]] * 5, np.uint8)
    yield "label without compartment", rgb, one_cell, codes
    yield "one column", *_random_case((40, 1), 3, seed=41)
    yield "one row", *_random_case((1, 60), 3, seed=42)


@pytest.mark.parametrize("threads", [1, pytest.param(2, marks=needs_two_threads)])
@pytest.mark.parametrize("case", ["random", "random wide", "synthetic", "edges"])
def test_measure_cells_equals_quantised_reference(case, threads):
    """Reference: reference.quantised_cell_sums (float32 channel sums, rint(x * 2**20), np.add.at),
    bit-identical table and histogram; random scope, ring codes, cells at every border."""
    if case == "random":
        cases = [("random", *_random_case((150, 170), 40, seed=43))]
    elif case == "random wide":
        cases = [("random wide", *_random_case((33, 517), 90, seed=44))]
    elif case == "synthetic":
        cases = [("synthetic", *_synthetic_case())]
    else:
        cases = list(_edge_cases())
    i0 = (243.0, 239.5, 250.0)
    tables = stains.concentration_tables(i0, MATRIX)
    alt = stains.concentration_tables((255.0, 255.0, 255.0), MATRIX)[1]
    with numba_threads(threads):
        for name, rgb, cells, codes in cases:
            n = int(cells.max(initial=0))
            rng = np.random.default_rng(n)
            rows, cols = rng.uniform(0, cells.shape[0], n + 1), rng.uniform(0, cells.shape[1], n + 1)
            rows[1::3] = np.round(rows[1::3])  # integer centroids: pixels on the sector edges
            scope = rng.choice(np.array([0, 1, 2], np.uint8), size=n + 1, p=[0.3, 0.4, 0.3])
            table, hist = measure.measure_cells(rgb, cells, codes, n_cells=n, tables=tables, alt_dab_table=alt,
                                                centroid_row=rows, centroid_col=cols, in_scope=scope)
            expected_table, expected_hist = _expected_measure(rgb, cells, codes, tables, alt, rows, cols, scope)
            pd.testing.assert_frame_equal(table, expected_table, check_exact=True, obj=name)
            np.testing.assert_array_equal(hist, expected_hist, err_msg=name)


def test_measure_cells_exact_integer_sums():
    """Hand-worked: table entries that are multiples of 2**-10 sum exactly, so every q is known."""
    tables = np.zeros((2, 3, 256), np.float32)
    values = np.arange(256) * 2.0**-10
    tables[0] = values  # hematoxylin: (r + g + b) / 1024 OD
    tables[1] = 2 * values  # DAB: (r + g + b) / 512 OD
    alt = 3 * np.tile(values, (3, 1)).astype(np.float32)
    rgb = np.array([[[1, 2, 3], [4, 0, 0], [0, 0, 10], [7, 7, 7]]], np.uint8)  # channel sums 6, 4, 10, 21
    cells = np.array([[1, 1, 2, 0]], np.int32)
    codes = np.array([[1, 3, 3, 0]], np.uint8)
    table, hist = measure.measure_cells(rgb, cells, codes, n_cells=2, tables=tables, alt_dab_table=alt,
                                        centroid_row=np.zeros(3), centroid_col=np.zeros(3), in_scope=np.ones(3, bool))
    q = 2**10  # q of 1/1024 OD
    assert table["n_nucleus"].tolist() == [1, 0] and table["n_membrane"].tolist() == [1, 1]
    assert table.loc[1, "hematoxylin_nucleus"] * 2**20 == 6 * q
    assert table.loc[1, "dab_nucleus"] * 2**20 == 12 * q and table.loc[1, "dab_nucleus_alt"] * 2**20 == 18 * q
    assert table.loc[2, "dab_membrane_band"] * 2**20 == 20 * q
    assert table.loc[1, "dab_cell"] * 2**20 == (12 + 8) * q / 2
    # Pixel (0, 1) of cell 1 and (0, 2) of cell 2 lie on the row of their centroid, to its right:
    # angle 0, sector 8.
    assert table.loc[1, "dab_membrane_sector_08"] * 2**20 == 8 * q
    assert table.loc[2, "dab_membrane_sector_08"] * 2**20 == 20 * q
    assert table.loc[1, "dab_cell_sd"] == pytest.approx(2 * q / 2**20, abs=0)
    # Histogram: H = 6/1024 (bin 50), DAB = 12/1024 (bin 202); then (4/1024, 8/1024) and
    # (10/1024, 20/1024) in H bin 50, DAB bins 201 and 203.
    region, tumour = hist
    assert region.sum() == 3 and tumour.sum() == 0
    assert region[50, 202] == 1 and region[50, 201] == 1 and region[50, 203] == 1


@pytest.mark.parametrize("case", ["random", "synthetic"])
def test_nucleus_hematoxylin_before_measuring_is_the_kernels(case):
    """Cells are typed before they are measured: measure.nucleus_hematoxylin on the deconvolved
    plane must equal measure_cells' hematoxylin_nucleus bit for bit (reference: the kernel)."""
    rgb, cells, codes = _random_case((150, 170), 40, seed=45) if case == "random" else _synthetic_case()
    n = int(cells.max())
    tables = stains.concentration_tables((243.0, 239.5, 250.0), MATRIX)
    table, _ = measure.measure_cells(rgb, cells, codes, n_cells=n, tables=tables, alt_dab_table=tables[1],
                                     centroid_row=np.zeros(n + 1), centroid_col=np.zeros(n + 1),
                                     in_scope=np.ones(n + 1, np.uint8))
    hematoxylin, _ = stains.deconvolve(rgb, tables)
    before = measure.nucleus_hematoxylin(hematoxylin, cells, codes, n)
    np.testing.assert_array_equal(before, table["hematoxylin_nucleus"].to_numpy())
    assert np.isfinite(before).any() and np.isnan(before).any() == table["hematoxylin_nucleus"].isna().any()


def test_measure_cells_rejects_unknown_scope():
    rgb = _random_rgb((20, 20), seed=1)
    cells, codes = _random_cells(rgb.shape[:2], 3, seed=2)
    with pytest.raises(ValueError, match="in_scope values must be 0, 1 or 2"):
        _run_measure(rgb, cells, codes, (245.0, 245.0, 245.0), scope=np.full(4, 3, np.uint8))


def test_real_ihc_tile_statistics_match_reference():
    """Reference: reference.cell_statistics on skimage's IHC tile with real segmentation."""
    from cxcr4score import segment

    rgb = np.ascontiguousarray(data.immunohistochemistry()[:256, :256])
    i0 = (250.0, 250.0, 250.0)
    hem, _ = stains.deconvolve(rgb, stains.concentration_tables(i0, MATRIX))
    nuclei = segment.detect_nuclei(hem, mpp=0.5)
    cells = segment.expand_cells(nuclei, mpp=0.5)
    codes, _ = segment.compartments(cells, nuclei, mpp=0.5)
    assert nuclei.max() > 10
    table, _, rows, cols = _run_measure(rgb, cells, codes, i0)
    ref_hem, ref_dab = reference.deconvolve(rgb, i0, MATRIX)
    ref = reference.cell_statistics(ref_dab, ref_hem, cells, codes, rows, cols)
    np.testing.assert_allclose(table["dab_membrane"], ref["dab_membrane"], atol=1e-5)


@pytest.mark.parametrize("shape", [(64, 64), (221, 173), (1167, 90)])
def test_area_resize_matches_opencv_inter_area(shape):
    """Reference: cv2.resize INTER_AREA of the whole image (same area weights; rounding may differ by 1)."""
    rgb = _random_rgb(shape, seed=12)
    out_shape = (max(1, round(shape[0] * 0.3 / 0.5)), max(1, round(shape[1] * 0.3 / 0.5)))
    ours = np.empty((*out_shape, 3), np.uint8)
    resample_kernels.area_resize_kernel(rgb, ours, 0, 0, 0, 0, shape[0] / out_shape[0], shape[1] / out_shape[1])
    ref = cv2.resize(rgb, out_shape[::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1


def test_kernels_run_without_jit(tmp_path):
    """The kernels' Python source gives the same result with NUMBA_DISABLE_JIT=1."""
    out = tmp_path / "nojit.npz"
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    script = Path(__file__).with_name("nojit_case.py")
    result = subprocess.run([sys.executable, str(script), str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    without_jit = np.load(out)
    table, hist, dab, resized = nojit_case.measure_small_case()
    np.testing.assert_array_equal(without_jit["table"], table.to_numpy())
    np.testing.assert_array_equal(without_jit["hist"], hist)
    np.testing.assert_array_equal(without_jit["dab"], dab)
    np.testing.assert_array_equal(without_jit["resized"], resized)
    segmented = nojit_case.segment_small_case()
    assert segmented["nuclei"].max() == 3  # the touching pair was split
    for name, value in segmented.items():
        np.testing.assert_array_equal(without_jit[name], value, err_msg=name)


def _od_grid(values):
    """The OD grid by hand: rint((x + 4) * 4096) in float64, clamped to uint16 (segment.OD_GRID_*)."""
    return np.clip(np.rint((np.asarray(values, np.float64) + 4.0) * 4096.0), 0, 65535).astype(np.uint16)


@pytest.mark.parametrize("radius", [1, 2, 5, 10, 16])
@pytest.mark.parametrize("shape", [(1, 1), (7, 50), (61, 45)])
def test_disk_filter_matches_scipy_grey_morphology(radius, shape):
    """Reference: reference.disk_filter (scipy.ndimage grey erosion/dilation, outside ignored): exact
    on uint16 grid values, and on float32 OD read onto the grid (the filters commute with it)."""
    from cxcr4score.segment import _disk_filter

    rng = np.random.default_rng(radius)
    grid_values = rng.integers(0, 65536, size=shape).astype(np.uint16)
    od = rng.normal(size=shape).astype(np.float32)
    for take_max in (False, True):
        ours = _disk_filter(grid_values, radius, take_max=take_max)
        np.testing.assert_array_equal(ours, reference.disk_filter(grid_values, radius, take_max=take_max))
        np.testing.assert_array_equal(_disk_filter(od, radius, take_max=take_max),
                                      _od_grid(reference.disk_filter(od, radius, take_max=take_max)))


@pytest.mark.parametrize("radius, row_step", [(3, 2), (10, 2), (16, 2), (16, 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.uint16])
def test_disk_filter_on_rows_and_uint16_match_scipy(radius, row_step, dtype):
    """Reference: reference.disk_filter with every row_step-th disk row (scipy.ndimage): exact,
    for uint16 grid values and float32 OD (on the grid), odd sizes."""
    from cxcr4score.segment import _disk_filter

    image = np.random.default_rng(radius).normal(size=(53, 70))
    image = (image * 3000 + 30000).astype(np.uint16) if dtype == np.uint16 else image.astype(np.float32)
    for take_max in (False, True):
        ours = _disk_filter(image, radius, take_max=take_max, row_step=row_step)
        assert ours.dtype == np.uint16
        expected = reference.disk_filter(image, radius, take_max=take_max, row_step=row_step)
        np.testing.assert_array_equal(ours, expected if dtype == np.uint16 else _od_grid(expected))


def test_od_grid_of_float_rows():
    """Reference: the OD grid by hand, at the ends of its range, beyond them and at half steps."""
    values = np.array([-5.0, -4.0, -3.99988, -3.5, 0.0, 0.1, 1.23456, 5.99, 11.99, 12.0, 13.5,
                       0.5 / 4096, 1.5 / 4096, -2.5 / 4096], np.float32)
    load = numba.njit(lambda row, target: filter_kernels._load_into(row, target, -4.0, 4096.0))
    for into in (load, lambda row, target: filter_kernels._load_into_py(row, target, -4.0, 4096.0)):
        target = np.empty(values.shape, np.uint16)
        into(values, target)
        np.testing.assert_array_equal(target, _od_grid(values))


@pytest.mark.parametrize("row_step", [1, 2])
def test_disk_filter_finishes_match_reference(row_step):
    """Reference: scipy.ndimage's opening and dilation on the OD grid by hand, then the residual
    (image minus the opening's OD) and the foreground test (at or above 0.1 and half the local
    peak) in float64, as nucleus detection uses them: exact."""
    from cxcr4score.segment import _disk_filter

    rng = np.random.default_rng(row_step)
    od = (rng.gamma(2.0, 0.08, size=(64, 75)) + rng.normal(0, 0.01, size=(64, 75))).astype(np.float32)
    eroded = _disk_filter(od, 6, take_max=False, row_step=row_step)
    residual = _disk_filter(eroded, 6, take_max=True, row_step=row_step, finish=filter_kernels.FILTER_RESIDUAL, aux=od)
    opened = reference.disk_filter(reference.disk_filter(od, 6, take_max=False, row_step=row_step), 6,
                                   take_max=True, row_step=row_step)
    assert residual.dtype == np.float32
    np.testing.assert_array_equal(residual, (od - (_od_grid(opened) / 4096.0 - 4.0)).astype(np.float32))
    foreground = _disk_filter(od, 4, take_max=True, row_step=row_step, finish=filter_kernels.FILTER_FOREGROUND, aux=od,
                              threshold=0.1, fraction=0.5)
    peak = _od_grid(reference.disk_filter(od, 4, take_max=True, row_step=row_step)) / 4096.0 - 4.0
    expected = (od >= 0.1) & (od.astype(np.float64) >= 0.5 * peak)
    assert foreground.dtype == np.uint8 and 0 < expected.mean() < 1
    np.testing.assert_array_equal(foreground, expected.astype(np.uint8))
    for aux in (None, od[:-1]):  # the finish needs an image like the filtered one
        with pytest.raises(ValueError, match="needs an image of shape"):
            _disk_filter(od, 4, take_max=True, finish=filter_kernels.FILTER_RESIDUAL, aux=aux)


def test_sector_without_atan2_matches_atan2_definition():
    """Reference: reference.sector (atan2), on a grid of offsets from integer, half and odd
    centroids (points on axes and diagonals included) and near the 22.5-degree edges."""
    offsets = np.arange(-30, 31, dtype=np.float64)
    dys, dxs = [], []
    for centre in (0.0, 0.5, 10.25, 1 / 3, 2.718281828):
        dy, dx = np.meshgrid(offsets - centre, offsets - centre, indexing="ij")
        dys.append(dy.ravel())
        dxs.append(dx.ravel())
    rng = np.random.default_rng(0)
    near = rng.uniform(0.1, 30, 4000) * np.tan(np.pi / 8) * (1 + rng.normal(scale=1e-9, size=4000))
    far = rng.uniform(0.1, 30, 4000)
    signs = rng.choice([-1.0, 1.0], size=(2, 4000))
    dys += [signs[0] * near, signs[0] * far, np.array([0.0, -0.0, 0.0, -0.0])]
    dxs += [signs[1] * far, signs[1] * near, np.array([-1.0, -1.0, 1.0, 1.0])]
    dy, dx = np.concatenate(dys), np.concatenate(dxs)
    ours = np.array([sector_of(a, b) for a, b in zip(dy, dx)])
    np.testing.assert_array_equal(ours, reference.sector(dy, dx))


def test_centroids_and_axis_ratio_match_reference():
    """Reference: reference.centroids_and_axis_ratio (np.cov per label), random blobs and an empty label."""
    rng = np.random.default_rng(13)
    labels = np.kron(rng.integers(0, 9, size=(12, 15)), np.ones((3, 3), dtype=np.int64)).astype(np.int32)
    labels[labels == 4] = 0  # label 4 is empty
    labels[5, :] = 2  # a long thin piece
    rows, cols, area, ratio = measure.nucleus_shape(labels, 8)
    ref_rows, ref_cols, ref_ratio = reference.centroids_and_axis_ratio(labels, 8)
    np.testing.assert_allclose(rows[1:], ref_rows, rtol=1e-12)
    np.testing.assert_allclose(cols[1:], ref_cols, rtol=1e-12)
    np.testing.assert_allclose(ratio[1:], ref_ratio, rtol=1e-9)
    np.testing.assert_array_equal(area, np.bincount(labels.ravel(), minlength=9))
    assert np.isnan(rows[4]) and np.isnan(ratio[4]) and np.isnan(ratio[0])
    np.testing.assert_array_equal(measure.nucleus_centroids(labels, 8), (rows, cols, area))


def test_shifted_moments_equal_moments_about_the_origin():
    """Reference: _label_moments taken about the shifted origin directly: exact integers (origins
    thousands of pixels away, where the shift's terms are large)."""
    rng = np.random.default_rng(15)
    labels = np.repeat(rng.integers(0, 8, size=(41, 11)), rng.integers(1, 9, size=11), axis=1).astype(np.int32)
    zero = np.zeros(8, np.int64)
    raw = measure._label_moments(labels, 7, zero, zero)
    origin_row, origin_col = rng.integers(-50, 50, size=8), rng.integers(-3000, 3000, size=8)
    np.testing.assert_array_equal(measure._shifted_moments(raw, origin_row, origin_col)[1:],  # row 0: a count only
                                  measure._label_moments(labels, 7, origin_row, origin_col)[1:])


def test_label_moments_of_runs_match_reference():
    """Reference: reference.label_moments (per-pixel integer sums); labels above n are skipped."""
    rng = np.random.default_rng(14)
    labels = np.repeat(rng.integers(0, 8, size=(37, 9)), rng.integers(1, 12, size=9), axis=1).astype(np.int32)
    labels[3, :] = 5  # a run over the whole row
    labels[7, 2:] = 7  # label 7 > n: skipped, not background
    origin_row = rng.integers(-40, 40, size=7)
    origin_col = rng.integers(-40, 40, size=7)
    ours = measure._label_moments(labels, 6, origin_row, origin_col)
    np.testing.assert_array_equal(ours, reference.label_moments(labels, 6, origin_row, origin_col))


def test_label_areas_match_bincount():
    """Reference: np.bincount; labels changing at every pixel and in runs along rows."""
    rng = np.random.default_rng(14)
    speckled = rng.integers(0, 300, size=(77, 91)).astype(np.int32)
    runs = np.repeat(rng.integers(0, 40, size=(77, 13)), rng.integers(1, 15, size=13), axis=1).astype(np.int32)
    for labels in (speckled, runs):
        np.testing.assert_array_equal(measure.label_areas(labels), np.bincount(labels.ravel()))


def test_label_stats_by_runs_match_bincount_and_find_objects():
    """Reference: reference.label_stats (np.bincount, scipy.ndimage.find_objects); runs that
    reach both image edges, labels absent from the image; at 1 and 2 threads."""
    rng = np.random.default_rng(21)
    labels = np.repeat(rng.integers(0, 40, size=(53, 13)), rng.integers(1, 9, size=13), axis=1).astype(np.int32)
    labels[:, 0] = 3
    labels[-1, :] = 41  # one run over the last row
    n = 45  # 42..45 absent
    ref_areas, ref_boxes = reference.label_stats(labels, n)
    for threads in THREAD_COUNTS:
        with numba_threads(threads):
            areas, boxes = measure.label_stats(labels, n + 1)
        np.testing.assert_array_equal(areas, ref_areas)
        np.testing.assert_array_equal(boxes, ref_boxes)


@pytest.mark.parametrize("density", [0.0, 0.02, 0.6])
def test_seed_groups_match_reference(density):
    """Reference: reference.peak_seeds (NumPy test, skimage 8-connected label) on the same
    mask; no seeds, a few, and most pixels."""
    rng = np.random.default_rng(22)
    shape = (131, 97)
    distance = rng.integers(0, 4, size=shape).astype(np.float32)
    window_max = np.where(rng.random(shape) < density, distance, distance + 1).astype(np.float32)
    foreground = (rng.random(shape) < 0.8).astype(np.uint8)
    ref_flat, ref_ids = reference.peak_seeds(distance, window_max, 1.0, foreground)
    mask = np.zeros(shape, np.uint8)
    mask.reshape(-1)[ref_flat] = 1
    flat, ids = label_kernels.seed_groups_kernel(mask, mask.sum(axis=1).astype(np.int64))
    np.testing.assert_array_equal(flat, ref_flat)
    np.testing.assert_array_equal(ids, ref_ids)


@pytest.mark.parametrize("reach", [1, 4, 8])
@pytest.mark.parametrize("shape", [(157, 203), (3, 40), (40, 1)])
def test_seed_mask_matches_maximum_filter(reach, shape):
    """Reference: scipy.ndimage.maximum_filter over the (2 reach + 1)^2 window with pixels
    outside the image ignored (constant -inf), then the seed test of reference.peak_seeds; on
    distances with many ties (plateaus), for bands of 7 rows and one band (results do not
    depend on the banding), and images smaller than the window."""
    from scipy import ndimage

    rng = np.random.default_rng(reach)
    distance = rng.integers(0, 6, size=shape).astype(np.float32) * np.float32(0.75)
    foreground = (rng.random(shape) < 0.7).astype(np.uint8)
    window_max = ndimage.maximum_filter(distance, size=2 * reach + 1, mode="constant", cval=-np.inf)
    ref_flat, _ = reference.peak_seeds(distance, window_max, 1.0, foreground)
    expected = np.zeros(shape, np.uint8)
    expected.reshape(-1)[ref_flat] = 1
    assert 0 < ref_flat.size < distance.size
    for rows_per_band in (7, shape[0]):
        seeds = np.full(shape, 7, np.uint8)
        counts = np.full(shape[0], -1, np.int64)
        filter_kernels.seed_mask_kernel(distance, reach, 1.0, foreground, row_kernels.row_bands(shape[0], rows_per_band),
                                        seeds, counts)
        np.testing.assert_array_equal(seeds, expected)
        np.testing.assert_array_equal(counts, expected.sum(axis=1))


def test_od_sum_and_white_match_reference():
    """Reference: reference.od_sum (float64 OD) and np.percentile of the same subsample."""
    from cxcr4score import tissue

    rgb = _random_rgb((1500, 800), seed=16)  # 1.2 Mpix: a subsample of every other pixel
    white = (231.0, 244.5, 250.0)
    np.testing.assert_allclose(tissue.od_sum(rgb, white), reference.od_sum(rgb, white), atol=1e-5)
    expected = np.percentile(rgb.reshape(-1, 3)[::2], tissue.WHITE_PERCENTILE, axis=0)
    np.testing.assert_array_equal(tissue.provisional_white(rgb), expected)


def test_percentile_of_counts_matches_numpy():
    """Reference: np.percentile (linear) on small samples, where the two order statistics differ."""
    from cxcr4score.tissue import _percentile_of_counts

    rng = np.random.default_rng(17)
    for size in (1, 2, 3, 10, 101, 1000):
        values = rng.integers(0, 256, size=size).astype(np.uint8)
        for q in (0.0, 37.3, 50.0, 99.0, 100.0):
            assert _percentile_of_counts(np.bincount(values, minlength=256), q) == np.percentile(values, q)


def test_warm_up_compiles_every_kernel():
    """warm_up runs the pipeline's kernels on a small image (split nuclei included)."""
    assert runtime.warm_up() == 3
    # Helpers called only from inside other kernels are not compiled on their own; nor is
    # watershed_kernel, which only split_boxes_kernel calls: once that loads from Numba's cache,
    # its callee's dispatcher has no signature (the test failed on every run after the first).
    modules = [importlib.import_module(f"cxcr4score._kernels.{m.name}")
               for m in pkgutil.iter_modules(cxcr4score._kernels.__path__)]
    dispatchers = [v for module in modules for name, v in vars(module).items()
                   if name.endswith("_kernel") and name != "watershed_kernel" and v.__module__ == module.__name__]
    assert len(dispatchers) > 12
    assert all(d.signatures for d in dispatchers), [d.__name__ for d in dispatchers if not d.signatures]


def test_measure_cells_refuses_labels_and_codes_out_of_range():
    """The kernel indexes accumulators without bounds checks (review finding: code 6 of cell
    1 was counted as a nucleus pixel of cell 2)."""
    rgb = np.full((4, 5, 3), 200, np.uint8)
    tables = stains.concentration_tables((240.0,) * 3, stains.stain_matrix())
    cells = np.ones((4, 5), np.int32)
    codes = np.full((4, 5), 2, np.uint8)
    arguments = dict(n_cells=1, tables=tables, alt_dab_table=tables[1], centroid_row=np.zeros(2),
                     centroid_col=np.zeros(2), in_scope=np.ones(2, bool))
    measure.measure_cells(rgb, cells, codes, **arguments)
    bad_codes = codes.copy()
    bad_codes[1, 1] = 7
    with pytest.raises(ValueError, match="1 pixels have .* compartment code"):
        measure.measure_cells(rgb, cells, bad_codes, **arguments)
    bad_cells = cells.copy()
    bad_cells[2, 3] = 2
    with pytest.raises(ValueError, match="1 pixels have a cell label outside 0..1"):
        measure.measure_cells(rgb, bad_cells, codes, **arguments)
    bad_cells[2, 3] = -1
    with pytest.raises(ValueError, match="cell label"):
        measure.measure_cells(rgb, bad_cells, codes, **arguments)


def _runs_of_random_lengths(n, longest, seed):
    rng = np.random.default_rng(seed)
    return np.repeat(rng.integers(-2, 3, size=n), rng.integers(1, longest + 1, size=n))[:n]


@pytest.mark.parametrize("values", [
    [], [7], [-1, -1], [0, -1, -1, 3, 3, 3, 0], list(range(9)),
    list(range(200)),  # a change at every pixel: every bit of the 64-pixel words set
    [5] * 65, [5] * 64 + [6], [5] * 65 + [6], [1] * 129 + [2] * 7,  # changes at word edges
    _runs_of_random_lengths(1000, 6, 1), _runs_of_random_lengths(4096, 90, 2),
])
def test_run_starts_match_numpy_diff(values, monkeypatch):
    """Reference: the positions where np.diff is nonzero; a first value of -1 starts a run too.
    Compiled, and as Python with the pure-Python lowest-set-bit (as under NUMBA_DISABLE_JIT)."""
    values = np.asarray(values, np.int64)
    expected = np.concatenate([[0], np.flatnonzero(np.diff(values)) + 1, [values.size]]) if values.size else [0]
    for run_starts in (row_kernels._run_starts, row_kernels._run_starts.py_func):
        if run_starts is row_kernels._run_starts.py_func:  # after compiling: Numba reads the global then
            monkeypatch.setattr(row_kernels, "_trailing_zeros", row_kernels._trailing_zeros_py)
        starts = np.full(values.size + 1, -9, np.int64)
        n_runs = run_starts(values, starts)
        assert n_runs == len(expected) - 1
        np.testing.assert_array_equal(starts[: n_runs + 1], expected)
