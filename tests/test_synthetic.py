"""Tests of the synthetic tile generator (cxcr4score.synthetic) and the committed demo cohort.

References are plain NumPy / SciPy computations written here: least-squares colour
deconvolution of -log10(I / I0), and scipy.ndimage per-label means.
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage

from cxcr4score import synthetic
from cxcr4score.synthetic import (
    DEFAULT_THRESHOLDS,
    QUPATH_DAB,
    QUPATH_HEMATOXYLIN,
    TRUTH_COLUMNS,
    TileSpec,
    beer_lambert,
    generate_tile,
    render_rgb,
    truth_class,
    write_tile,
)

SAMPLE_SLIDES = Path(__file__).resolve().parents[1] / "sample_slides"
SMALL = TileSpec(size_um=(160.0, 160.0))


@pytest.fixture(scope="module")
def tile():
    """A default tile with positive lymphocytes, at half the default field."""
    return generate_tile(TileSpec(size_um=(256.0, 256.0), lymphocyte_positive_fraction=0.5), seed=7)


def _unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


def test_same_seed_same_tile_other_seed_other_tile():
    a = generate_tile(SMALL, seed=3)
    b = generate_tile(SMALL, seed=3)
    c = generate_tile(SMALL, seed=4)
    np.testing.assert_array_equal(a.rgb, b.rgb)
    np.testing.assert_array_equal(a.cell_labels, b.cell_labels)
    pd.testing.assert_frame_equal(a.truth, b.truth)
    assert not np.array_equal(a.rgb, c.rgb)


def test_beer_lambert_round_trip_recovers_concentrations():
    """Reference: least squares of OD = -log10(I / I0) on the stain directions."""
    vectors = np.array([[0.62, 0.72, 0.31], [0.30, 0.55, 0.78]])
    i0 = np.array([238.0, 244.0, 231.0])
    h_true, d_true = 0.55, 0.35
    h = np.full((8, 8), h_true, np.float32)
    d = np.full((8, 8), d_true, np.float32)

    exact = beer_lambert(h, d, i0=i0, stain_vectors=vectors)
    rgb = render_rgb(h, d, i0=i0, stain_vectors=vectors)

    unit = np.stack([_unit(v) for v in vectors])
    for image, tol in ((exact, 1e-5), (rgb.astype(np.float64), 0.01)):
        od = -np.log10(image.reshape(-1, 3) / i0)
        conc, *_ = np.linalg.lstsq(unit.T, od.T, rcond=None)
        np.testing.assert_allclose(conc[0], h_true, atol=tol)
        np.testing.assert_allclose(conc[1], d_true, atol=tol)


def test_beer_lambert_rejects_bad_input():
    one = np.ones((2, 2), np.float32)
    with pytest.raises(ValueError, match="one shape"):
        beer_lambert(one, np.ones((3, 3)), i0=[240] * 3, stain_vectors=[QUPATH_HEMATOXYLIN, QUPATH_DAB])
    with pytest.raises(ValueError, match="stain_vectors"):
        beer_lambert(one, one, i0=[240] * 3, stain_vectors=[QUPATH_HEMATOXYLIN, (0, 0, 0)])
    with pytest.raises(ValueError, match="rng"):
        render_rgb(one, one, i0=[240] * 3, stain_vectors=[QUPATH_HEMATOXYLIN, QUPATH_DAB], noise_sigma=1.0)


def test_render_departs_from_analysis_assumptions(tile):
    spec = TileSpec()
    for used, reference in zip(tile.stain_vectors, (QUPATH_HEMATOXYLIN, QUPATH_DAB)):
        angle = math.degrees(math.acos(np.clip(_unit(used) @ _unit(reference), -1, 1)))
        assert angle == pytest.approx(spec.stain_angle_deg, abs=1e-6)
    assert np.all((tile.i0 >= spec.i0_range[0]) & (tile.i0 <= spec.i0_range[1]))
    glass = ~tile.tissue_mask
    measured = np.percentile(tile.rgb[glass].astype(float), 50, axis=0)
    np.testing.assert_allclose(measured, tile.i0, atol=1.5)


def test_truth_table_columns_and_classes(tile):
    """Reference: classes by plain comparisons with 0.2 / 0.4 / 0.6."""
    truth = tile.truth
    assert tuple(truth.columns) == TRUTH_COLUMNS
    t1, t2, t3 = DEFAULT_THRESHOLDS
    for column, source in (("class_membrane", "dab_membrane"), ("class_cytoplasm", "dab_cytoplasm")):
        v = truth[source].fillna(-1).to_numpy()
        expected = (v >= t1).astype(int) + (v >= t2) + (v >= t3)
        np.testing.assert_array_equal(truth[column], expected)
    np.testing.assert_array_equal(truth["class"],
                                  np.maximum(truth["class_membrane"], truth["class_cytoplasm"]))
    # levels keep the class margin away from every threshold
    means = truth[["dab_membrane", "dab_cytoplasm"]].to_numpy().ravel()
    means = means[~np.isnan(means)]
    gap = np.min(np.abs(means[:, None] - np.array(DEFAULT_THRESHOLDS)[None, :]), axis=1)
    assert gap.min() >= TileSpec().class_margin - 1e-4
    # patterns agree with the classes
    tumour = truth[truth["cell_type"] == "tumour"]
    assert set(tumour.loc[tumour["class"] == 0, "pattern"]) == {"negative"}
    assert (tumour.loc[tumour["pattern"] == "negative", "class"] == 0).all()
    membrane = tumour[tumour["pattern"] == "membrane"]
    assert (membrane["class_cytoplasm"] == 0).all() and (membrane["class_membrane"] > 0).all()
    mixed = tumour[tumour["pattern"] == "mixed"]
    assert mixed["class_cytoplasm"].between(1, 3).all()
    assert (mixed["class_cytoplasm"] <= mixed["class_membrane"]).all()


def test_truth_class_handles_nan_and_edges():
    np.testing.assert_array_equal(truth_class([np.nan, 0.1999, 0.2, 0.6, 2.0]), [0, 0, 1, 3, 3])


def test_truth_means_match_maps_over_label_masks(tile):
    """Reference: scipy.ndimage per-label means over truth masks of the concentration maps."""
    truth = tile.truth
    ids = truth["cell_id"].to_numpy()
    cells, comp = tile.cell_labels, tile.compartments
    for column, code, image in (("dab_nucleus", 1, tile.dab), ("dab_cytoplasm", 2, tile.dab),
                                ("dab_membrane", 3, tile.dab), ("hematoxylin_nucleus", 1, tile.hematoxylin)):
        with np.errstate(invalid="ignore"):  # empty compartments give NaN, as in the truth
            reference = ndimage.mean(image, labels=np.where(comp == code, cells, 0), index=ids)
        np.testing.assert_allclose(truth[column], reference, rtol=1e-5, atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(tile.nucleus_labels, np.where(comp == 1, cells, 0))
    rows_cols = np.array(ndimage.center_of_mass(tile.nucleus_labels > 0, tile.nucleus_labels, ids))
    np.testing.assert_allclose(truth[["y", "x"]].to_numpy(), rows_cols, atol=1e-6)
    np.testing.assert_allclose(truth["x_um"], truth["x"] * tile.mpp)
    area = ndimage.sum(np.ones_like(cells), cells, ids) * tile.mpp**2
    np.testing.assert_allclose(truth["cell_area_um2"], area)
    assert set(np.unique(cells)) == {0, *ids}


def test_membrane_band_is_about_one_micrometre(tile):
    truth = tile.truth
    tumour = truth[(truth["cell_type"] == "tumour") & (truth["membrane_exposed_fraction"] == 0)]
    band_area = ndimage.sum(tile.compartments == 3, tile.cell_labels, tumour["cell_id"]) * tile.mpp**2
    perimeter = 2 * np.sqrt(np.pi * tumour["cell_area_um2"])  # circle of equal area: a lower bound
    width = np.median(band_area / perimeter)
    assert 0.8 <= width <= 1.3


def test_cell_counts_and_types_are_plausible():
    tile = generate_tile(TileSpec(), seed=11)
    truth, spec = tile.truth, TileSpec()
    counts = truth["cell_type"].value_counts()
    tissue_mm2 = tile.tissue_mask.mean() * 0.512**2
    nest_mm2 = tissue_mm2 * spec.nest_fraction
    assert 0.6 <= counts["tumour"] * 195e-6 / nest_mm2 <= 1.4  # cells of about 15 um
    assert counts["immune"] > counts["stroma"] > 0
    assert abs((1 - tile.tissue_mask.mean()) - spec.glass_fraction) < 0.03
    tumour = truth[truth["cell_type"] == "tumour"]
    assert abs((tumour["class"] > 0).mean() - spec.positive_fraction) <= 1 / len(tumour)
    assert 25 <= tumour["nucleus_area_um2"].median() <= 80
    assert 110 <= tumour["cell_area_um2"].median() <= 260
    assert tumour["hematoxylin_nucleus"].between(*spec.nucleus_hematoxylin).all()
    immune = truth[truth["cell_type"] == "immune"]
    assert immune["nucleus_area_um2"].between(15, 40).all()
    assert (immune["class"] == 0).all() and (immune["pattern"] == "negative").all()
    assert immune["hematoxylin_nucleus"].median() > tumour["hematoxylin_nucleus"].median()


def test_positive_lymphocytes_are_membrane_stained(tile):
    immune = tile.truth[tile.truth["cell_type"] == "immune"]
    positive = immune[immune["class"] > 0]
    assert abs(len(positive) / len(immune) - 0.5) <= 1 / len(immune)
    assert (positive["pattern"] == "membrane").all() and (positive["class_membrane"] > 0).all()


def test_geometry_is_in_micrometres_at_quarter_micron_pixels():
    """Fixed cell diameter (15 um) and nucleus area (50 um^2): same sizes at 0.5 and 0.25 um/px."""
    sizes = {"size_um": (200.0, 200.0), "cell_diameter_um": (15.0, 15.0), "nucleus_area_um2": (50.0, 50.0)}
    coarse = generate_tile(TileSpec(**sizes), seed=5)
    fine = generate_tile(TileSpec(**sizes, mpp=0.25), seed=5)
    assert fine.rgb.shape == (800, 800, 3) and coarse.rgb.shape == (400, 400, 3)
    for tile in (coarse, fine):
        tumour = tile.truth[tile.truth["cell_type"] == "tumour"]
        assert tumour["cell_area_um2"].median() == pytest.approx(math.sqrt(3) / 2 * 15**2, rel=0.15)
        assert tumour["nucleus_area_um2"].median() == pytest.approx(50, rel=0.15)
        assert tile.truth["x_um"].max() <= 200.0


def test_no_positive_cells_and_no_tissue_edge_cases():
    tile = generate_tile(TileSpec(size_um=(160.0, 160.0), positive_fraction=0.0, glass_fraction=0.0), seed=2)
    assert tile.tissue_mask.all()
    assert (tile.truth["class"] == 0).all()
    assert tile.dab.max() <= TileSpec().negative_dab_max * 4  # granular texture about a level <= 0.05


@pytest.mark.parametrize("change, message", [
    ({"stain_angle_deg": 12.0}, "stain_angle_deg"),
    ({"glass_fraction": 1.0}, "glass_fraction"),
    ({"tissue_layout": "corner"}, "tissue_layout"),
    ({"class_weights": (1.0, -1.0, 0.0)}, "class_weights"),
    ({"i0_range": (250.0, 225.0)}, "i0_range"),
    ({"mpp": 0.0}, "mpp"),
])
def test_invalid_spec_is_refused(change, message):
    with pytest.raises(ValueError, match=message):
        TileSpec(**change)


def test_generate_tile_needs_a_spec():
    with pytest.raises(TypeError, match="TileSpec"):
        generate_tile({"mpp": 0.5}, seed=1)


@pytest.mark.parametrize("quality", [None, 90])
def test_write_tile_round_trip(tmp_path, quality):
    tile = generate_tile(TileSpec(size_um=(160.0, 160.0), mpp=0.25), seed=9)
    path = write_tile(tile, tmp_path / "t.tif", jpeg_quality=quality)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert page.shape == tile.rgb.shape
        assert page.resolutionunit == tifffile.RESUNIT.CENTIMETER
        x_res, y_res = page.resolution
        assert 1e4 / x_res == pytest.approx(0.25) and 1e4 / y_res == pytest.approx(0.25)
        image = page.asarray()
    if quality is None:
        np.testing.assert_array_equal(image, tile.rgb)
    else:
        assert np.abs(image.astype(int) - tile.rgb).mean() < 3
    truth = pd.read_csv(tmp_path / "t.truth.csv")
    assert list(truth.columns) == list(TRUTH_COLUMNS)
    np.testing.assert_allclose(truth["dab_membrane"], tile.truth["dab_membrane"], rtol=1e-5, equal_nan=True)
    with pytest.raises(ValueError, match="jpeg_quality"):
        write_tile(tile, tmp_path / "u.tif", jpeg_quality=0)


def test_write_demo_cohort_writes_sheet_expected_and_roi(tmp_path, monkeypatch):
    small = (
        synthetic._DemoSlide("A1", "A1_x", "eligible", TileSpec(size_um=(160.0, 160.0)), seed=1,
                             specimen="primary", collected="2024-01-01", roi=True),
        synthetic._DemoSlide("A1", "A1_y", "eligible", TileSpec(size_um=(160.0, 160.0)), seed=2,
                             specimen="primary", collected="2024-02-01"),
        synthetic._DemoSlide("B2", "B2_x", "not_eligible", SMALL, seed=3, specimen="primary"),
    )
    monkeypatch.setattr(synthetic, "_DEMO_COHORT", small)
    expected = synthetic.write_demo_cohort(tmp_path)
    assert expected.to_dict("list") == {"patient_id": ["A1", "B2"], "call": ["eligible", "not_eligible"]}
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "expected.csv"), expected)
    sheet = pd.read_csv(tmp_path / "slides.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert list(sheet.columns) == ["patient_id", "slide_id", "path", "mpp", "roi", "specimen", "collected"]
    assert sheet["slide_id"].tolist() == ["A1__A1_x", "A1__A1_y", "B2__B2_x"]
    assert sheet["roi"].tolist() == ["A1/A1_x.roi.geojson", "", ""]
    for rel in [*sheet["path"], sheet["roi"][0], "A1/A1_x.truth.csv"]:
        assert (tmp_path / rel).is_file()
    _check_roi(tmp_path / sheet["roi"][0])


def _check_roi(path):
    """A QuPath-style FeatureCollection with one closed Polygon annotation classified Tumor."""
    roi = json.loads(path.read_text())
    assert roi["type"] == "FeatureCollection" and len(roi["features"]) == 1
    feature = roi["features"][0]
    assert feature["properties"] == {"objectType": "annotation",
                                     "classification": {"name": "Tumor", "color": [200, 0, 0]}}
    ring = feature["geometry"]["coordinates"][0]
    assert feature["geometry"]["type"] == "Polygon" and len(ring) >= 4 and ring[0] == ring[-1]
    return np.array(ring)


def _committed_design():
    return {s.stem: s for s in synthetic._DEMO_COHORT}


def test_committed_demo_cohort_matches_design():
    design = _committed_design()
    expected = pd.read_csv(SAMPLE_SLIDES / "expected.csv", dtype=str)
    assert expected.to_dict("list") == {
        "patient_id": ["P01", "P02", "P03", "P04", "P05", "P06"],
        "call": ["eligible", "not_eligible", "inadequate", "indeterminate", "eligible", "not_eligible"],
    }
    sheet = pd.read_csv(SAMPLE_SLIDES / "slides.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert sorted(Path(p).stem for p in sheet["path"]) == sorted(design)
    calls = dict(zip(expected["patient_id"], expected["call"]))
    for row in sheet.itertuples():
        slide = design[Path(row.path).stem]
        assert calls[row.patient_id] == slide.call and row.mpp == ""
        with tifffile.TiffFile(SAMPLE_SLIDES / row.path) as tif:
            page = tif.pages[0]
            assert 1e4 / page.resolution[0] == pytest.approx(slide.spec.mpp)
            assert page.shape[:2] == slide.spec.shape
        truth = pd.read_csv(SAMPLE_SLIDES / row.path.replace(".tif", ".truth.csv"))
        tumour = truth[truth["cell_type"] == "tumour"]
        pct = 100 * (tumour["class"] > 0).mean()
        assert abs(pct - 100 * slide.spec.positive_fraction) <= 100 / len(tumour)
        if slide.call == "inadequate":
            assert len(truth) < 60
        elif slide.call == "not_eligible":
            # 0 positives; Wilson upper bound on n / 5 (design effect 5) below the 1 % cutoff
            n_eff = len(tumour) / 5
            assert pct == 0 and 1.96**2 / (n_eff + 1.96**2) < 0.01
        if row.roi:
            ring = _check_roi(SAMPLE_SLIDES / row.roi)
            assert ring.min() >= 0 and ring[:, 0].max() < page.shape[1] and ring[:, 1].max() < page.shape[0]


def test_committed_demo_slide_regenerates_identically(tmp_path):
    """The smallest committed slide (P03) is reproduced from the code: same truth table."""
    slide = _committed_design()["P03_A"]
    synthetic._write_demo_slide(slide, tmp_path)
    fresh = pd.read_csv(tmp_path / "P03" / "P03_A.truth.csv")
    committed = pd.read_csv(SAMPLE_SLIDES / "P03" / "P03_A.truth.csv")
    pd.testing.assert_frame_equal(fresh, committed)
