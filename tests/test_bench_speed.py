"""The speed benchmark: its structure, and that our stages and the pinned reference pipeline
(tests/reference.py, ``reference_pipeline_*``) agree on the benchmark tile. No speed is asserted
here: speed goals live in ``cxcr4score bench speed``."""

import json
import math

import numpy as np
import pytest

from cxcr4score import cli, config, synthetic
from cxcr4score.bench import speed

from . import reference

SIZE = 256


@pytest.fixture(scope="module")
def bench_tile(tmp_path_factory):
    path, tile = speed.write_tile(tmp_path_factory.mktemp("speed"), SIZE, seed=3)
    cfg = config.default_config()
    threshold = speed.nucleus_threshold(path, cfg)
    ours = speed.our_stages(path, cfg, threshold=threshold)
    ref = speed.reference_stages(path, cfg, reference, threshold=threshold)
    return {"ours": ours, "ref": ref, "ours_state": speed.run_pipeline(ours), "ref_state": speed.run_pipeline(ref)}


def test_read_equals_tifffile(bench_tile):
    """Reference: reference_pipeline_read (tifffile.imread)."""
    np.testing.assert_array_equal(bench_tile["ours_state"]["read"], bench_tile["ref_state"]["read"])


def test_deconvolution_planes_equal_within_float32(bench_tile):
    """Reference: reference_pipeline_deconvolve (float64 Beer-Lambert)."""
    for ours, ref in zip(bench_tile["ours_state"]["deconvolution"], bench_tile["ref_state"]["deconvolution"]):
        np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


def test_tissue_masks_agree(bench_tile):
    """Reference: reference_pipeline_tissue (skimage gaussian, remove_small_objects / holes),
    on the benchmark tile (all tissue) and on a tile with glass."""
    assert bench_tile["ours_state"]["tissue"].all() and bench_tile["ref_state"]["tissue"].all()
    tile = synthetic.generate_tile(synthetic.TileSpec(size_um=(200.0, 200.0), glass_fraction=0.4), seed=2)
    ours = speed.our_stages(None, config.default_config(), threshold=0.1)["tissue"]({"read": tile.rgb})
    ref = speed.reference_stages(None, config.default_config(), reference, threshold=0.1)["tissue"]({"read": tile.rgb})
    assert 0.3 < ref.mean() < 0.9
    assert np.mean(ours == ref) > 0.99


def test_ridges_agree_with_reference(bench_tile):
    """Reference: reference_pipeline_ridges (scipy Gaussian and opening) on the same DAB."""
    ours, ref = bench_tile["ours_state"]["ridges"], bench_tile["ref_state"]["ridges"]
    assert ref[1].sum() > 0.005 * ref[1].size  # the tile's membranes
    assert np.mean(ours[1].astype(bool) == ref[1]) > 0.995
    # Hematoxylin differs only next to a ridge pixel the two disagree on.
    assert np.mean(np.abs(ours[0] - ref[0]) > 1e-3) < 0.001


def test_nuclei_overlap_reference(bench_tile):
    """Reference: reference_pipeline_nuclei (skimage detect_nuclei): Dice of the nucleus masks."""
    assert np.all(np.bincount(bench_tile["ref_state"]["nuclei"].ravel())[1:] > 0)  # numbered 1..n, as ours
    ours, ref = bench_tile["ours_state"]["nuclei"] > 0, bench_tile["ref_state"]["nuclei"] > 0
    assert ref.sum() > 0.05 * ref.size
    assert 2 * np.sum(ours & ref) / (ours.sum() + ref.sum()) > 0.9


def test_compartments_match_reference_on_the_same_nuclei(bench_tile):
    """Reference: reference_pipeline_compartments (skimage expand_labels, grey dilation / erosion)."""
    state = {"nuclei": bench_tile["ours_state"]["nuclei"], "ridges": bench_tile["ours_state"]["ridges"]}
    cells, codes, exposed = bench_tile["ours"]["compartments"](state)
    ref_cells, ref_codes, ref_exposed = bench_tile["ref"]["compartments"](state)
    np.testing.assert_array_equal(cells, ref_cells)
    assert np.mean(codes == ref_codes) > 0.97
    both = ~np.isnan(exposed) & ~np.isnan(ref_exposed)
    assert np.median(np.abs(exposed[both] - ref_exposed[both])) < 0.05


