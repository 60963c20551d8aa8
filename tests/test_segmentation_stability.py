"""Segmentation variants of the stability re-evaluation: configs, the sample, the scaled blocks."""

import numpy as np
import pandas as pd
import pytest

from cxcr4score import config as cx_config
from cxcr4score import pipeline, segmentation_stability, synthetic
from cxcr4score.segmentation_stability import (
    MIN_SAMPLE_CELLS,
    variant_blocks,
    variant_configs,
)


@pytest.fixture
def config():
    return cx_config.default_config()


def test_variant_configs_shift_one_setting_each(config):
    configs = variant_configs(config)
    assert list(configs) == list(segmentation_stability.VARIANT_NAMES)
    assert configs["nuclei_fewer"]["nuclei"]["threshold"] == pytest.approx(0.07)
    assert configs["nuclei_more"]["nuclei"]["threshold"] == pytest.approx(0.03)
    assert configs["cells_smaller"]["cell_expansion_um"] == 4 and configs["cells_larger"]["cell_expansion_um"] == 6
    for name, varied in configs.items():
        changed = {k for k in config if varied[k] != config[k]}
        assert changed == ({"nuclei"} if name.startswith("nuclei") else {"cell_expansion_um"}), name
    assert config["nuclei"]["threshold"] == 0.05  # not modified
    # No expansion to take away: that variant would equal the nominal segmentation.
    assert "cells_smaller" not in variant_configs({**config, "cell_expansion_um": 0.0})


def _sample(classes_dab, tumour=None):
    """A sample whose cells read the given membrane DAB (other compartments 0)."""
    dab = [float(v) for v in classes_dab]
    n = len(dab)
    return {"dab_nucleus": [0.0] * n, "dab_cytoplasm": [0.0] * n, "dab_membrane": dab, "dab_cell": [0.0] * n,
            "membrane_exposed_fraction": [0.0] * n, "membrane_line_sectors": [0] * n,
            "tumour": [1] * n if tumour is None else tumour}


def test_variant_blocks_scale_the_nominal_blocks_as_the_sample_moves(config):
    """Reference: the sample's class counts 60/20/20/0 nominal, 80/20/0/0 with fewer nuclei;
    each block's counts times (variant + 5) / (nominal + 5), then all of them times one factor
    that makes the slide's total move as the sample's (100 -> 100), rounded."""
    nominal_dab = [0.0] * 60 + [0.3] * 20 + [0.5] * 20
    fewer_dab = [0.0] * 80 + [0.3] * 20
    samples = {"nominal": _sample(nominal_dab), "nuclei_fewer": _sample(fewer_dab)}
    blocks = pd.DataFrame({"block_id": [3, 7], "n0": [30, 10], "n1": [10, 0], "n2": [10, 5], "n3": [0, 1]})
    got = variant_blocks(blocks, samples, config)
    assert got["variant"].tolist() == ["nuclei_fewer"] * 2 and (got["measure"] == "class").all()
    assert got["block_id"].tolist() == [3, 7]
    counts = blocks[["n0", "n1", "n2", "n3"]].to_numpy(float)
    scaled = counts * (np.array([80, 20, 0, 0]) + 5.0) / (np.array([60, 20, 20, 0]) + 5.0)
    expected = np.rint(scaled * counts.sum() / scaled.sum())
    assert got[["n0", "n1", "n2", "n3"]].to_numpy().tolist() == expected.tolist()


def test_a_change_of_class_moves_blocks_that_hold_one_class(config):
    """Positive cells clustered in their own block: the variant that halves the sample's
    positive share must lower the slide's, which rescaling block by block would undo."""
    nominal = _sample([0.0] * 180 + [0.3] * 20)
    halved = _sample([0.0] * 190 + [0.3] * 10)
    blocks = pd.DataFrame({"block_id": [0, 1], "n0": [1000, 0], "n1": [0, 100], "n2": [0, 0], "n3": [0, 0]})
    got = variant_blocks(blocks, {"nominal": nominal, "nuclei_fewer": halved}, config)
    counts = got[["n0", "n1", "n2", "n3"]].to_numpy()
    assert counts.sum() == 1100
    assert counts[1, 1] / counts.sum() < 0.6 * 100 / 1100


def test_variant_blocks_follow_the_scored_cells_and_the_total(config):
    """Only the sample's tumour cells count with tumour_cells: morphology, all of them with
    all; a variant finding fewer scored cells shrinks the slide's total by as much."""
    nominal = _sample([0.0] * 100 + [0.5] * 100, tumour=[1] * 100 + [0] * 100)
    fewer = _sample([0.0] * 50 + [0.5] * 100, tumour=[1] * 50 + [0] * 100)
    blocks = pd.DataFrame({"block_id": [0], "n0": [100], "n1": [0], "n2": [0], "n3": [0]})
    got = variant_blocks(blocks, {"nominal": nominal, "nuclei_fewer": fewer}, config)
    assert got[["n0", "n1", "n2", "n3"]].to_numpy().tolist() == [[50, 0, 0, 0]]
    every = variant_blocks(blocks, {"nominal": nominal, "nuclei_fewer": fewer}, {**config, "tumour_cells": "all"})
    assert every["n0"].tolist() == [75]  # the slide holds class 0 only: its total, 100 x 150 / 200


