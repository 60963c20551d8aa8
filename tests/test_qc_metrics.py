"""QC metrics: each fires on a constructed bad input and not on a clean demo tile."""

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile

from cxcr4score import config, eligibility, pipeline, qc_metrics, stains

CONFIG = config.default_config()
DEMO = Path(__file__).resolve().parents[1] / "sample_slides" / "P01" / "P01_A.tif"
LEVELS = CONFIG["qc"]


@pytest.fixture(scope="module")
def demo_rgb():
    return tifffile.imread(DEMO)


def _score(rgb, tmp_path, name):
    path = tmp_path / f"{name}.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", resolution=(20000, 20000), resolutionunit="CENTIMETER")
    return pipeline.score_slide(path, slide_id=name, patient_id="P", config=CONFIG)


def _od(rgb, i0=(250.0, 250.0, 250.0)):
    return stains.od_table(i0)[np.arange(3), rgb]


def test_clean_demo_tile_passes_every_metric(demo_rgb, tmp_path):
    info, _, _, summary = _score(demo_rgb, tmp_path, "clean")
    assert summary["qc_status"] == "ok", summary["qc_message"]
    assert summary["qc_blurred_tiles"] == 0 and summary["qc_pen"] < 0.001 and summary["qc_folds"] == 0


@pytest.mark.parametrize(("sigma", "level"), [(3.0, "failed")])
def test_blurred_tile_fails_on_focus(demo_rgb, tmp_path, sigma, level):
    """Reference: a Gaussian blur of sigma 3 px (1.5 um) leaves no tile in focus."""
    _, _, _, summary = _score(cv2.GaussianBlur(demo_rgb, (0, 0), sigma), tmp_path, "blurred")
    assert summary["qc_status"] == level
    assert "100% of sampled tissue tiles out of focus (failed >= 50%)" in summary["qc_message"]


@pytest.mark.parametrize("colour", [(20, 140, 60), (15, 15, 20)], ids=["green", "black"])
def test_pen_stroke_is_flagged(demo_rgb, tmp_path, colour):
    inked = demo_rgb.copy()
    cv2.line(inked, (100, 100), (900, 700), colour, 25)
    _, _, _, summary = _score(inked, tmp_path, "pen")
    assert summary["qc_status"] in ("warning", "failed")
    assert "of tissue under pen ink (warning >= 1.00%)" in summary["qc_message"]


def test_pen_share_counts_off_hue_and_black_pixels_only():
    h, d = stains.stain_matrix()[:2]
    od = np.stack([0.5 * h, 0.4 * d, 0.3 * h + 0.3 * d, [0.9, 0.1, 0.7], [1.2, 1.2, 1.3]])
    assert qc_metrics.pen_share(od, np.stack([h, d])) == pytest.approx(2 / 5)


def test_fold_share_fires_on_a_folded_region(demo_rgb):
    od = _od(demo_rgb)
    mask = np.ones(od.shape[:2], bool)
    assert qc_metrics.fold_share(od.sum(axis=2), mask, mpp=0.5) == 0
    folded = od.copy()
    # Two layers of dense tissue (OD sum 0.9 each, the 99th percentile of the densest real H-DAB
    # slide, OS-2 ndpi) over a region: Beer-Lambert adds the layers' OD. (Two layers of the pale
    # demo tissue, OD sum 0.3, stay below the level: pale folds are missed.)
    h = stains.stain_matrix()[stains.HEMATOXYLIN]
    folded[200:500, 200:500] = 2 * 0.9 * h / h.sum()
    assert qc_metrics.fold_share(folded.sum(axis=2), mask, mpp=0.5) > LEVELS["folds"]["warning"]


def test_saturated_share_counts_clipped_channels():
    rgb = np.full((10, 10, 3), 128, np.uint8)
    rgb[0, :, 0] = 255
    rgb[1, :5, 2] = 0
    assert qc_metrics.saturated_share(rgb.reshape(-1, 3)) == pytest.approx(0.15)