def test_measurement_and_scoring_match_reference_on_the_same_cells(bench_tile):
    """Reference: reference_pipeline_measure (center_of_mass, cell_statistics) and
    reference_pipeline_score (np.digitize, pandas crosstab) on our cells and compartments."""
    ours_state = bench_tile["ours_state"]
    state = {**ours_state, "deconvolution": bench_tile["ref_state"]["deconvolution"]}
    ours, ref = ours_state["measurement"], bench_tile["ref"]["measurement"](state)
    assert len(ours) == len(ref) > 20
    for name in ("row", "col", "membrane_exposed_fraction", "dab_nucleus", "dab_cytoplasm", "dab_membrane_band",
                 "dab_cell", "hematoxylin_nucleus"):
        np.testing.assert_allclose(ours[name].to_numpy(), ref[name].to_numpy(), atol=1e-5, err_msg=name)
    # Sectors are taken about centroids rounded to 2**-20 px here, center_of_mass's there: a
    # pixel on a sector edge may fall on either side, moving a sector mean by its share.
    for name in ("dab_membrane", "dab_membrane_sector_03"):
        a, b = ours[name].to_numpy(), ref[name].to_numpy()
        np.testing.assert_allclose(a, b, atol=2e-3, err_msg=name)
        assert np.mean(np.isclose(a, b, rtol=0, atol=1e-5, equal_nan=True)) >= 0.95, name
    assert np.mean(ours["membrane_line_sectors"].to_numpy() == ref["membrane_line_sectors"].to_numpy()) >= 0.95
    ref_scores = bench_tile["ref"]["scoring"]({"measurement": ours})
    np.testing.assert_array_equal(ours_state["scoring"]["classes"], ref_scores["classes"])
    assert ours_state["scoring"]["h_score"] == pytest.approx(ref_scores["h_score"])
    np.testing.assert_array_equal(ours_state["scoring"]["blocks"].to_numpy(), ref_scores["blocks"].to_numpy())


def test_cli_writes_the_full_result_as_json(tmp_path, capsys):
    out = tmp_path / "speed.json"
    assert cli.main(["bench", "speed", "--size", str(SIZE), "--repeats", "1", "--threads", "2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "targets:" in printed and "deconvolution vs rgb2hed" in printed
    result = json.loads(out.read_text())
    assert result["size"] == SIZE and result["threads"] == 2
    assert set(result["stages"]) == {*speed.STAGES, "end_to_end", "deconvolution_vs_rgb2hed"}
    for name, row in result["stages"].items():
        for key in ("ours_s", "reference_s", "ours_s_2t"):
            assert math.isfinite(row[key]) and row[key] > 0, (name, key)
        assert row["ratio"] == pytest.approx(row["reference_s"] / row["ours_s"])
        assert row["speedup"] == pytest.approx(row["ours_s"] / row["ours_s_2t"])
    assert result["memory_mb"]["ours"] > 50 and result["memory_mb"]["reference"] > 50
    assert set(result["accuracy"]) == {"f1", "tumour_f1", "class_kappa", "membrane_r"}
    assert all(isinstance(check["pass"], bool) for check in result["targets"].values())
    assert "peak_memory_mb_4096" not in result["targets"]  # judged on 4096^2 tiles only
    assert result["machine"]["cpu_count"] >= 1 and "numba" in result["machine"]["versions"]


def test_without_source_checkout_the_cli_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(speed, "_REFERENCE_PATH", tmp_path / "tests" / "reference.py")
    with pytest.raises(speed.NeedsSourceCheckout, match="source checkout"):
        speed.load_reference()
    assert cli.main(["bench", "speed", "--size", "128"]) == 2
    assert "needs a source checkout" in capsys.readouterr().err
