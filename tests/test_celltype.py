"""Cell type from nucleus morphology: hand-made cells and the generator's truth."""

import numpy as np
import pandas as pd
import pytest

from cxcr4score import config, pipeline, synthetic
from cxcr4score.bench import accuracy as bench
from cxcr4score.celltype import classify_cell_types


def _cells(rows):
    return pd.DataFrame(rows, columns=["nucleus_area_um2", "nucleus_axis_ratio", "hematoxylin_nucleus"])


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
