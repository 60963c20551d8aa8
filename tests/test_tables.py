"""Tests of cxcr4score.tables: atomic CSV and Parquet writing."""

from pathlib import Path

import pandas as pd
import numpy as np
import pytest

from cxcr4score import tables


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_write_table_round_trip_atomic(tmp_path, suffix):
    table = pd.DataFrame({"patient_id": ["007", "010"], "n": [1, 2]})
    path = tmp_path / "deep" / "er" / f"t{suffix}"
    tables.write_table(table, path)
    tables.write_table(table, path)  # overwrite
    if suffix == ".csv":
        back = pd.read_csv(path, dtype={"patient_id": str})
    else:
        back = pd.read_parquet(path)
    assert back["patient_id"].tolist() == ["007", "010"] and back["n"].tolist() == [1, 2]
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_write_table_failure_leaves_old_file_and_no_temp(tmp_path):
    path = tmp_path / "t.parquet"
    tables.write_table(pd.DataFrame({"a": [1]}), path)
    with pytest.raises(Exception):  # pyarrow cannot store Python objects of mixed types
        tables.write_table(pd.DataFrame({"a": [object(), 1]}), path)
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]
    assert pd.read_parquet(path)["a"].tolist() == [1]


def test_write_table_rejects_other_suffixes(tmp_path):
    with pytest.raises(ValueError, match="csv or .parquet"):
        tables.write_table(pd.DataFrame(), tmp_path / "t.xlsx")


def test_json_text_and_bytes_are_written_atomically(tmp_path, monkeypatch):
    """A write that fails half-way leaves the earlier file as it was and no temporary file."""
    import json

    from cxcr4score import tables

    path = tmp_path / "out" / "summary.json"
    tables.write_json({"a": float("nan"), "b": [1, 2]}, path)
    assert json.loads(path.read_text())["b"] == [1, 2]
    tables.write_text("text", tmp_path / "out" / "r.html")
    tables.write_bytes(b"\x89PNG", tmp_path / "out" / "p.png")
    assert (tmp_path / "out" / "p.png").read_bytes() == b"\x89PNG"

    def broken(self, text, *args, **kwargs):
        Path.write_bytes(self, text[:3].encode())
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", broken)
    with pytest.raises(OSError, match="disk full"):
        tables.write_json({"replaced": True}, path)
    assert json.loads(path.read_bytes())["b"] == [1, 2]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p.png", "r.html", "summary.json"]


