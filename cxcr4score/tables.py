"""Tables written atomically: readers never see a half-written file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a table atomically as CSV or Parquet, chosen by the file suffix.

    Parameters
    ----------
    df : DataFrame
        Written without its index.
    path : str or path-like
        Ends in ``.csv`` or ``.parquet``; parent folders are created.

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
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        if suffix == ".csv":
            df.to_csv(temp, index=False)
        else:
            df.to_parquet(temp, index=False, engine="pyarrow")
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
