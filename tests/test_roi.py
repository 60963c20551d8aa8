"""Tests for cxcr4score.roi: QuPath GeoJSON in, masks, cells out."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pandas as pd
import pytest
from skimage.draw import polygon as draw_polygon

from cxcr4score.errors import InputError
from cxcr4score.roi import cells_to_geojson, read_roi, roi_mask


def _square(lo, hi):
    return [[lo, lo], [hi, lo], [hi, hi], [lo, hi], [lo, lo]]


def _feature(geometry, object_type="annotation", **extra):
    properties = {"objectType": object_type} if object_type else {}
    return {"type": "Feature", "geometry": geometry, "properties": properties, **extra}


def _polygon(*rings):
    return {"type": "Polygon", "coordinates": [list(r) for r in rings]}


def _write(tmp_path, document, name="roi.geojson"):
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return path


# --------------------------------------------------------------------------- read_roi


def test_feature_collection_polygon_with_hole(tmp_path):
    document = {"type": "FeatureCollection",
                "features": [_feature(_polygon(_square(0, 20), _square(5, 15)))]}
    (polygon,) = read_roi(_write(tmp_path, document))
    exterior, hole = polygon
    assert exterior.dtype == np.float64 and exterior.shape == (4, 2)  # closing vertex dropped
    np.testing.assert_array_equal(exterior, [[0, 0], [20, 0], [20, 20], [0, 20]])
    np.testing.assert_array_equal(hole[0], [5, 5])


@pytest.mark.parametrize(
    "document",
    [
        _feature(_polygon(_square(0, 4))),  # single Feature
        [_feature(_polygon(_square(0, 4)), object_type=None)],  # bare list, no objectType
        _polygon(_square(0, 4)),  # bare geometry
    ],
)
def test_other_containers(tmp_path, document):
    (polygon,) = read_roi(_write(tmp_path, document))
    assert len(polygon) == 1 and polygon[0].shape == (4, 2)


def test_multipolygon_and_filtering(tmp_path):
    multi = {"type": "MultiPolygon",
             "coordinates": [[_square(0, 4)], [_square(10, 20), _square(12, 14)]]}
    document = {"type": "FeatureCollection", "features": [
        _feature(multi),
        _feature(_polygon(_square(0, 50)), object_type="detection"),
        _feature(_polygon(_square(0, 50)), object_type=None, id="PathCellObject"),  # QuPath 0.2
        _feature({"type": "LineString", "coordinates": [[0, 0], [5, 5]]}),
        _feature({"type": "Point", "coordinates": [1, 1]}),
        _feature(_polygon([[0, 0], [1, 1], [0, 0]])),  # degenerate
    ]}
    polygons = read_roi(_write(tmp_path, document))
    assert [len(p) for p in polygons] == [1, 2]
    assert polygons[1][0].max() == 20


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{not json", "not a readable GeoJSON"),
        (json.dumps([_feature({"type": "Point", "coordinates": [1, 1]})]), "no annotation polygons"),
        (json.dumps({"type": "FeatureCollection", "features": []}), "no annotation polygons"),
        (json.dumps(_feature({"type": "Polygon", "coordinates": [[1, 2, 3]]})), "malformed coordinates"),
        (json.dumps(_feature({"type": "Polygon", "coordinates": [[["a", "b"]] * 3]})),
         "malformed coordinates"),
    ],
)
def test_unusable_files_name_the_file(tmp_path, text, words):
    path = tmp_path / "bad.geojson"
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        read_roi(path)
    (problem,) = caught.value.problems
    assert problem.startswith(str(path)) and words in problem


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="ROI file not found"):
        read_roi(tmp_path / "none.geojson")


# --------------------------------------------------------------------------- roi_mask


def _rings(*squares):
    return [np.array(s[:-1], dtype=np.float64) for s in squares]


def test_square_covers_exactly_its_pixels():
    mask = roi_mask([_rings(_square(0, 10))], (20, 20), scale=1.0)
    assert mask.dtype == bool and mask.shape == (20, 20)
    assert mask[:10, :10].all() and mask.sum() == 100


def test_hole_is_cut_out():
    mask = roi_mask([_rings(_square(0, 20), _square(5, 15))], (30, 30), scale=1.0)
    assert not mask[5:15, 5:15].any()
    assert mask[:5, :20].all() and mask[15:20, :20].all()
    assert mask.sum() == 400 - 100


def test_holes_only_cut_their_own_polygon():
    with_hole = _rings(_square(0, 20), _square(5, 15))
    filler = _rings(_square(8, 12))
    mask = roi_mask([with_hole, filler], (30, 30), scale=1.0)
    assert mask[10, 10] and not mask[6, 6]
    assert mask.sum() == 300 + 16


def test_scale_maps_level0_to_analysis_pixels():
    mask = roi_mask([_rings(_square(2, 22))], (30, 30), scale=0.5)  # -> analysis 1..11
    assert mask[1:11, 1:11].all() and mask.sum() == 100


def test_clipping_and_outside():
    assert roi_mask([_rings(_square(-50, 500))], (30, 40), scale=0.5).all()
    assert not roi_mask([_rings(_square(100, 500))], (30, 40), scale=0.5).any()
    assert not roi_mask([], (3, 4), scale=1.0).any()


def test_matches_skimage_pixel_centre_reference():
    """Reference: skimage.draw.polygon, which tests each pixel centre."""
    rng = np.random.default_rng(1)
    for _ in range(5):
        angles = np.sort(rng.uniform(0, 2 * np.pi, 40))
        radii = rng.uniform(20, 60, 40)
        ring = np.c_[100 + radii * np.cos(angles), 90 + radii * np.sin(angles)]
        scale = rng.uniform(0.3, 1.0)
        got = roi_mask([[ring]], (200, 200), scale=scale)
        expected = np.zeros((200, 200), bool)
        rows, cols = draw_polygon(ring[:, 1] * scale - 0.5, ring[:, 0] * scale - 0.5, (200, 200))
        expected[rows, cols] = True
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(("shape", "scale"), [((0, 5), 1.0), ((5,), 1.0), ((5, 5), 0), ((5, 5), -1.0)])
def test_roi_mask_validates(shape, scale):
    with pytest.raises(ValueError):
        roi_mask([_rings(_square(0, 4))], shape, scale=scale)


def test_read_then_mask_multipolygon(tmp_path):
    multi = {"type": "MultiPolygon",
             "coordinates": [[_square(0, 4)], [_square(10, 20), _square(12, 14)]]}
    mask = roi_mask(read_roi(_write(tmp_path, _feature(multi))), (25, 25), scale=1.0)
    assert mask.sum() == 16 + 100 - 4


# --------------------------------------------------------------------------- cells_to_geojson


def test_cells_to_geojson():
    cells = pd.DataFrame({
        "cell_id": [1, 2, 3],
        "x": [10.5, 20.0, 30.0],
        "y": [1.0, 2.0, 3.0],
        "class": [0, 3, 1],
        "dab_membrane": [0.1, 0.7, np.nan],
        "dab_cytoplasm": [0.05, 0.65, 0.25],
    })
    collection = cells_to_geojson(cells)
    json.dumps(collection, allow_nan=False)  # strictly valid JSON
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == 3
    first, second, third = collection["features"]
    assert first["geometry"] == {"type": "Point", "coordinates": [10.5, 1.0]}
    assert first["properties"]["objectType"] == "detection"
    assert [f["properties"]["classification"]["name"] for f in collection["features"]] == [
        "Negative", "3+", "1+"]
    assert second["properties"]["measurements"] == {"dab_membrane": 0.7, "dab_cytoplasm": 0.65}
    assert third["properties"]["measurements"] == {"dab_cytoplasm": 0.25}


def test_cells_are_not_read_back_as_roi(tmp_path):
    cells = pd.DataFrame({"x": [1.0], "y": [2.0]})
    collection = cells_to_geojson(cells)
    assert "classification" not in collection["features"][0]["properties"]
    with pytest.raises(InputError, match="no annotation polygons"):
        read_roi(_write(tmp_path, collection))


def test_cells_to_geojson_validates():
    with pytest.raises(ValueError, match="lacks"):
        cells_to_geojson(pd.DataFrame({"x": [1.0]}))
    with pytest.raises(ValueError, match="0, 1, 2 or 3"):
        cells_to_geojson(pd.DataFrame({"x": [1.0], "y": [1.0], "class": [4]}))


def test_cells_with_outlines_are_qupath_cells():
    """The structure QuPath (>= 0.4) writes for a cell object (PathObjectTypeAdapters): id,
    geometry, nucleusGeometry beside it, properties.objectType 'cell', classification {name,
    color}, measurements {name: value}. A cell not scored is classified by its type."""
    square = np.array([0, 0, 4, 0, 4, 4, 0, 4], np.float32)
    cells = pd.DataFrame({
        "cell_id": [7, 8], "x": [2.0, 12.0], "y": [2.0, 2.0], "class": [2, 0], "scored": [True, False],
        "cell_type": ["tumour", "immune"], "dab_membrane": [0.45, 0.1], "nucleus_area_um2": [30.0, 20.0],
        "cell_outline": [square, square + 10], "nucleus_outline": [square / 2 + 1, np.zeros(0, np.float32)],
    })
    first, second = cells_to_geojson(cells, slide_id="S1")["features"]
    assert set(first) == {"type", "id", "geometry", "nucleusGeometry", "properties"}
    assert str(uuid.UUID(first["id"])) == first["id"]
    assert first["id"] == cells_to_geojson(cells, slide_id="S1")["features"][0]["id"]  # stable
    assert first["id"] != cells_to_geojson(cells, slide_id="S2")["features"][0]["id"]
    assert first["geometry"] == {"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]]]}
    assert first["nucleusGeometry"]["coordinates"] == [[[1, 1], [3, 1], [3, 3], [1, 3], [1, 1]]]
    assert first["properties"] == {"objectType": "cell", "classification": {"name": "2+", "color": [224, 142, 0]},
                                   "measurements": {"dab_membrane": 0.45, "nucleus_area_um2": 30.0}}
    assert "nucleusGeometry" not in second  # no nucleus outline: a cell all the same
    assert second["properties"]["classification"]["name"] == "Immune"
    assert second["properties"]["objectType"] == "cell"


def test_label_outlines_trace_the_labels():
    """Reference: each label's boundary pixels (a 4-neighbour of another label or background).
    Every vertex lies within 0.8 px of one of their centres; a rectangle's vertices are within
    0.8 px of its corner pixels; the polygon covers most of the label; touching labels are outlined apart;
    a one-pixel-wide label has no outline."""
    from skimage.draw import disk

    from cxcr4score.outlines import label_outlines

    labels = np.zeros((40, 50), np.int32)
    labels[disk((15, 15), 8)] = 1
    labels[5:12, 30:45] = 2
    labels[5:12, 45:49] = 5  # touches label 2
    labels[30:34, 30:31] = 3
    flat = label_outlines(labels, [1, 2, 3, 4, 5], row_offset=100, col_offset=200, scale=2.0)
    assert flat[2].size == 0 and flat[3].size == 0  # one pixel wide; absent

    def boundary(k):
        inside = np.pad(labels == k, 1)
        core = inside[1:-1, 1:-1] & inside[:-2, 1:-1] & inside[2:, 1:-1] & inside[1:-1, :-2] & inside[1:-1, 2:]
        rows, cols = np.nonzero((labels == k) & ~core)
        return np.column_stack([cols, rows]).astype(float)

    def vertices(k):
        return flat[k - 1].reshape(-1, 2) / 2.0 - [200.5, 100.5]  # back to pixel indices

    for k in (1, 2, 5):
        xy, ring = vertices(k), boundary(k)
        distance = np.hypot(*(xy[:, None, :] - ring[None, :, :]).transpose(2, 0, 1)).min(axis=1)
        assert distance.max() <= 0.8, (k, distance.max())
    corners = np.array([(30, 5), (44, 5), (44, 11), (30, 11)], float)
    assert np.abs(np.sort(vertices(2), axis=0) - np.sort(corners, axis=0)).max() <= 0.8
    x, y = vertices(1).T
    area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
    assert 0.8 < area / (labels == 1).sum() < 1.0


# --------------------------------------------------------------------------- write_cells_geojson


def _outlined_cells(n):
    """n cells in a row along x, 10 px apart: 4 px square outlines, 2 px square nuclei."""
    square = np.array([0, 0, 4, 0, 4, 4, 0, 4], np.float32)
    shifts = [np.tile(np.float32([10 * i, 0]), 4) for i in range(n)]
    return pd.DataFrame({
        "cell_id": np.arange(1, n + 1), "x": 2.0 + 10 * np.arange(n), "y": np.full(n, 2.0),
        "class": np.arange(n) % 4, "cell_type": ["tumour"] * n, "dab_membrane": np.linspace(0.1, 0.7, n),
        "cell_outline": [square + s for s in shifts], "nucleus_outline": [square / 2 + 1 + s for s in shifts],
    })


def test_write_cells_geojson_switches_to_gzip_above_the_limit(tmp_path):
    """The .gz always holds the cells (the plain writer's bytes). Up to the limit the plain file
    does too (json.dumps of cells_to_geojson); above it, a note that says where the cells are
    (never an empty result); both byte-identical on a rerun."""
    import gzip

    from cxcr4score.roi import write_cells_geojson

    cells = _outlined_cells(3)
    path, packed = tmp_path / "S1.geojson", tmp_path / "S1.geojson.gz"
    assert write_cells_geojson(cells, path, slide_id="S1", compress_above=3) == path
    plain = path.read_bytes()
    assert json.loads(plain) == cells_to_geojson(cells, slide_id="S1")
    assert gzip.decompress(packed.read_bytes()) == plain

    assert write_cells_geojson(cells, path, slide_id="S1", compress_above=2) == packed
    assert gzip.decompress(packed.read_bytes()) == plain  # round trip: the plain writer's bytes
    note = json.loads(path.read_text())
    assert note["cxcr4score"]["cells_file"] == "S1.geojson.gz" and note["cxcr4score"]["n_cells"] == 3
    assert "S1.geojson.gz" in note["cxcr4score"]["note"] and "holds only this note" in note["cxcr4score"]["note"]
    (feature,) = note["features"]
    assert feature["geometry"] == {"type": "Point", "coordinates": [12.0, 2.0]}  # the cells' centre
    assert feature["properties"] == {"objectType": "annotation", "isLocked": True,
                                     "name": "3 cells are in S1.geojson.gz: import that file"}
    assert str(uuid.UUID(feature["id"])) == feature["id"]
    with pytest.raises(InputError, match="no annotation polygons"):  # never mistaken for an ROI
        read_roi(path)
    before = path.read_bytes(), packed.read_bytes()
    write_cells_geojson(cells, path, slide_id="S1", compress_above=2)
    assert (path.read_bytes(), packed.read_bytes()) == before

    write_cells_geojson(cells, path, slide_id="S1", compress_above=100)
    assert path.read_bytes() == plain and gzip.decompress(packed.read_bytes()) == plain
    write_cells_geojson(cells, path, slide_id="S1")  # no limit: plain
    assert path.read_bytes() == plain


def test_compressed_cells_are_qupath_cells(tmp_path):
    """The .gz read back as QuPath reads it (gzip, then GeoJSON) holds the cell objects of
    test_cells_with_outlines_are_qupath_cells, one per cell, in the table's order."""
    import gzip

    from cxcr4score.roi import write_cells_geojson

    cells = _outlined_cells(5)
    packed = write_cells_geojson(cells, tmp_path / "S2.geojson", slide_id="S2", compress_above=0)
    with gzip.open(packed, "rt", encoding="utf-8") as stream:
        collection = json.load(stream)
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == 5
    for i, feature in enumerate(collection["features"]):
        assert set(feature) == {"type", "id", "geometry", "nucleusGeometry", "properties"}
        assert feature["id"] == str(uuid.uuid5(uuid.NAMESPACE_URL, f"cxcr4score:S2:{i + 1}"))
        assert feature["geometry"]["type"] == "Polygon" and feature["nucleusGeometry"]["type"] == "Polygon"
        assert feature["geometry"]["coordinates"][0][0] == [10.0 * i, 0.0]
        assert feature["properties"]["objectType"] == "cell"
        assert feature["properties"]["classification"]["name"] == ("Negative", "1+", "2+", "3+")[i % 4]
        assert feature["properties"]["measurements"] == {"dab_membrane": pytest.approx(0.1 + 0.15 * i)}


@pytest.mark.parametrize("compress_above", [None, 4])
def test_cells_written_part_by_part_give_the_same_files(tmp_path, compress_above):
    """A cells table given in parts (as a slide of millions is read) writes the same two files,
    byte for byte, as the table given whole, the note's centre included."""
    from cxcr4score.roi import write_cells_geojson

    cells = _outlined_cells(7)
    whole, split = tmp_path / "whole" / "S.geojson", tmp_path / "split" / "S.geojson"
    write_cells_geojson(cells, whole, slide_id="S", compress_above=compress_above)
    parts = iter([cells.iloc[:3], cells.iloc[3:3], cells.iloc[3:]])  # an empty part too; read once
    write_cells_geojson(parts, split, slide_id="S", compress_above=compress_above)
    for name in ("S.geojson", "S.geojson.gz"):
        assert (split.parent / name).read_bytes() == (whole.parent / name).read_bytes()
