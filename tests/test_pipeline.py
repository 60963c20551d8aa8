"""One slide through every stage (pipeline.score_slide) against the generator's truth."""

import json

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy.spatial import cKDTree

from cxcr4score import config, eligibility, grid, pipeline, qc, reading_order, segment, stains, synthetic, tiling
from cxcr4score.slide_reader import open_slide
from cxcr4score.bench import accuracy as bench

CONFIG = config.default_config()


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    tile = synthetic.generate_tile(synthetic.TileSpec(size_um=(300.0, 300.0), positive_fraction=0.4), seed=21)
    path = tmp_path_factory.mktemp("slide") / "tile.tif"
    synthetic.write_tile(tile, path, jpeg_quality=90)
    return tile, pipeline.score_slide(path, slide_id="S1", patient_id="P1", config=CONFIG)


def test_cells_found_where_the_truth_has_them(scored):
    """Reference: truth nucleus centroids; a detection within 4 um matches."""
    tile, (_, cells, _, _) = scored
    truth_idx, _ = bench._match(cells, tile.truth, tile.mpp)
    assert len(truth_idx) / len(tile.truth) > 0.95
    assert len(cells) < 1.1 * len(tile.truth)


def test_negative_cells_stay_negative(scored):
    """Truth-negative tumour cells (DAB <= 0.05) must not be called positive at threshold 0.2."""
    tile, (_, cells, _, _) = scored
    truth_idx, cell_idx = bench._match(cells, tile.truth, tile.mpp)
    truth = tile.truth.iloc[truth_idx].reset_index(drop=True)
    classes = cells["class"].to_numpy()[cell_idx]
    negative = (truth["class"] == 0).to_numpy()
    assert np.mean(classes[negative] == 0) > 0.97
    positive = (truth["class"] >= 2).to_numpy()
    assert np.mean(classes[positive] >= 1) > 0.8


def test_cells_table_contract_and_blocks_add_up(scored):
    _, (info, cells, blocks, summary) = scored
    assert list(cells.columns[: len(pipeline.CELL_COLUMNS)]) == list(pipeline.CELL_COLUMNS)
    assert cells["class"].between(0, 3).all()
    nominal = blocks[(blocks["variant"] == "nominal") & (blocks["measure"] == "class")]
    totals = nominal[["n0", "n1", "n2", "n3"]].sum()
    scored = cells["scored"].to_numpy()
    assert totals.sum() == scored.sum() == (cells["cell_type"] == "tumour").sum()  # no ROI: tumour cells
    assert np.bincount(cells["class"][scored], minlength=4).tolist() == totals.tolist()
    assert {"thresholds_minus", "thresholds_plus", "alt_i0"} <= set(blocks["variant"])
    assert info.i0_source == "glass" and summary["qc_status"] == "ok"
    json.dumps(summary)  # the summary goes to JSON as it is
    assert np.asarray(summary["pixel_hist"]).shape == (2, 800)


def test_pixel_histogram_counts_the_scored_cells_pixels(scored):
    """The pixel H-score counts tumour pixels: the histogram holds exactly the pixels of the
    cells scored (typed tumour, no ROI here), and with tumour_cells: all those of every cell.
    Reference: the cells table's pixel areas."""
    _, (info, cells, _, summary) = scored
    px = np.rint(cells["cell_area_um2"].to_numpy() / 0.25).astype(int)
    assert np.asarray(summary["pixel_hist"]).sum() == px[cells["scored"].to_numpy()].sum()
    assert 0 < cells["scored"].sum() < len(cells)
    measurements, hist = pipeline.measure_chunk(info, "0", config=CONFIG)
    _, _, every = pipeline.merge_slide(info, measurements, [hist], config=config.merge(CONFIG, {"tumour_cells": "all"}))
    assert np.asarray(every["pixel_hist"]).sum() == px.sum()