def test_one_cell_changing_class_moves_a_slide_little(config):
    """Near a 1% cutoff a sample holds a few positive cells: one of three turning negative
    lowers the slide's positive cells by (2 + 5) / (3 + 5), not by a third."""
    nominal = _sample([0.0] * 397 + [0.3] * 3)
    one_less = _sample([0.0] * 398 + [0.3] * 2)
    blocks = pd.DataFrame({"block_id": [0], "n0": [9900], "n1": [100], "n2": [0], "n3": [0]})
    got = variant_blocks(blocks, {"nominal": nominal, "nuclei_fewer": one_less}, config)
    assert 85 <= got["n1"].iloc[0] <= 90


def test_no_variant_without_enough_sampled_cells(config):
    blocks = pd.DataFrame({"block_id": [0], "n0": [100], "n1": [0], "n2": [0], "n3": [0]})
    few = {"nominal": _sample([0.0] * (MIN_SAMPLE_CELLS - 1)), "nuclei_fewer": _sample([0.0] * 10)}
    for samples in ({}, few):
        got = variant_blocks(blocks, samples, config)
        assert got.empty and list(got.columns) == ["variant", "measure", "block_id", "n0", "n1", "n2", "n3"]
        assert got["n0"].dtype == np.int64


def test_a_slide_carries_its_segmentation_variants(tmp_path, config):
    """End to end on a generated tile: slide_info samples every variant (their own nuclei: the
    higher threshold finds fewer), and the slide's blocks hold each variant's counts."""
    tile = synthetic.generate_tile(synthetic.TileSpec(size_um=(512.0, 512.0), positive_fraction=0.4), seed=5)
    path = synthetic.write_tile(tile, tmp_path / "t.tif", jpeg_quality=90)
    info, _, blocks, _ = pipeline.score_slide(path, slide_id="T", config=config)
    sample = info.segmentation_sample
    assert list(sample) == ["nominal", *segmentation_stability.VARIANT_NAMES]
    sizes = {name: len(cells["tumour"]) for name, cells in sample.items()}
    assert sizes["nuclei_fewer"] < sizes["nominal"] < sizes["nuclei_more"]
    assert sizes["cells_smaller"] == sizes["nominal"] == sizes["cells_larger"]  # same nuclei, other cells
    counts = blocks[blocks["measure"] == "class"].groupby("variant")[["n0", "n1", "n2", "n3"]].sum()
    assert set(segmentation_stability.VARIANT_NAMES) <= set(counts.index)
    nominal = counts.loc["nominal"].sum()
    for name in segmentation_stability.VARIANT_NAMES:
        assert abs(counts.loc[name].sum() - nominal) <= 0.2 * nominal, name


def test_sample_comes_from_the_roi_when_the_slide_has_one(tmp_path, config):
    """A slide whose right half is all positive tumour and left half all negative, with an ROI
    on the right half: the segmentation sample's cells are the right half's (the variants must
    move as the scored cells do), and without the ROI they are both halves'. Scanned at
    0.25 um/px and analysed at 0.5, with the ROI away from the origin, so that the ROI's
    level-0 coordinates must be scaled to the analysis grid to be found.
    Reference: the generator's halves, classified by the sample's own membrane DAB."""
    import json

    import tifffile

    from cxcr4score import slide_info

    halves = [synthetic.generate_tile(synthetic.TileSpec(size_um=(300.0, 300.0), mpp=0.25, positive_fraction=f,
                                                         class_weights=(0.0, 0.0, 1.0)), seed=31)
              for f in (0.0, 1.0)]
    path = tmp_path / "halves.tif"
    tifffile.imwrite(path, np.hstack([h.rgb for h in halves]), photometric="rgb", resolution=(40000, 40000),
                     resolutionunit="CENTIMETER")
    width = halves[0].rgb.shape[1]
    roi = tmp_path / "halves.roi.geojson"
    ring = [[width, 0], [2 * width, 0], [2 * width, width], [width, width], [width, 0]]
    roi.write_text(json.dumps({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                               "properties": {"objectType": "annotation"}}))

    def positive_share(roi_path):
        info = slide_info.describe_slide(path, slide_id="H", roi_path=roi_path, config=config)
        assert info.mpp == pytest.approx(0.25) and info.analysis_mpp == pytest.approx(0.5)
        nominal = info.segmentation_sample["nominal"]
        tumour = np.asarray(nominal["tumour"], dtype=bool)
        return np.mean(np.asarray(nominal["dab_membrane"], dtype=float)[tumour] >= 0.2)

    assert positive_share(str(roi)) > 0.9
    assert 0.3 < positive_share("") < 0.75
