"""The merge-memory benchmark (``cxcr4score bench merge``), its fast parts: the dense slide's
chunks are what measure_chunk would write for a denser slide (every copy of a cell stays in
its tile's core, ids stay unique within their tile, outlines and blocks move with the cell),
and a stage process reports its own peak, not the benchmark's. The full-size figures are
read off the benchmark run (the memory target is a 2-million-cell slide, each job < 2 GB)."""

import json
import sys

import numpy as np
import pandas as pd
import pytest

from cxcr4score import pipeline, tiling
from cxcr4score.bench import merge

STRIDE = pipeline._CELL_ID_STRIDE
F = 2.0  # level-0 px per analysis px
MPP = 0.25  # level-0 um per px
BLOCK_UM = 5.0  # small, so that a jitter of a few um changes blocks
#: Two tiles side by side (analysis px): cores (top, left, bottom, right).
TILES = [{"index": 0, "core": [0, 0, 40, 40], "read": [0, 0, 48, 48]},
         {"index": 1, "core": [0, 40, 40, 80], "read": [0, 32, 48, 80]}]


def _chunk():
    """A chunk's table: cells in both tiles, some on the edges of their cores."""
    # Nucleus centroids (row, col) on the analysis grid, tile by tile.
    centroids = [(0, [(-0.5, -0.5), (20.0, 20.0), (39.4, 39.4), (10.0, 38.0)]),
                 (1, [(-0.5, 39.5), (20.0, 60.0), (39.4, 79.4), (5.0, 41.0), (30.0, 70.0)])]
    rows = []
    for tile, points in centroids:
        for label, (row, col) in enumerate(points, start=1):
            x, y = (col + 0.5) * F, (row + 0.5) * F
            square = np.array([x - 4, y - 4, x + 4, y - 4, x + 4, y + 4, x - 4, y + 4], np.float32)
            rows.append({"cell_id": tile * STRIDE + label * 7, "x": x, "y": y, "x_um": x * MPP, "y_um": y * MPP,
                         "nucleus_area_um2": 30.0 + label, "block_id": 0, "in_roi": True,
                         "cell_outline": square, "nucleus_outline": square[:6] * 1.0,
                         "dab_cell": 0.1 * label})
    table = pd.DataFrame(rows)
    table["block_id"] = pipeline.block_ids(table["x_um"], table["y_um"], BLOCK_UM)
    return table


def _replicate(table, copies, **kwargs):
    return merge.replicate_chunk(table, copies, tile_boxes=TILES, to_level0=F, native_mpp=MPP, block_um=BLOCK_UM,
                                 **kwargs)


def test_copies_stay_in_their_tile_core():
    table = _chunk()
    dense = _replicate(table, 8)
    assert len(dense) == 8 * len(table)
    tile = dense["cell_id"].to_numpy() // STRIDE
    np.testing.assert_array_equal(tile, np.tile(table["cell_id"].to_numpy() // STRIDE, 8))
    row, col = dense["y"].to_numpy() / F - 0.5, dense["x"].to_numpy() / F - 0.5
    for k, box in enumerate(TILES):
        # tiling.in_core takes centroids relative to the read box.
        inside = tiling.in_core(row - box["read"][0], col - box["read"][1], tiling.Tile.from_json(box))
        assert inside[tile == k].all()
    # The copies did move (by at most the jitter), and the cells on the edges were held back.
    moved = np.hypot(*(dense[c].to_numpy().reshape(8, -1)[1:] - table[c].to_numpy() for c in ("x", "y")))
    assert (moved > 0).mean() > 0.9 and moved.max() <= np.hypot(merge.JITTER_PX, merge.JITTER_PX) * F + 1e-9
    assert row.min() >= -0.5 and col.max() < 79.5


def test_ids_unique_within_the_slide_and_copy_zero_unchanged():
    table = _chunk()
    dense = _replicate(table, 8)
    assert dense["cell_id"].is_unique
    pd.testing.assert_frame_equal(dense.iloc[:len(table)], table)
    # Copies share everything else with their cell.
    np.testing.assert_array_equal(dense["dab_cell"].to_numpy(), np.tile(table["dab_cell"].to_numpy(), 8))
    assert dense["in_roi"].all()


def test_positions_outlines_and_blocks_move_together():
    table = _chunk()
    dense = _replicate(table, 5)
    np.testing.assert_allclose(dense["x_um"], dense["x"] * MPP)
    np.testing.assert_allclose(dense["y_um"], dense["y"] * MPP)
    np.testing.assert_array_equal(dense["block_id"], pipeline.block_ids(dense["x_um"], dense["y_um"], BLOCK_UM))
    assert dense["block_id"].nunique() > table["block_id"].nunique()
    dx = dense["x"].to_numpy() - np.tile(table["x"].to_numpy(), 5)
    dy = dense["y"].to_numpy() - np.tile(table["y"].to_numpy(), 5)
    for name in pipeline.OUTLINE_COLUMNS:
        originals = np.tile(table[name].to_numpy(), 5)
        for outline, original, ox, oy in zip(dense[name], originals, dx, dy):
            assert outline.dtype == np.float32 and outline.shape == original.shape
            offset = outline.reshape(-1, 2).astype(np.float64) - original.reshape(-1, 2)
            np.testing.assert_allclose(offset, np.broadcast_to([ox, oy], offset.shape), atol=1e-3)


def test_replication_is_deterministic_and_bounded():
    table = _chunk()
    pd.testing.assert_frame_equal(_replicate(table, 3, seed=4), _replicate(table, 3, seed=4))
    assert not _replicate(table, 3, seed=4)["x"].equals(_replicate(table, 3, seed=5)["x"])
    pd.testing.assert_frame_equal(_replicate(table, 1), table)
    # Labels up to 35 (step 36): more than STRIDE / 36 copies cannot be numbered within a tile.
    with pytest.raises(ValueError, match="do not fit"):
        _replicate(table, STRIDE // 36 + 1)
    with pytest.raises(ValueError, match="at least 1"):
        _replicate(table, 0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is read from /proc")
def test_stage_process_reports_its_own_peak(tmp_path):
    """The baseline stage (imports only) measured from a process 600 MB larger than it: its peak
    is its own (os.wait4's ru_maxrss would carry this process's)."""
    ballast = np.ones(600 * 2**20 // 8)
    row = merge.run_stage("import", {}, tmp_path)
    assert ballast.sum() > 0
    assert row["peak_source"] == "VmHWM"
    assert 30 < row["import_rss_mb"] <= row["peak_rss_mb"] < 600 <= row["rusage_maxrss_mb"]
    assert 0 <= row["seconds"] < row["wall_s"] and row["n_cells"] is None
    assert json.loads((tmp_path / "import.job.json").read_text())["stage"] == "import"