def test_outputs_are_readable_by_others_as_any_new_file(tmp_path):
    """mkstemp makes a private file; the output takes the permissions a new file gets (umask)."""
    import stat

    tables.write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.csv")
    tables.write_json({"a": 1}, tmp_path / "s.json")
    assert tables._UMASK == tables._current_umask()
    for name in ("t.csv", "s.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~tables._UMASK


@pytest.mark.parametrize("suffix", [".geojson", ".geojson.gz"])
def test_write_geojson_streams_the_bytes_orjson_gives(tmp_path, suffix):
    """Reference: orjson.dumps of the whole FeatureCollection (numpy rings as lists, the values
    json reads back). More features than one batch (1000), from a generator; gzip with a fixed
    header, so a rerun is byte-identical; no temporary file."""
    import gzip
    import json

    import orjson

    features = [{"type": "Feature", "id": str(i),
                 "geometry": {"type": "Polygon", "coordinates": [np.array([[i, 0.5], [i + 1.25, 0.5], [i, 2.0], [i, 0.5]])]},
                 "properties": {"name": "é"}} for i in range(2500)]
    members = {"note": {"n": 2500}}
    path = tmp_path / f"cells{suffix}"
    assert tables.write_geojson((f for f in features), path, members=members) == 2500
    first = path.read_bytes()
    body = gzip.decompress(first) if suffix.endswith(".gz") else first
    expected = {"type": "FeatureCollection", "features": features, **members}
    assert body == orjson.dumps(expected, option=orjson.OPT_SERIALIZE_NUMPY)
    assert json.loads(body)["features"][3]["geometry"]["coordinates"] == [[[3, 0.5], [4.25, 0.5], [3, 2], [3, 0.5]]]
    tables.write_geojson(iter(features), path, members=members)
    assert path.read_bytes() == first
    if suffix.endswith(".gz"):  # RFC 1952 header: no FNAME flag, MTIME 0
        assert first[3] == 0 and first[4:8] == b"\0\0\0\0"
    tables.write_geojson([], path)
    assert json.loads(gzip.decompress(path.read_bytes()) if suffix.endswith(".gz") else path.read_bytes()) == {
        "type": "FeatureCollection", "features": []}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    with pytest.raises(ValueError, match="geojson.gz"):
        tables.write_geojson([], tmp_path / "cells.json.zip")


def _cells(n, start=0):
    """A table like a cells table: numbers, strings and per-row float32 outline arrays."""
    return pd.DataFrame({"cell_id": np.arange(start, start + n), "x": np.linspace(0, 1, n),
                         "cell_type": ["tumour", "stroma"] * (n // 2) + ["immune"] * (n % 2),
                         "cell_outline": [np.arange(k % 5 + 3, dtype=np.float32) for k in range(n)]})


def test_parquet_parts_read_back_as_one_table(tmp_path):
    """Parts written one after another read back as their concatenation (pd.read_parquet), and
    read_parts gives the same rows in parts of at most ``rows``."""
    path = tmp_path / "c.parquet"
    parts = [_cells(5), _cells(0, 5), _cells(8, 5)]
    with tables.parquet_parts(path) as write:
        for part in parts:
            write(part)
    expected = pd.concat([parts[0], parts[2]], ignore_index=True)  # a part without rows adds nothing
    pd.testing.assert_frame_equal(pd.read_parquet(path), expected)
    read = list(tables.read_parts(path, rows=4))
    assert sum(map(len, read)) == 13 and max(map(len, read)) <= 4
    pd.testing.assert_frame_equal(pd.concat(read, ignore_index=True), expected)
    x = pd.concat(tables.read_parts(path, columns=["x"], rows=100), ignore_index=True)
    assert list(x.columns) == ["x"] and x["x"].tolist() == expected["x"].tolist()
    assert [p.name for p in tmp_path.iterdir()] == ["c.parquet"]


def test_parquet_parts_of_no_rows_keep_their_columns(tmp_path):
    path = tmp_path / "c.parquet"
    with tables.parquet_parts(path) as write:
        write(_cells(0))
    (part,) = tables.read_parts(path)
    assert len(part) == 0 and list(part.columns) == ["cell_id", "x", "cell_type", "cell_outline"]


def test_parquet_parts_failure_leaves_old_file_and_no_temp(tmp_path):
    """A writer that raises midway leaves the old table as it was; writing nothing is an error."""
    path = tmp_path / "c.parquet"
    tables.write_table(_cells(3), path)
    with pytest.raises(RuntimeError):
        with tables.parquet_parts(path) as write:
            write(_cells(4))
            raise RuntimeError("killed")
    with pytest.raises(ValueError, match="no part written"):
        with tables.parquet_parts(path):
            pass
    pd.testing.assert_frame_equal(pd.read_parquet(path), _cells(3))
    assert [p.name for p in tmp_path.iterdir()] == ["c.parquet"]


def test_table_attrs_read_without_rows(tmp_path):
    path = tmp_path / "t.parquet"
    table = _cells(3)
    table.attrs = {"cxcr4score_chunk_error": "chunk 2: cannot decode"}
    tables.write_table(table, path)
    assert tables.table_attrs(path) == table.attrs
    tables.write_table(_cells(3), path)
    assert tables.table_attrs(path) == {}


def test_write_gunzipped(tmp_path):
    import gzip

    data = bytes(range(256)) * 5000
    (tmp_path / "a.gz").write_bytes(gzip.compress(data))
    tables.write_gunzipped(tmp_path / "a.gz", tmp_path / "a")
    assert (tmp_path / "a").read_bytes() == data