def test_merge_is_additive_over_chunks(scored):
    """HistomicsTK-style totals: merging measurements split in two gives the same counts."""
    _, (info, _, blocks, _) = scored
    measurements, hist = pipeline.measure_chunk(info, "0", config=CONFIG)
    half = len(measurements) // 2
    _, split_blocks, _ = pipeline.merge_slide(
        info, pd.concat([measurements.iloc[half:], measurements.iloc[:half]]), [hist // 2, hist - hist // 2],
        config=CONFIG)
    key = ["variant", "measure", "block_id"]
    pd.testing.assert_frame_equal(split_blocks.sort_values(key).reset_index(drop=True),
                                  blocks.sort_values(key).reset_index(drop=True))


def test_cell_areas_are_pixel_counts_of_the_cell_labels(scored):
    """Reference: np.bincount of the segmented cell labels (the table takes them from the
    compartment counts); the same chunk read and segmented again."""
    _, (info, _, _, _) = scored
    measurements, _ = pipeline.measure_chunk(info, "0", config=CONFIG)
    with open_slide(info.path) as reader:
        rgb = grid.read_box(reader, info.grid, (0, 0, *info.shape))
    tables = stains.concentration_tables(info.i0, np.asarray(info.stain_matrix))
    hematoxylin, dab = stains.deconvolve(rgb, tables)
    _, cells, _, _ = segment.segment_cells(hematoxylin, dab, mpp=0.5, config=CONFIG, baseline=info.nucleus_baseline)
    ids = (measurements["cell_id"] % pipeline._CELL_ID_STRIDE).to_numpy()
    expected = np.bincount(cells.ravel(), minlength=cells.max() + 1)[ids] * 0.25
    np.testing.assert_array_equal(measurements["cell_area_um2"].to_numpy(), expected)


def test_roi_restricts_scoring(tmp_path):
    tile = synthetic.generate_tile(synthetic.TileSpec(size_um=(200.0, 200.0)), seed=22)
    path = tmp_path / "t.tif"
    synthetic.write_tile(tile, path)
    roi = tmp_path / "t.roi.geojson"
    square = [[0, 0], [200, 0], [200, 400], [0, 400], [0, 0]]  # left half, level-0 px
    roi.write_text(json.dumps({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [square]},
                               "properties": {"objectType": "annotation"}}))
    _, cells, blocks, summary = pipeline.score_slide(path, slide_id="S", roi_path=str(roi), config=CONFIG)
    inside = cells["in_roi"].to_numpy()
    assert inside.any() and not inside.all()
    assert (cells.loc[inside, "x"] < 201).all()
    nominal = blocks[(blocks["variant"] == "nominal") & (blocks["measure"] == "class")]
    tumour_inside = inside & (cells["cell_type"] == "tumour").to_numpy()
    assert nominal[["n0", "n1", "n2", "n3"]].to_numpy().sum() == tumour_inside.sum() == cells["scored"].sum()
    assert summary["has_roi"] and summary["tumour_source"] == "roi"


def test_finer_image_is_resampled_and_mapped_to_level0(tmp_path):
    """A 0.25 um/px image is analysed at 0.5 um/px; cell x, y come back in level-0 pixels."""
    tile = synthetic.generate_tile(synthetic.TileSpec(size_um=(150.0, 150.0), mpp=0.25), seed=23)
    path = tmp_path / "fine.tif"
    synthetic.write_tile(tile, path)
    info, cells, _, _ = pipeline.score_slide(path, slide_id="F", config=CONFIG)
    assert info.mpp == pytest.approx(0.25) and info.analysis_mpp == pytest.approx(0.5)
    truth_idx, _ = bench._match(cells, tile.truth, tile.mpp)
    assert len(truth_idx) / len(tile.truth) > 0.9
    np.testing.assert_allclose(cells["x_um"], cells["x"] * 0.25)


def test_blank_glass_gives_no_cells_and_fails_qc_on_tissue_area(tmp_path):
    path = tmp_path / "glass.tif"
    rng = np.random.default_rng(0)
    glass = np.clip(240 + rng.normal(0, 2, (300, 300, 3)), 0, 255).astype(np.uint8)
    tifffile.imwrite(path, glass, photometric="rgb", resolution=(20000, 20000), resolutionunit="CENTIMETER")
    info, cells, blocks, summary = pipeline.score_slide(path, slide_id="G", config=CONFIG)
    assert len(cells) == 0 and list(cells.columns[:3]) == ["cell_id", "x", "y"]
    assert summary["qc_status"] == "failed" and "no tissue" in summary["qc_message"]
    assert "tissue area 0 mm2 (failed < 0.001)" in summary["qc_message"]


