"""Tests of ``cxcr4score bench real``: the one-to-one matching against a brute-force optimum,
the point metrics on hand-worked cases, the point readers, and the command on a generated
tile whose truth nuclei serve as a pathologist's points."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linear_sum_assignment

from cxcr4score import cli, roi, synthetic
from cxcr4score.bench import real
from cxcr4score.errors import InputError


def _brute_force_matches(ours, points, radius):
    """The most pairs within ``radius`` (any one-to-one pairing), by trying every assignment."""
    ours, points = np.asarray(ours, float), np.asarray(points, float)
    best = 0
    for size in range(min(len(ours), len(points)), 0, -1):
        for chosen in itertools.permutations(range(len(ours)), size):
            for targets in itertools.combinations(range(len(points)), size):
                if all(np.hypot(*(ours[i] - points[j])) <= radius for i, j in zip(chosen, targets)):
                    return size
    return best


@pytest.mark.parametrize("seed", range(6))
def test_matching_count_is_the_brute_force_optimum(seed):
    """Reference: every one-to-one pairing tried; greedy nearest-first can fall short of it."""
    rng = np.random.default_rng(seed)
    ours, points = rng.uniform(0, 10, (5, 2)), rng.uniform(0, 10, (4, 2))
    i, j = real.match_points(ours, points, 3.0)
    assert len(set(i)) == len(i) and len(set(j)) == len(j)
    assert (np.hypot(*(ours[i] - points[j]).T) <= 3.0).all()
    assert len(i) == _brute_force_matches(ours, points, 3.0)


def test_matching_prefers_more_pairs_then_shorter_ones():
    """Hand-worked: point 0 is nearest to nucleus 0, but only nucleus 0 reaches point 1, so
    the pairing with two matches gives point 0 to nucleus 1; among equal counts, the
    shorter total distance (scipy's assignment on the same distances) wins."""
    ours = [[0.0, 0.0], [2.5, 0.0]]
    points = [[0.5, 0.0], [-2.0, 0.0]]
    i, j = real.match_points(ours, points, 3.0)
    assert sorted(zip(j.tolist(), i.tolist())) == [(0, 1), (1, 0)]
    rng = np.random.default_rng(9)
    ours, points = rng.uniform(0, 4, (6, 2)), rng.uniform(0, 4, (6, 2))
    i, j = real.match_points(ours, points, 10.0)  # everything in reach: a full assignment
    cost = np.hypot(*(ours[:, None] - points[None]).transpose(2, 0, 1))
    r, c = linear_sum_assignment(cost)
    assert np.isclose(cost[i, j].sum(), cost[r, c].sum())


def test_matching_edge_cases():
    empty = np.zeros((0, 2))
    for ours, points in ((empty, [[1.0, 1.0]]), ([[1.0, 1.0]], empty), ([[0.0, 0.0]], [[10.0, 0.0]])):
        i, j = real.match_points(ours, points, 3.0)
        assert i.size == j.size == 0
    i, j = real.match_points([[0.0, 0.0]], [[3.0, 0.0]], 3.0)  # the radius is inclusive
    assert i.tolist() == [0] and j.tolist() == [0]


def test_point_metrics_hand_worked():
    """Three tumour points (two positive), one lymphocyte point, four cells: one cell matches
    each of the first three points, one is far away."""
    cells = pd.DataFrame({"x": [10.0, 50.0, 90.0, 500.0], "y": [10.0, 10.0, 10.0, 500.0],
                          "class": [2, 0, 0, 1], "cell_type": ["tumour", "tumour", "stroma", "immune"],
                          "scored": [True, True, True, True]})
    points = pd.DataFrame({"x": [11.0, 51.0, 91.0, 300.0], "y": [10.0, 10.0, 10.0, 300.0],
                           "label": ["positive", "positive", "negative", "other"]})
    row, pairs = real.point_metrics(cells, points, mpp=0.5)
    assert row["recall"] == 1.0 and row["precision"] == 1.0  # the far cell is outside the annotated area
    assert row["n_cells_annotated"] == 3
    assert row["truth_pct_positive"] == pytest.approx(200 / 3)
    assert row["agreement"] == pytest.approx(2 / 3)  # the second positive point's cell is class 0
    assert row["n_scored_annotated"] == 3  # the far cell lies outside the annotated area
    assert row["pct_positive_annotated"] == pytest.approx(100 / 3)
    assert row["typed_tumour"] == pytest.approx(2 / 3)  # the negative point's cell is typed stroma
    assert np.isnan(row["typed_immune"])  # the lymphocyte point has no cell within reach
    assert pairs["class"].tolist() == [2, 0, 0, -1] and pairs["matched"].tolist() == [True] * 3 + [False]
    assert pairs["cell_type"].tolist() == ["tumour", "tumour", "stroma", ""]


def test_csv_and_geojson_points(tmp_path):
    csv = tmp_path / "p.csv"
    pd.DataFrame({"slide_id": ["A", "A", "B"], "x": [1, 2, 3], "y": [4, 5, 6],
                  "label": ["Positive", "lymphocyte", "negative"]}).to_csv(csv, index=False)
    table = real.read_point_table(csv, {"A", "B"})
    assert table["label"].tolist() == ["positive", "other", "negative"]
    folder = tmp_path / "points"
    folder.mkdir()
    features = [
        {"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": [[10.5, 20.0], [30.0, 40.0]]},
         "properties": {"objectType": "annotation", "classification": {"name": "Positive", "color": [200, 0, 0]}}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5.0, 6.0]},
         "properties": {"objectType": "annotation", "classification": "Negative"}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
         "properties": {"objectType": "annotation"}},
    ]
    (folder / "A.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    table = real.read_point_table(folder, {"A", "B"})
    assert table.to_dict("list") == {"slide_id": ["A", "A", "A"], "x": [10.5, 30.0, 5.0], "y": [20.0, 40.0, 6.0],
                                     "label": ["positive", "positive", "negative"]}


@pytest.mark.parametrize(("body", "words"), [
    ("slide_id,x,y\nA,1,2\n", "missing column"),
    ("slide_id,x,y,label\nA,one,2,positive\n", "row 1: x 'one' is not a number"),
    ("slide_id,x,y,label\nZ,1,2,positive\n", "none of its slide_ids"),
])
def test_bad_point_files_are_named(tmp_path, body, words):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(InputError, match=words) as caught:
        real.read_point_table(path, {"A"})
    assert "bad.csv" in str(caught.value)


def test_bench_real_on_a_generated_tile(tmp_path, capsys):
    """Reference: the generator's truth nuclei as points (positive: a class of 1+ or more;
    lymphocytes as "other"): nearly all are found, positive / negative agree on most matched
    nuclei, and most are typed as the generator drew them."""
    tile = synthetic.generate_tile(synthetic.TileSpec(size_um=(200.0, 200.0)), seed=4)
    synthetic.write_tile(tile, tmp_path / "t.tif")
    truth = tile.truth[tile.truth["cell_type"].isin(["tumour", "immune"])]
    label = np.where(truth["cell_type"] == "immune", "lymphocyte", np.where(truth["class"] >= 1, "positive", "negative"))
    pd.DataFrame({"slide_id": "t", "x": truth["x"], "y": truth["y"], "label": label}).to_csv(tmp_path / "p.csv", index=False)
    pd.DataFrame({"patient_id": ["P"], "slide_id": ["t"], "path": ["t.tif"], "ihc_score": ["2"]}).to_csv(
        tmp_path / "s.tsv", sep="\t", index=False)
    out = tmp_path / "bench.json"
    assert cli.main(["bench", "real", "--slides", str(tmp_path / "s.tsv"), "--points", str(tmp_path / "p.csv"),
                     "--out", str(tmp_path / "qc"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["points"]["recall"] > 0.9 and result["points"]["agreement"] > 0.8
    assert result["points"]["other_points_matched"] > 10
    assert result["points"]["typed_tumour"] > 0.85 and result["points"]["typed_immune"] > 0.85
    assert result["cores"]["cores"] == 1 and result["slides"][0]["ihc_score"] == 2
    assert (tmp_path / "qc" / "t.png").is_file() and (tmp_path / "qc" / "t.points.csv").is_file()
    assert "points: fields 1" in capsys.readouterr().out


def test_three_dimensional_points_keep_x_and_y(tmp_path):
    """Review finding: [x, y, z] positions were reshaped into scrambled pairs."""
    path = tmp_path / "p.geojson"
    path.write_text(json.dumps({"type": "Feature", "properties": {"classification": {"name": "Positive"}},
                                "geometry": {"type": "MultiPoint", "coordinates": [[1, 2, 0], [3, 4, 0]]}}))
    assert roi.read_points(path)[["x", "y"]].to_numpy().tolist() == [[1.0, 2.0], [3.0, 4.0]]
    path.write_text(json.dumps({"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": [1, 2]}}))
    with pytest.raises(InputError, match="feature 1 has malformed coordinates"):
        roi.read_points(path)


def test_bad_scores_and_unshared_slides_are_named(tmp_path):
    """An ihc_score other than 0-3 stops before any scoring, naming the row; points of a slide
    not in the sheet, and sheet slides without points, are listed in the result's notes."""
    pd.DataFrame({"patient_id": ["P"], "slide_id": ["t"], "path": ["t.png"], "ihc_score": ["2+"]}).to_csv(
        tmp_path / "s.tsv", sep="\t", index=False)
    (tmp_path / "t.png").write_bytes(b"")
    with pytest.raises(InputError, match="s.tsv row 1: ihc_score '2\\+' is not 0, 1, 2 or 3"):
        real.run(tmp_path / "s.tsv", config={})
    truth = pd.DataFrame({"slide_id": ["t", "typo"], "x": [1.0, 2.0], "y": [1.0, 2.0], "label": ["positive"] * 2})
    assert real._point_notes(truth, ["t", "u"]) == [
        "points of slides not in the sheet, left out: typo", "slides without points (scored, not compared): u"]


def test_bench_real_needs_slides(capsys):
    assert cli.main(["bench", "real"]) == 2
    assert "--slides" in capsys.readouterr().err
