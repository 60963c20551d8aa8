"""Cell type from nucleus morphology: hand-made cells and the generator's truth."""

import numpy as np
import pandas as pd
import pytest

from cxcr4score import config, pipeline, synthetic
from cxcr4score.bench import accuracy as bench
from cxcr4score.celltype import (
    classify_cell_types,
    darkness_reference,
    neighbour_nucleus_area,
)


def _cells(rows, neighbour_area=60.0):
    """Cells from (area, axis ratio, darkness[, neighbour area]) rows; in a nest by default."""
    rows = [tuple(r) + (neighbour_area,) * (4 - len(r)) for r in rows]
    return pd.DataFrame(rows, columns=["nucleus_area_um2", "nucleus_axis_ratio", "hematoxylin_nucleus",
                                       "neighbour_nucleus_area_um2"])


def test_hand_made_cells():
    """Textbook shapes: 20 vesicular carcinoma nuclei set the darkness reference (0.5)."""
    tumour = [(60.0, 1.2, 0.5)] * 20
    table = _cells(tumour + [
        (30.0, 1.1, 0.9),   # small, round, dense: lymphocyte
        (30.0, 1.1, 0.55),  # small, round, pale: a small tumour nucleus
        (35.0, 3.0, 0.6),   # spindle: fibroblast (3.9 um wide)
        (80.0, 2.0, 0.5),   # elongated but 7.1 um wide: an ovoid carcinoma nucleus
        (30.0, 1.7, 0.9),   # dark but oval: not a lymphocyte
        (8.0, 1.0, 0.3),    # a fragment
    ])
    types = classify_cell_types(table)
    assert list(types[:20]) == ["tumour"] * 20
    assert list(types[20:]) == ["immune", "tumour", "stroma", "tumour", "tumour", "unknown"]


def test_typing_shift_moves_the_limits():
    """A shift towards more tumour cells types borderline lymphocytes and spindles as tumour,
    one towards fewer does the reverse; clear cases stay."""
    table = _cells([(60.0, 1.2, 0.5)] * 20 + [
        (30.0, 1.1, 0.9),    # clearly a lymphocyte (1.8 times the reference)
        (30.0, 1.1, 0.75),   # a lymphocyte by 1.5 times the reference (1.45), not by 1.595
        (30.0, 1.1, 0.675),  # 1.35 times: tumour, but a lymphocyte at 1.305
        (40.0, 2.0, 0.5),    # spindle 5.05 um wide: tumour below 4.95 um
        (60.0, 2.0, 0.5),    # 6.2 um wide: tumour, above the 6.05 um of the shift towards fewer
    ])
    nominal, more, fewer = (classify_cell_types(table, shift=s)[20:] for s in (0.0, 0.1, -0.1))
    assert list(nominal) == ["immune", "immune", "tumour", "stroma", "tumour"]
    assert list(more) == ["immune", "tumour", "tumour", "tumour", "tumour"]
    assert list(fewer) == ["immune", "immune", "immune", "stroma", "tumour"]


def test_small_nuclei_are_tumour_only_in_nests():
    """A small nucleus that is neither spindle nor lymphocyte (a fibroblast cut across) is tumour
    among tumour-sized neighbours and stroma elsewhere or alone; a large one is tumour anywhere."""
    table = _cells([(60.0, 1.2, 0.5)] * 20 + [
        (30.0, 1.5, 0.5, 60.0),        # small, in a nest: a small tumour nucleus
        (30.0, 1.5, 0.5, 28.0),        # small, among small neighbours: stroma
        (30.0, 1.5, 0.5, float("nan")),  # small and alone: stroma
        (60.0, 1.2, 0.5, 28.0),        # large among small neighbours: tumour
        (30.0, 1.5, 0.5, 30.0),        # tumour when the nest limit is shifted 10% towards more tumour
    ])
    assert list(classify_cell_types(table)[20:]) == ["tumour", "stroma", "stroma", "tumour", "stroma"]
    assert list(classify_cell_types(table, shift=0.1)[20:]) == ["tumour", "stroma", "stroma", "tumour", "tumour"]


def test_darkness_reference_comes_from_nests():
    """Pale large nuclei among small ones (stroma) do not set the reference while 20 large
    nuclei lie in nests; without them, every large nucleus does, then every nucleus."""
    nest = [(60.0, 1.2, 0.5, 60.0)] * 20
    stroma = [(45.0, 1.3, 0.3, 28.0)] * 40
    small = [(25.0, 1.1, 0.9, 25.0)] * 30

    def reference(rows):
        table = _cells(rows)
        return darkness_reference(table["nucleus_area_um2"], table["hematoxylin_nucleus"],
                                  table["neighbour_nucleus_area_um2"])

    assert reference(nest + stroma + small) == 0.5
    assert reference(nest[:19] + stroma + small) == 0.3
    assert reference(nest[:19] + small) == 0.9
    # The tumour nuclei of a stroma-rich slide stay tumour: with the large stromal nuclei as
    # reference they would read 1.67 times darker, as lymphocytes.
    assert set(classify_cell_types(_cells(nest + stroma))[:20]) == {"tumour"}


def test_neighbour_area_matches_a_plain_reference():
    """Reference: the median area of the other nuclei of at least 20 um^2 within the radius,
    one nucleus at a time."""
    rng = np.random.default_rng(3)
    row, col, area = rng.uniform(0, 150, 400), rng.uniform(0, 150, 400), rng.uniform(5, 90, 400)
    row[[5, 9]] = np.nan  # a nucleus without a centroid neighbours nothing
    col[17], row[17] = 1000.0, 1000.0  # alone
    expected = np.full(400, np.nan)
    for i in range(400):
        near = (np.hypot(row - row[i], col - col[i]) <= 25.0) & (area >= 20.0)
        near[i] = False
        if np.isfinite(row[i]) and near.any():
            expected[i] = np.median(area[near])
    np.testing.assert_allclose(neighbour_nucleus_area(row, col, area), expected, equal_nan=True)
    assert np.isnan(neighbour_nucleus_area([1.0], [1.0], [30.0])).all()


def test_empty_table():
    assert classify_cell_types(_cells([])).size == 0


@pytest.mark.parametrize("seed", [41, 42])
def test_types_match_generator_truth(tmp_path, seed):
    """Reference: the generator's cell types (lymphocyte infiltrates, fibroblasts, nests)."""
    spec = synthetic.TileSpec(size_um=(400.0, 400.0), positive_fraction=0.4, lymphocyte_positive_fraction=0.5)
    tile = synthetic.generate_tile(spec, seed=seed)
    path = tmp_path / "t.tif"
    synthetic.write_tile(tile, path, jpeg_quality=90)
    _, cells, _, summary = pipeline.score_slide(path, slide_id="T", config=config.default_config())
    truth_idx, cell_idx = bench._match(cells, tile.truth, tile.mpp)
    truth = tile.truth["cell_type"].to_numpy()[truth_idx]
    ours = cells["cell_type"].to_numpy()[cell_idx]
    tumour_precision = np.mean(truth[ours == "tumour"] == "tumour")
    tumour_recall = np.mean(ours[truth == "tumour"] == "tumour")
    immune_recall = np.mean(ours[truth == "immune"] == "immune")
    assert tumour_precision > 0.95 and tumour_recall > 0.85 and immune_recall > 0.9
    assert summary["tumour_source"] == "morphology" and summary["n_immune_cells"] > 0