def test_roi_classes_choose_the_annotations_that_count(tmp_path):
    """A QuPath export with a Tumor (left half) and a Stroma (right half) annotation: with
    roi_classes [Tumor] only the left half's cells are in the region."""
    tile = synthetic.generate_tile(synthetic.TileSpec(size_um=(200.0, 200.0)), seed=22)
    path = tmp_path / "t.tif"
    synthetic.write_tile(tile, path)
    halves = {"Tumor": [[0, 0], [200, 0], [200, 400], [0, 400], [0, 0]],
              "Stroma": [[200, 0], [400, 0], [400, 400], [200, 400], [200, 0]]}
    roi_file = tmp_path / "t.roi.geojson"
    roi_file.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
         "properties": {"objectType": "annotation", "classification": {"name": name}}} for name, ring in halves.items()]}))
    _, every, _, _ = pipeline.score_slide(path, slide_id="S", roi_path=str(roi_file), config=CONFIG)
    _, tumour, _, _ = pipeline.score_slide(path, slide_id="S", roi_path=str(roi_file),
                                           config=config.merge(CONFIG, {"roi_classes": ["Tumor"]}))
    assert every["in_roi"].all()
    inside = tumour["in_roi"].to_numpy()
    assert inside.any() and not inside.all() and (tumour.loc[inside, "x"] < 201).all()
    assert (tumour.loc[~inside, "x"] > 199).all()
    _, problems = pipeline.validate_slide(path, roi_path=roi_file, roi_classes=["Tumour"])
    assert len(problems) == 1 and "no annotation polygon classified Tumour" in problems[0]


@pytest.mark.parametrize("tiles_per_chunk", [1, 4])
@pytest.mark.parametrize("mpp", [0.5, 0.3])
def test_tiles_with_halo_give_the_whole_image_result(tmp_path, monkeypatch, mpp, tiles_per_chunk):
    """DESIGN 6: totals over tiles = whole image; each cell once, measured as on the whole image;
    the same whether each chunk (one measure_chunk job) holds one tile or several.

    At 0.3 um/px every tile is area-averaged by a non-integer factor (0.6 grid px per level px).
    """
    tile = synthetic.generate_tile(synthetic.TileSpec(size_um=(350.0, 350.0), mpp=mpp, positive_fraction=0.5),
                                   seed=24)
    path = tmp_path / "t.tif"
    synthetic.write_tile(tile, path)
    _, whole, whole_blocks, whole_summary = pipeline.score_slide(path, slide_id="W", config=CONFIG)
    # Tiles of 256^2 px; a chunk of 4 of them is 0.25 Mpix.
    monkeypatch.setattr(tiling, "TILE_MPIX", 0.0625)
    info, tiled, tiled_blocks, tiled_summary = pipeline.score_slide(
        path, slide_id="W", config={**CONFIG, "chunk_mpix": 0.0625 * tiles_per_chunk})
    assert len(info.tile_boxes) == 9
    assert [len(tiles) for tiles in info.chunk_tiles] == ([1] * 9 if tiles_per_chunk == 1 else [4, 4, 1])
    # the same cells, ids and order, every value bit for bit (DESIGN 6: integer sums)
    pd.testing.assert_frame_equal(whole, tiled, check_exact=True)
    assert tiled["cell_id"].tolist() == list(range(1, len(tiled) + 1))
    assert whole_blocks.groupby(["variant", "measure"])[["n0", "n1", "n2", "n3"]].sum().equals(
        tiled_blocks.groupby(["variant", "measure"])[["n0", "n1", "n2", "n3"]].sum())
    assert whole_summary["pixel_hist"] == tiled_summary["pixel_hist"]


def test_located_membrane_recovers_blurred_membrane_stain(tmp_path):
    """Reference: the generator's per-cell membrane DAB (rendered before blur and JPEG).

    A 1 um membrane line loses OD from the band to blur and JPEG 4:2:0; reading it on its
    DAB ridge brings positive membrane-only cells closer to their truth than the band mean
    alone, and keeps negative cells negative unless stained neighbours outline them: a line
    between two cells is one line at this scale, and a cell with more than two stained
    neighbours (of about five) has a line on more than ``measure.MIN_LINE_SECTORS`` of its
    sectors, as it looks by eye (on this tile about half of those read >= 0.2; of the others
    2%).
    """
    spec = synthetic.TileSpec(size_um=(384.0, 384.0), positive_fraction=0.5, pattern_weights=(1.0, 0.0, 0.0))
    tile = synthetic.generate_tile(spec, seed=11)
    path = synthetic.write_tile(tile, tmp_path / "membrane.tif", jpeg_quality=80)
    _, cells, _, _ = pipeline.score_slide(path, slide_id="m", config=config.default_config())
    truth_idx, cell_idx = bench._match(cells, tile.truth, tile.mpp)
    truth = tile.truth.iloc[truth_idx].reset_index(drop=True)
    ours = cells.iloc[cell_idx].reset_index(drop=True)
    tumour = truth["cell_type"] == "tumour"
    positive, negative = tumour & (truth["pattern"] == "membrane"), tumour & (truth["pattern"] == "negative")
    line = np.median(ours["dab_membrane"][positive] / truth["dab_membrane"][positive])
    band = np.median(ours["dab_membrane_band"][positive] / truth["dab_membrane"][positive])
    assert line >= 0.7 and line > band + 0.1, (line, band)
    # Stained neighbours of each truth cell: within 1.6 median nearest-neighbour distances.
    xy = tile.truth[["x_um", "y_um"]].to_numpy()
    stained = ((tile.truth["cell_type"] == "tumour") & (tile.truth["pattern"] == "membrane")).to_numpy()
    tree = cKDTree(xy)
    spacing = np.median(tree.query(xy, k=2)[0][:, 1])
    stained_neighbours = np.array([stained[near].sum() - stained[i]
                                   for i, near in enumerate(tree.query_ball_point(xy, r=1.6 * spacing))])
    few = stained_neighbours[truth_idx] <= 2
    reads_positive = ours["dab_membrane"] >= 0.2
    assert (negative & few).sum() >= 50
    assert reads_positive[negative & few].mean() < 0.05


