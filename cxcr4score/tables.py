"""Output files written atomically (a temporary name, then a rename): a reader, or a run
resumed after a kill, never sees a half-written file."""

from __future__ import annotations

import contextlib
import gc
import gzip
import itertools
import json
import os
import shutil
import tempfile
from pathlib import Path

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml


def _current_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def write_table(df: pd.DataFrame, path: str | os.PathLike, *, part_rows: int | None = None) -> None:
    """Write a table atomically as CSV or Parquet, chosen by the file suffix.

    Parameters
    ----------
    df : DataFrame
        Written without its index.
    path : str or path-like
        Ends in ``.csv`` or ``.parquet``; parent folders are created.
    part_rows : int, optional
        Parquet: rows per row group, so that :func:`read_parts` holds no more than that many
        decoded at a time (pyarrow decodes a whole row group to give a part of it).

    Raises
    ------
    ValueError
        For any other suffix.

    Notes
    -----
    The table goes to a hidden temporary file in the same folder, which then replaces
    ``path`` with ``os.replace``; readers never see a half-written file, and a failed write
    leaves no temporary file behind.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"table path must end in .csv or .parquet, got {str(path)!r}")
    if suffix == ".csv":
        _write_atomic(path, lambda temp: df.to_csv(temp, index=False))
    else:
        _write_atomic(path, lambda temp: df.to_parquet(temp, index=False, engine="pyarrow", row_group_size=part_rows))


#: Rows per part of a cells table as it is written and read (:func:`read_parts`): about 25 MB
#: of it in memory with its outlines, and several times that as GeoJSON features.
PART_ROWS = 10_000


@contextlib.contextmanager
def parquet_parts(path: str | os.PathLike):
    """Write a Parquet table part by part, atomically, so that the whole table is never in memory.

    Parameters
    ----------
    path : str or path-like
        Where the table goes; parent folders are created.

    Yields
    ------
    callable
        ``write(df)``, which appends a DataFrame as the next row group; every part has the
        first part's columns, and its types are cast to the first part's (a later part without
        rows adds nothing). The file appears at ``path`` when the block ends (at least one
        part written), and not at all if it raises.

    Raises
    ------
    ValueError
        If no part was written (a table needs its columns, which only a part gives).
    """
    path = Path(path)
    with _atomic(path) as temp:
        writer = None

        def write(df):
            nonlocal writer
            if writer is None:
                table = pa.Table.from_pandas(df, preserve_index=False)
                writer = pq.ParquetWriter(temp, table.schema)
            elif not len(df):  # nothing to add, and its empty object columns have no type to cast
                return
            else:
                table = pa.Table.from_pandas(df, schema=writer.schema, preserve_index=False)
            writer.write_table(table)

        try:
            yield write
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise ValueError(f"{path}: no part written")


def read_parts(path: str | os.PathLike, columns=None, *, rows: int = PART_ROWS):
    """Yield a Parquet table as DataFrames of at most ``rows`` rows each, in order.

    Parameters
    ----------
    path : str or path-like
    columns : list of str, optional
        Only these columns.
    rows : int
        Rows per part at most; no part spans two row groups.

    Yields
    ------
    pandas.DataFrame
        Together ``pd.read_parquet(path, columns=columns)``; one row group is in memory at a
        time. A table without rows gives one empty part, so that its columns are still seen.
    """
    file = pq.ParquetFile(path)
    if file.metadata.num_rows == 0:
        yield file.schema_arrow.empty_table().select(columns or file.schema_arrow.names).to_pandas()
        return
    # Row group by row group: ParquetFile.iter_batches kept what it had read (pyarrow 26).
    for group in range(file.num_row_groups):
        table = file.read_row_group(group, columns=columns)
        for start in range(0, table.num_rows, rows):
            yield table.slice(start, rows).to_pandas()


def table_attrs(path: str | os.PathLike) -> dict:
    """The ``attrs`` a DataFrame written with :func:`write_table` carried, read without its rows."""
    metadata = pq.read_schema(path).metadata or {}
    return json.loads(metadata.get(b"PANDAS_ATTRS", b"{}"))


def write_yaml(data, path: str | os.PathLike, *, header: str = "") -> None:
    """Write plain data (dicts, lists, numbers, strings) as YAML, keys in their order, atomically.

    ``header`` (comment lines, each starting with ``#``) goes first.
    """
    text = header + yaml.safe_dump(data, sort_keys=False, width=100)
    _write_atomic(Path(path), lambda temp: Path(temp).write_text(text))


def write_json(data, path: str | os.PathLike, *, indent: int | None = 1) -> None:
    """Write data as JSON (NaN allowed, as Python reads it back), atomically."""
    text = json.dumps(data, indent=indent, allow_nan=True)
    _write_atomic(Path(path), lambda temp: Path(temp).write_text(text))


#: gzip level of compressed GeoJSON (see :func:`write_geojson`).
GZIP_LEVEL = 1


def write_geojson(features, path: str | os.PathLike, *, members: dict | None = None) -> int:
    """Write a GeoJSON FeatureCollection feature by feature, atomically; gzip for ``.gz``.

    Parameters
    ----------
    features : iterable of dict
        GeoJSON features, serialised as they come (a generator keeps a slide of millions of
        cells out of memory).
    path : str or path-like
        Ends in ``.geojson`` (plain) or ``.geojson.gz`` (gzip, which QuPath >= 0.4 imports too).
    members : dict, optional
        Further top-level members, written after ``features``.

    Returns
    -------
    int
        The number of features written.

    Raises
    ------
    ValueError
        For another suffix.

    Notes
    -----
    The bytes, uncompressed, are those of ``orjson.dumps({"type": "FeatureCollection",
    "features": [...], **members}, option=orjson.OPT_SERIALIZE_NUMPY)``: compact JSON (a third
    smaller than ``json.dumps``'s, and several times faster to write), numpy arrays as nested
    lists, floats in their shortest round-trip form. gzip level 1: level
    6 took as long as everything else for 20% less; the header holds no file name and time 0,
    so the same features give the same file byte for byte.
    """
    path = Path(path)
    name = path.name.lower()
    if not name.endswith((".geojson", ".geojson.gz")):
        raise ValueError(f"GeoJSON path must end in .geojson or .geojson.gz, got {str(path)!r}")
    tail = b"".join(b"," + orjson.dumps(k) + b":" + orjson.dumps(v) for k, v in (members or {}).items())
    count = 0

    def write(temp):
        nonlocal count
        # The features are acyclic lists and dicts, hundreds of thousands a batch: without the
        # pause the cyclic collector rescans them again and again (about a third of the time).
        with _collector_paused(), open(temp, "wb") as raw:
            stream = raw
            if name.endswith(".gz"):
                stream = gzip.GzipFile(filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=raw, mtime=0)
            stream.write(b'{"type":"FeatureCollection","features":[')
            iterator = iter(features)
            while batch := list(itertools.islice(iterator, 1000)):
                text = b",".join(orjson.dumps(f, option=orjson.OPT_SERIALIZE_NUMPY) for f in batch)
                stream.write((b"," if count else b"") + text)
                count += len(batch)
            stream.write(b"]" + tail + b"}")
            if stream is not raw:
                stream.close()  # writes the gzip trailer; closing it leaves raw open

    _write_atomic(path, write)
    return count


@contextlib.contextmanager
def _collector_paused():
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def write_gunzipped(source: str | os.PathLike, path: str | os.PathLike) -> None:
    """Write the content of the gzip file ``source`` to ``path``, atomically, a block at a time."""
    def write(temp):
        with gzip.open(source, "rb") as packed, open(temp, "wb") as plain:
            shutil.copyfileobj(packed, plain, 1 << 20)
    _write_atomic(Path(path), write)


def write_text(text: str, path: str | os.PathLike) -> None:
    """Write text (UTF-8), atomically."""
    _write_atomic(Path(path), lambda temp: Path(temp).write_text(text, encoding="utf-8"))


def write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write bytes (an encoded picture, a saved array), atomically."""
    _write_atomic(Path(path), lambda temp: Path(temp).write_bytes(data))


def _write_atomic(path, write):
    """Call ``write(temp)`` on a hidden temporary file beside ``path``, then rename it to ``path``."""
    with _atomic(path) as temp:
        write(temp)


@contextlib.contextmanager
def _atomic(path):
    """A hidden temporary file beside ``path`` to write; renamed to ``path`` when the block ends
    without an error, removed when it raises."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield temp
        # mkstemp makes the file private (0600); give it the permissions of any new file here,
        # so that a results folder on a shared drive stays readable.
        os.chmod(temp, 0o666 & ~_UMASK)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
