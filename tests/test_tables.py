"""Tests of cxcr4score.tables: atomic CSV and Parquet writing."""

import pandas as pd
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