@pytest.mark.parametrize("lymphocytes_stained", [False, True])
def test_internal_control_fires_when_the_stain_is_off(tmp_path, lymphocytes_stained):
    """A generated tumour-negative patient: with the stain switched off (no DAB anywhere) its
    not_eligible call says the stain may have failed; with CXCR4-positive lymphocytes it does not."""
    spec = synthetic.TileSpec(size_um=(1024.0, 1024.0), nest_fraction=0.75, positive_fraction=0.0,
                              lymphocyte_positive_fraction=0.5 if lymphocytes_stained else 0.0)
    path = synthetic.write_tile(synthetic.generate_tile(spec, seed=23), tmp_path / "off.tif", jpeg_quality=90)
    cfg = config.default_config()
    _, _, blocks, summary = pipeline.score_slide(path, slide_id="S", patient_id="P", config=cfg)
    assert summary["n_immune_cells"] >= cfg["internal_control"]["min_immune_cells"]
    calls = eligibility.patient_eligibility(pd.DataFrame([summary]).assign(collected=""), blocks, cfg, version="x")
    # Stained lymphocytes near the typing limits can make the call rest on the typing: then the
    # stability re-evaluation makes it indeterminate, never eligible.
    assert "nominal call not_eligible" in calls["reason"].item() or calls["call"].item() == "not_eligible"
    assert calls["call"].item() == "not_eligible" if not lymphocytes_stained else calls["call"].item() != "eligible"
    assert ("internal control negative" in calls["review_reasons"].item()) is not lymphocytes_stained


@pytest.fixture(scope="module")
def nine_tiles(tmp_path_factory):
    """A generated image cut into 9 tiles in chunks of 4, 4 and 1: its info and measured chunks."""
    tile = synthetic.generate_tile(synthetic.TileSpec(size_um=(350.0, 350.0), positive_fraction=0.5), seed=24)
    path = tmp_path_factory.mktemp("nine") / "t.tif"
    synthetic.write_tile(tile, path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tiling, "TILE_MPIX", 0.0625)
        settings = {**CONFIG, "chunk_mpix": 0.25}
        info, cells, blocks, summary = pipeline.score_slide(path, slide_id="N", config=settings)
    chunks = [pipeline.measure_chunk(info, chunk, config=settings) for chunk in info.chunks]
    assert [len(tiles) for tiles in info.chunk_tiles] == [4, 4, 1]
    return info, chunks, (cells, blocks, summary)


def test_merge_by_parts_equals_the_merge_in_memory(nine_tiles, tmp_path, monkeypatch):
    """A slide merged from its sorted chunks part by part and written in parts of PART_ROWS
    cells (as the workflow merges a slide of millions of cells) gives the table, block counts
    and summary of the merge of all its cells at once (score_slide), bit for bit."""
    info, chunks, (cells, blocks, summary) = nine_tiles
    monkeypatch.setattr(pipeline, "PART_ROWS", 37)
    parts = []
    part_blocks, part_summary = pipeline.merge_slide_parts(info, [reading_order.SortedFrame(c) for c, _ in chunks],
                                                           (h for _, h in chunks), config=CONFIG,
                                                           write_cells=parts.append)
    assert len(parts) > len(info.tile_boxes) and {len(p) for p in parts[:-1]} == {37} and len(parts[-1]) <= 37
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), cells, check_exact=True)
    pd.testing.assert_frame_equal(part_blocks, blocks, check_exact=True)
    assert json.dumps(part_summary) == json.dumps(summary)