def test_sharpness_drops_with_blur_but_not_with_contrast(demo_rgb):
    """A pale but sharp scan (half the contrast) is not out of focus; a blurred one is."""
    grey = cv2.cvtColor(demo_rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    sharp = qc_metrics.sharpness(grey)
    pale = qc_metrics.sharpness(255 - (255 - grey) * 0.5)
    assert pale == pytest.approx(sharp, rel=0.01)
    assert sharp > LEVELS["focus_min_sharpness"] > qc_metrics.sharpness(cv2.GaussianBlur(grey, (0, 0), 1.5))


def test_stroma_dab_is_the_median_over_stroma_cells():
    cells = pd.DataFrame({"cell_type": ["stroma", "stroma", "tumour", "stroma"], "dab_cell": [0.1, 0.5, 2.0, 0.2]})
    assert qc_metrics.stroma_dab(cells) == pytest.approx(0.2)
    assert np.isnan(qc_metrics.stroma_dab(cells[cells["cell_type"] == "tumour"]))


@pytest.mark.parametrize(
    ("values", "status", "text"),
    [
        ({"tissue_mm2": 0.0005}, "failed", "tissue area 0.0005 mm2 (failed < 0.001)"),
        ({"tumour_cells": 50.0}, "warning", "50 tumour cells (warning < 100)"),
        ({"saturated": 0.02}, "warning", "2.00% of tissue pixels saturated (warning >= 1.00%)"),
        ({"second_stain_deg": 25.6}, "failed", "second stain 25.6 deg out of the hematoxylin-DAB plane"),
        ({"stroma_dab": 0.2}, "warning", "stroma DAB 0.200 OD (nonspecific staining?) (warning >= 0.150)"),
        ({"pen": 0.0, "stroma_dab": float("nan")}, "ok", ""),
    ],
)
def test_evaluate_names_metric_value_and_level(values, status, text):
    got, messages = qc_metrics.evaluate(values, LEVELS)
    assert got == status
    assert text in "; ".join(messages)


def test_failed_qc_makes_the_patient_inadequate_naming_the_metric(demo_rgb, tmp_path):
    _, _, blocks, summary = _score(cv2.GaussianBlur(demo_rgb, (0, 0), 3.0), tmp_path, "blurred")
    slides = pd.DataFrame([summary | {"collected": ""}])
    patients = eligibility.patient_eligibility(slides, blocks, CONFIG, version="test")
    row = patients.iloc[0]
    assert row["call"] == "inadequate"
    assert "QC failed" in row["reason"] and "out of focus" in row["reason"]


def test_stain_angle_is_recorded_and_warns_beyond_its_level(demo_rgb, tmp_path):
    """Reference: P01_A is rendered with vectors 5 deg from QuPath's (synthetic.TileSpec)."""
    _, _, _, summary = _score(demo_rgb, tmp_path, "angle")
    assert 2.0 < summary["qc_stain_angle_deg"] < LEVELS["stain_angle_deg"]["warning"]
    status, messages = qc_metrics.evaluate({"stain_angle_deg": 12.0}, LEVELS)
    assert status == "warning" and messages == ["stain vectors estimated 12.0 deg from the reference (warning >= 10.0)"]


def test_saturated_share_ignores_glass_written_as_255():
    """Glass at 255 in fat vacuoles or at tissue edges is not a clipped stained pixel."""
    glass = np.full((50, 3), 255, np.uint8)
    bright = np.full((30, 3), 240, np.uint8)
    clipped = np.array([[255, 120, 90]] * 10 + [[0, 40, 60]] * 10, np.uint8)
    assert qc_metrics.saturated_share(np.concatenate([glass, bright])) == 0.0
    assert qc_metrics.saturated_share(np.concatenate([glass, bright, clipped])) == pytest.approx(20 / 100)
