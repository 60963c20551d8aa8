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

from cxcr4score import synthetic, synthetic_cohort
from cxcr4score.stains import QUPATH_DAB, QUPATH_HEMATOXYLIN
from cxcr4score.synthetic import (
    DEFAULT_THRESHOLDS,
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


# --------------------------------------------------------------------------------------
# Realism options (issue 4, item 1): each is off by default and proven here when on
# --------------------------------------------------------------------------------------


def _angle_deg(u, v):
    return math.degrees(math.acos(np.clip(_unit(u) @ _unit(v), -1, 1)))


def test_independent_i0_per_channel_measured_on_glass():
    """I0 per channel read back from the glass of the rendered tile lies in 215-250."""
    spreads = []
    for seed in range(6):
        spec = TileSpec(size_um=(96.0, 96.0), glass_fraction=0.4, i0_independent=True, i0_range=(215.0, 250.0))
        tile = generate_tile(spec, seed=seed)
        glass = tile.rgb[~tile.tissue_mask].astype(float)
        measured = np.median(glass, axis=0)
        assert np.all((measured >= 215 - 1) & (measured <= 250 + 1))
        np.testing.assert_allclose(measured, tile.i0, atol=1.5)
        spreads.append(np.ptp(tile.i0))
    assert max(spreads) > 2 * 4.0  # beyond the +-4 white-balance spread of the default draw


def test_stain_angle_jitter_recovered_from_pixels():
    """Reference: least-squares fit of the rendered OD on the concentration maps gives the DAB
    direction; it lies within the drawn jitter (3-10 degrees) of QuPath's, and angles vary."""
    angles = []
    for seed in (1, 2, 3):
        spec = TileSpec(size_um=(128.0, 128.0), stain_angle_deg=10.0, stain_angle_min_deg=3.0,
                        positive_fraction=0.8, blur_sigma_um=(0.0, 0.0), noise_sigma=0.0)
        tile = generate_tile(spec, seed=seed)
        ok = tile.tissue_mask & np.all(tile.rgb > 5, axis=-1)
        od = -np.log10(tile.rgb[ok].astype(float) / tile.i0)
        conc = np.column_stack([tile.hematoxylin[ok], tile.dab[ok]])
        vectors, *_ = np.linalg.lstsq(conc, od, rcond=None)
        assert _angle_deg(vectors[1], tile.stain_vectors[1]) < 1.0
        angle = _angle_deg(vectors[1], QUPATH_DAB)
        assert 2.0 <= angle <= 11.0
        angles.append(angle)
    assert np.ptp(angles) > 0.5


def test_jpeg_quality_changes_the_bytes(tmp_path):
    tile = generate_tile(SMALL, seed=4)
    sizes, errors = {}, {}
    for quality in (70, 95):
        path = write_tile(tile, tmp_path / f"q{quality}.tif", jpeg_quality=quality)
        sizes[quality] = path.stat().st_size
        errors[quality] = np.abs(tifffile.imread(path).astype(int) - tile.rgb).mean()
    assert sizes[70] < sizes[95] and errors[70] > errors[95]


def test_fold_darkens_what_it_covers_and_marks_cells():
    spec = TileSpec(size_um=(256.0, 256.0), glass_fraction=0.0, fold_fraction=0.15, fold_dab=0.08)
    tile = generate_tile(spec, seed=6)
    fold = tile.fold_mask
    assert 0.08 <= fold.mean() <= 0.25
    free = tile.cell_labels == 0
    brightness = tile.rgb.astype(float).sum(axis=-1)
    assert brightness[fold & free].mean() < brightness[~fold & free].mean() - 30
    truth = tile.truth
    assert truth["in_fold"].any() and not truth["in_fold"].all()
    inside = fold[np.rint(truth["y"]).astype(int), np.rint(truth["x"]).astype(int)]
    np.testing.assert_array_equal(truth["in_fold"], inside)
    # the truth is the cells' own stain: the fold adds to the maps, not to the truth means
    fold_cells = truth.loc[truth["in_fold"], "cell_id"]
    own = ndimage.mean(tile.dab, np.where(tile.compartments == 3, tile.cell_labels, 0), fold_cells)
    added = own - truth.set_index("cell_id").loc[fold_cells, "dab_membrane"].to_numpy()
    assert added.min() >= -1e-6 and np.median(added) > 0.03
    assert "in_fold" not in generate_tile(SMALL, seed=6).truth.columns


def test_debris_is_brown_and_outside_every_cell():
    spec = TileSpec(size_um=(256.0, 256.0), glass_fraction=0.0, debris_density_mm2=400.0)
    tile = generate_tile(spec, seed=8)
    debris = tile.debris_mask
    n_blobs = ndimage.label(debris)[1]
    assert n_blobs >= 5
    assert not (debris & (tile.cell_labels > 0)).any()
    assert np.median(tile.dab[debris]) >= 0.3
    clean = generate_tile(TileSpec(size_um=(256.0, 256.0), glass_fraction=0.0), seed=8)
    assert not clean.debris_mask.any()


def test_stroma_brown_only_between_cells():
    spec = TileSpec(size_um=(192.0, 192.0), glass_fraction=0.2, stroma_dab=0.05)
    tile = generate_tile(spec, seed=10)
    free = tile.tissue_mask & (tile.cell_labels == 0)
    assert tile.dab[free].mean() == pytest.approx(0.05, abs=0.01)
    assert (tile.dab[~tile.tissue_mask] == 0).all()
    base = generate_tile(TileSpec(size_um=(192.0, 192.0), glass_fraction=0.2), seed=10)
    assert (base.dab[free] == 0).all()


def _nest_positive_fractions(tile):
    truth = tile.truth.set_index("cell_id")
    tumour_ids = truth.index[truth["cell_type"] == "tumour"]
    nests, n = ndimage.label(np.isin(tile.cell_labels, tumour_ids))
    fractions = []
    for k in range(1, n + 1):
        ids = np.unique(tile.cell_labels[nests == k])
        if len(ids) >= 10:
            fractions.append((truth.loc[ids, "class"] > 0).mean())
    return np.array(fractions)


def test_heterogeneous_nests_differ_in_positivity():
    """With positivity set per nest, nests are mostly all-positive or all-negative."""
    base = {"size_um": (512.0, 512.0), "nest_fraction": 0.3, "nest_scale_um": 30.0, "positive_clustering": 0.0,
            "positive_fraction": 0.4}
    even = _nest_positive_fractions(generate_tile(TileSpec(**base), seed=13))
    uneven = _nest_positive_fractions(generate_tile(TileSpec(**base, nest_heterogeneity=0.95), seed=13))
    assert len(even) >= 5 and len(uneven) >= 5
    assert uneven.std() > 2 * even.std()


def test_lymphocytes_inside_nests():
    spec = TileSpec(size_um=(256.0, 256.0), intratumoral_lymphocyte_fraction=0.15, lymphocyte_positive_fraction=0.5)
    tile = generate_tile(spec, seed=13)
    truth = tile.truth
    tumour = truth[truth["cell_type"] == "tumour"]
    nested = truth[_enclosed_by_tumour(tile)]
    assert len(nested) >= 0.05 * len(tumour)
    assert nested["nucleus_area_um2"].between(15, 40).all()
    assert nested["cell_area_um2"].max() < 70
    assert (nested.loc[nested["class"] > 0, "pattern"] == "membrane").all() and (nested["class"] > 0).any()
    plain = generate_tile(TileSpec(size_um=(256.0, 256.0), lymphocyte_positive_fraction=0.5), seed=13)
    assert _enclosed_by_tumour(plain).sum() <= 0.25 * len(nested)  # stroma lymphocytes in a nest bay


def _enclosed_by_tumour(tile):
    """Immune cells with tumour cells on at least half of a circle 6 um outside their cell."""
    truth = tile.truth
    kind = np.full(tile.cell_labels.max() + 1, "", object)
    kind[truth["cell_id"]] = truth["cell_type"]
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    radius = (np.sqrt(truth["cell_area_um2"] / np.pi) + 6.0) / tile.mpp
    rows = np.clip(np.rint(truth["y"].to_numpy()[:, None] + radius.to_numpy()[:, None] * np.sin(angles)), 0,
                   tile.cell_labels.shape[0] - 1).astype(int)
    cols = np.clip(np.rint(truth["x"].to_numpy()[:, None] + radius.to_numpy()[:, None] * np.cos(angles)), 0,
                   tile.cell_labels.shape[1] - 1).astype(int)
    around = kind[tile.cell_labels[rows, cols]] == "tumour"
    return ((truth["cell_type"] == "immune") & (around.mean(axis=1) >= 0.5)).to_numpy()


@pytest.mark.parametrize("change, message", [
    ({"stain_angle_min_deg": 6.0, "stain_angle_deg": 5.0}, "stain_angle_min_deg"),
    ({"fold_fraction": 0.7}, "fold_fraction"),
    ({"stroma_dab": 0.5}, "stroma_dab"),
    ({"nest_heterogeneity": 1.5}, "nest_heterogeneity"),
])
def test_invalid_realism_options_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        TileSpec(**change)


# --------------------------------------------------------------------------------------
# Named configurations (cxcr4score.synthetic_cohort)
# --------------------------------------------------------------------------------------


def test_configurations_depart_from_analysis_defaults():
    assert list(synthetic_cohort.CONFIGURATIONS)[-1] == synthetic_cohort.HELD_OUT
    for name in synthetic_cohort.CONFIGURATIONS:
        slides = synthetic_cohort.cohort(name, patients=6, tiles_per_patient=3)
        assert len(slides) == 18 and len({s.slide_id for s in slides}) == 18
        assert len({s.patient_id for s in slides}) == 6
        for slide in slides:
            spec = slide.spec
            assert spec.i0_independent and spec.i0_range == (215.0, 250.0)
            assert spec.stain_angle_deg == 10.0 and spec.stain_angle_min_deg is not None
            assert 70 <= slide.jpeg_quality <= 95
        assert len({s.jpeg_quality for s in slides}) > 3
    held = synthetic_cohort.cohort(synthetic_cohort.HELD_OUT, patients=6, tiles_per_patient=3)
    assert {s.spec.mpp for s in held} == {0.25, 0.5}
    only = synthetic_cohort.cohort("lymphocyte_only", patients=3)
    assert all(s.spec.positive_fraction == 0 and s.spec.lymphocyte_positive_fraction > 0 for s in only)
    fractions = [s.spec.positive_fraction for s in synthetic_cohort.cohort("membrane", patients=6)]
    assert fractions == list(synthetic_cohort.PATIENT_POSITIVE_FRACTIONS)


def test_held_out_seeds_are_its_own():
    seeds = {name: {s.seed for s in synthetic_cohort.cohort(name, patients=200, tiles_per_patient=99)}
             for name in synthetic_cohort.CONFIGURATIONS}
    held = seeds.pop(synthetic_cohort.HELD_OUT)
    for name, other in seeds.items():
        assert not held & other, name


def test_quarter_micron_configuration_has_twice_the_pixels_per_micrometre():
    fine = synthetic_cohort.cohort("mixed_nests", patients=1, size_um=100.0)[0]
    coarse = synthetic_cohort.cohort("membrane", patients=1, size_um=100.0)[0]
    assert fine.spec.mpp == 0.25 and coarse.spec.mpp == 0.5
    assert generate_tile(fine.spec, seed=fine.seed).rgb.shape[:2] == (400, 400)
    assert generate_tile(coarse.spec, seed=coarse.seed).rgb.shape[:2] == (200, 200)


def test_cohort_rejects_bad_requests():
    with pytest.raises(ValueError, match="unknown generator configuration 'nope'"):
        synthetic_cohort.cohort("nope", patients=1)
    with pytest.raises(ValueError, match="tiles_per_patient"):
        synthetic_cohort.cohort("membrane", patients=1, tiles_per_patient=100)


def test_synth_writes_a_named_configuration(tmp_path, capsys):
    from cxcr4score import cli

    assert cli.main(["synth", "--out", str(tmp_path), "--config-name", "held_out", "-n", "2", "--size", "128"]) == 0
    expected = synthetic_cohort.cohort("held_out", patients=2, size_um=64.0)
    for slide in expected:
        with tifffile.TiffFile(tmp_path / f"{slide.slide_id}.tif") as tif:
            page = tif.pages[0]
            assert 1e4 / page.resolution[0] == pytest.approx(slide.spec.mpp)
            assert page.shape[:2] == slide.spec.shape
            assert page.compression == tifffile.COMPRESSION.JPEG
        truth = pd.read_csv(tmp_path / f"{slide.slide_id}.truth.csv")
        pd.testing.assert_frame_equal(truth, generate_tile(slide.spec, seed=slide.seed).truth,
                                      check_dtype=False, atol=1e-5)
    assert cli.main(["synth", "--out", str(tmp_path), "--config-name", "nope"]) == 2
    assert "unknown generator configuration 'nope'" in capsys.readouterr().err