def test_merge_files_writes_what_the_merge_in_memory_gives(nine_tiles, tmp_path):
    """The merge_slide job's files (stages.merge_files, chunk tables read from disk part by
    part) hold the in-memory merge's cells, block counts and summary."""
    from cxcr4score import stages

    info, chunks, (cells, blocks, summary) = nine_tiles
    tables, hists = [], []
    for k, (table, hist) in enumerate(chunks):
        tables.append(tmp_path / f"{k}.parquet")
        hists.append(tmp_path / f"{k}.hist.npy")
        stages.write_measurements(table, hist, table_path=tables[-1], hist_path=hists[-1])
    out = {name: tmp_path / "out" / name for name in ("cells.parquet", "blocks.parquet", "summary.json")}
    _, n_cells = stages.merge_files(info, tables, hists, config=CONFIG, on_bad_slide="stop",
                                    cells_path=out["cells.parquet"], blocks_path=out["blocks.parquet"],
                                    summary_path=out["summary.json"])
    assert n_cells == len(cells)
    pd.testing.assert_frame_equal(pd.read_parquet(out["cells.parquet"]), cells, check_exact=True)
    pd.testing.assert_frame_equal(pd.read_parquet(out["blocks.parquet"]), blocks.reset_index(drop=True), check_exact=True)
    assert json.loads(out["summary.json"].read_text())["pixel_hist"] == summary["pixel_hist"]


def test_merge_without_a_slide_reference_types_by_all_the_slides_nuclei(nine_tiles, monkeypatch):
    """A slide whose sampled tiles held no nucleus (typing_reference None) types its cells by
    the darkness reference of all its nuclei, whether merged at once or by parts."""
    import dataclasses

    from cxcr4score import celltype

    info, chunks, _ = nine_tiles
    info = dataclasses.replace(info, typing_reference=None)
    every = pd.concat([c for c, _ in chunks], ignore_index=True)
    reference = celltype.darkness_reference(every["nucleus_area_um2"], every["hematoxylin_nucleus"],
                                            every["neighbour_nucleus_area_um2"])
    monkeypatch.setattr(pipeline, "PART_ROWS", 37)
    parts = []
    pipeline.merge_slide_parts(info, [reading_order.SortedFrame(c) for c, _ in chunks], [h for _, h in chunks],
                               config=CONFIG, write_cells=parts.append)
    merged = pd.concat(parts, ignore_index=True)
    expected = celltype.classify_cell_types(reading_order.sort_cells(every), reference=reference)
    assert merged["cell_type"].tolist() == list(expected)


def test_qc_picture_from_outlines_read_in_parts(nine_tiles):
    """The QC picture drawn from every cell's position and class, with the outlines read part
    by part (as qc_slide reads a large slide's table), is the picture of the whole table."""
    info, _, (cells, _, summary) = nine_tiles
    whole = pipeline.qc_slide(info, summary, cells, config=CONFIG)
    outlines = cells[list(pipeline.OUTLINE_COLUMNS)]
    parts = [outlines.iloc[k:k + 50] for k in range(0, len(cells), 50)]
    light = cells[["x", "y", "scored", "class"]]
    np.testing.assert_array_equal(pipeline.qc_slide(info, summary, light, config=CONFIG, outline_parts=iter(parts)),
                                  whole)
    with pytest.raises(KeyError):  # without outline_parts the table must hold the outlines
        pipeline.qc_slide(info, summary, light, config=CONFIG)


def test_qc_picture_is_titled_with_the_slides_verdict(nine_tiles, monkeypatch):
    """The title says what slides.csv says after measurement (QC metrics, a chunk that could not
    be read), not the verdict of slide_info before it; a slide failed at the merge gets the
    failed picture."""
    info, _, (cells, _, summary) = nine_tiles
    assert info.qc_status == "ok"
    titles, draw = [], qc.qc_picture
    monkeypatch.setattr(qc, "qc_picture", lambda *a, **k: titles.append(k["title"]) or draw(*a, **k))
    drawn = pipeline.qc_slide(info, {**summary, "qc_status": "warning", "qc_message": "12 tumour cells (warning < 100)"},
                              cells, config=CONFIG)
    assert titles[-1] == "N  QC warning: 12 tumour cells (warning < 100)"
    failed = pipeline.qc_slide(info, {**summary, "qc_status": "failed", "qc_message": "cannot be read where chunk 1: x"},
                               cells, config=CONFIG)
    assert titles[-1] == "N  QC failed: cannot be read where chunk 1: x"
    assert failed.shape[0] < drawn.shape[0]  # the blank picture: no overview, no crop


@pytest.mark.parametrize("version", ["0.8.0", "0.9.0"])
def test_slide_info_of_another_version_stops_the_job_with_what_to_do(nine_tiles, tmp_path, monkeypatch, capsys,
                                                                      version):
    """An info.json of an earlier version (0.8.0 lacks segmentation_sample, 0.9.0's sample lacks
    membrane_line_sectors) stops a workflow job with the file and what to run, not a traceback
    from SlideInfo or, later, from the merge."""
    import json
    import sys
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "workflow" / "scripts"))
    import _common

    info, _, _ = nine_tiles
    old = info.to_json()
    assert old["segmentation_sample"]
    if version == "0.8.0":
        del old["segmentation_sample"]
    else:
        for sample in old["segmentation_sample"].values():
            del sample["membrane_line_sectors"]
    path = tmp_path / "info.json"
    path.write_text(json.dumps(old))
    with pytest.raises(SystemExit):
        _common.read_slide_info(path)
    err = capsys.readouterr().err
    missing = "segmentation_sample" if version == "0.8.0" else "membrane_line_sectors"
    assert str(path) in err and missing in err and "--forcerun slide_info" in err
    assert _common.read_slide_info(_write(tmp_path / "now.json", info.to_json())) == info
    del sys.modules["_common"]


def _write(path, data):
    import json

    path.write_text(json.dumps(data))
    return path


def test_halo_holds_the_neighbours_that_type_a_cell(monkeypatch):
    """Beyond a nucleus's own reach the halo holds the farther of its cell (expansion and band)
    and the neighbours within celltype.NEIGHBOUR_RADIUS_UM, whose outlines must be whole too:
    the whole-image test above passes down to a halo of about 35 um, so the formula is pinned."""
    from cxcr4score import tiling

    base = tiling.halo_um(CONFIG)
    monkeypatch.setattr(tiling, "NEIGHBOUR_RADIUS_UM", tiling.NEIGHBOUR_RADIUS_UM + 20.0)
    assert tiling.halo_um(CONFIG) == pytest.approx(base + 20.0)
    monkeypatch.setattr(tiling, "NEIGHBOUR_RADIUS_UM", 0.0)
    cell_reach = CONFIG["cell_expansion_um"] + max(CONFIG["membrane_band_um"], CONFIG["membrane_capture_um"])
    assert tiling.halo_um(CONFIG) == pytest.approx(base - 25.0 + cell_reach)


@pytest.mark.parametrize("damage", ["truncated", "unsorted", "0.8.0"])
def test_damaged_measurements_stop_the_merge_naming_the_file(nine_tiles, tmp_path, damage):
    """A chunk table cut short, not in reading order (written by 0.7.0, or damaged) or without a
    column of this version (0.8.0) is a one-line InputError naming the file and how to measure
    again, not a pyarrow traceback or a KeyError."""
    from cxcr4score import stages
    from cxcr4score.errors import InputError

    info, chunks, _ = nine_tiles
    tables, hists = [], []
    for k, (table, hist) in enumerate(chunks):
        tables.append(tmp_path / f"{k}.parquet")
        hists.append(tmp_path / f"{k}.hist.npy")
        stages.write_measurements(table, hist, table_path=tables[-1], hist_path=hists[-1])
    if damage == "truncated":
        tables[1].write_bytes(tables[1].read_bytes()[:500])
    elif damage == "0.8.0":  # before cells were typed by their neighbours
        stages.write_measurements(chunks[1][0].drop(columns="neighbour_nucleus_area_um2"), chunks[1][1],
                                  table_path=tables[1], hist_path=hists[1])
    else:
        stages.write_measurements(chunks[1][0].iloc[::-1], chunks[1][1], table_path=tables[1], hist_path=hists[1])
    out = tmp_path / "out"
    with pytest.raises(InputError, match=f"{tables[1]}.*(cannot read|not in reading order|lack neighbour_nucleus_area_um2)"
                                         ".*forcerun measure_chunk"):
        stages.merge_files(info, tables, hists, config=CONFIG, on_bad_slide="skip", cells_path=out / "c.parquet",
                           blocks_path=out / "b.parquet", summary_path=out / "s.json")
    assert not out.exists() or not any(out.iterdir())
