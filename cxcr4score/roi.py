"""Regions of interest from QuPath GeoJSON, rasterised to masks; cells back out as GeoJSON.

A polygon is a list of rings, the exterior first and then its holes; each ring is a (K, 2)
float64 array of level-0 pixel ``(x, y)`` coordinates (QuPath's image coordinates: x to the
right, y down, the pixel ``(row i, column j)`` covering ``[j, j + 1) x [i, i + 1)``).
"""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from .errors import InputError
from .tables import write_geojson, write_gunzipped

__all__ = ["Polygon", "cells_to_geojson", "read_points", "read_roi", "roi_mask", "write_cells_geojson"]

Polygon = list[np.ndarray]

#: Feature ids of QuPath 0.2 exports (no ``objectType`` then) -> object type.
_LEGACY_OBJECT_TYPES = {
    "PathAnnotationObject": "annotation",
    "PathDetectionObject": "detection",
    "PathCellObject": "cell",
    "PathTileObject": "tile",
    "TMACoreObject": "tma_core",
}
#: QuPath's intensity classification names and colours (``PathClass`` defaults), by class 0-3.
_CLASS_NAMES = ("Negative", "1+", "2+", "3+")
_CLASS_COLOURS = ((112, 112, 225), (255, 215, 0), (224, 142, 0), (200, 50, 50))
#: Colours of the classifications of cells not scored, by cell type (QuPath's "Immune cells"
#: and "Stroma" defaults; grey otherwise).
_TYPE_COLOURS = {"Immune": (160, 90, 160), "Stroma": (150, 200, 150)}
#: Cell table columns exported as QuPath measurements, when present.
_MEASUREMENTS = ("dab_membrane", "dab_cytoplasm", "dab_nucleus", "dab_cell", "membrane_completeness",
                 "membrane_line_sectors", "nucleus_area_um2", "cell_area_um2", "neighbour_nucleus_area_um2")


def read_roi(path: str | os.PathLike, classes=()) -> list[Polygon]:
    """Read annotation polygons from a QuPath GeoJSON export.

    Parameters
    ----------
    path : str or path-like
        A FeatureCollection, a single Feature, or a bare list of Features (older QuPath), with
        Polygon or MultiPolygon geometries in level-0 pixel coordinates.
    classes : sequence of str, optional
        Keep only annotations classified as one of these (QuPath classification names, any
        case; config ``roi_classes``, e.g. ``[Tumor]``); empty: every annotation.

    Returns
    -------
    list of Polygon
        Each polygon a list of (K, 2) float64 rings ``(x, y)``, exterior first, then holes; a
        repeated closing vertex is dropped.

    Raises
    ------
    InputError
        Naming the file, when it is missing, is not valid JSON, has malformed coordinates, or
        holds no usable annotation polygon.

    Notes
    -----
    Only annotations are kept: ``properties.objectType == 'annotation'``, or no
    ``objectType`` and no QuPath 0.2 feature id naming another type (such as
    ``PathDetectionObject``). Other geometry types (points, lines) and rings with fewer than
    3 vertices are skipped without error.
    """
    path = Path(path)
    wanted = {str(c).strip().lower() for c in classes}
    polygons, found = [], set()
    for number, feature in enumerate(_features(_load(path, "ROI file")), start=1):
        if not _is_annotation(feature):
            continue
        name = _class_name(feature.get("properties") or {})
        found.add(name or "(unclassified)")
        if not wanted or name.lower() in wanted:
            try:
                polygons.extend(_geometry_polygons(feature.get("geometry")))
            except (TypeError, ValueError, AttributeError):
                raise InputError([f"{path}: feature {number} has malformed coordinates"]) from None
    if not polygons and wanted:
        raise InputError([f"{path}: no annotation polygon classified {' or '.join(sorted(classes))} (roi_classes); "
                          f"its annotations are classified {', '.join(sorted(found)) or 'nothing'}"])
    if not polygons:
        raise InputError([f"{path}: no annotation polygons found (Polygon or MultiPolygon)"])
    return polygons


def read_points(path: str | os.PathLike) -> pd.DataFrame:
    """Read point annotations (e.g. a pathologist's nuclei) from a QuPath GeoJSON export.

    Parameters
    ----------
    path : str or path-like
        A FeatureCollection, a single Feature or a list of Features with Point or MultiPoint
        geometries in level-0 pixel coordinates; other geometries are skipped.

    Returns
    -------
    pandas.DataFrame
        ``x, y`` (float64, level-0 pixels) and ``label``: the point's classification name
        (``properties.classification.name``, or a plain ``properties.classification``
        string), '' when it has none.

    Raises
    ------
    InputError
        Naming the file, when it is missing, not valid JSON, has malformed coordinates or
        holds no point.
    """
    path = Path(path)
    rows = []
    for number, feature in enumerate(_features(_load(path, "point file")), start=1):
        geometry = feature.get("geometry") or {}
        kind, coordinates = geometry.get("type"), geometry.get("coordinates")
        if kind not in ("Point", "MultiPoint"):
            continue
        try:
            xy = np.asarray([coordinates] if kind == "Point" else coordinates, dtype=np.float64)
        except (TypeError, ValueError):
            xy = np.zeros((0, 0))
        if xy.ndim != 2 or xy.shape[1] < 2:  # positions are [x, y] or [x, y, z]
            raise InputError([f"{path}: feature {number} has malformed coordinates"])
        xy = xy[:, :2]
        if not np.isfinite(xy).all():
            raise InputError([f"{path}: feature {number} has a non-finite coordinate"])
        label = _class_name(feature.get("properties") or {})
        rows.extend((x, y, label) for x, y in xy)
    if not rows:
        raise InputError([f"{path}: no point annotations found (Point or MultiPoint)"])
    return pd.DataFrame(rows, columns=["x", "y", "label"])


def _class_name(properties: dict) -> str:
    classification = properties.get("classification")
    if isinstance(classification, dict):
        return str(classification.get("name") or "")
    return str(classification or "")


def _load(path: Path, what: str):
    """The parsed JSON of a GeoJSON file, or InputError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError([f"{path}: {what} not found"]) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError([f"{path}: not a readable GeoJSON file ({' '.join(str(exc).split())})"]) from None


def _features(document) -> list:
    if isinstance(document, list):
        return [f for f in document if isinstance(f, dict)]
    if not isinstance(document, dict):
        return []
    if document.get("type") == "FeatureCollection":
        return [f for f in document.get("features") or [] if isinstance(f, dict)]
    if document.get("type") == "Feature":
        return [document]
    return [{"type": "Feature", "geometry": document}]  # a bare geometry


def _is_annotation(feature: dict) -> bool:
    properties = feature.get("properties") or {}
    object_type = properties.get("objectType") or _LEGACY_OBJECT_TYPES.get(str(feature.get("id")))
    return object_type in (None, "annotation")


def _geometry_polygons(geometry) -> list[Polygon]:
    if not isinstance(geometry, dict):
        return []
    kind, coordinates = geometry.get("type"), geometry.get("coordinates")
    if kind == "Polygon":
        parts = [coordinates]
    elif kind == "MultiPolygon":
        parts = coordinates
    else:
        return []
    polygons = [_rings(part) for part in parts]
    return [polygon for polygon in polygons if polygon]


def _rings(rings: list) -> Polygon:
    """Rings of one polygon; empty when its exterior is degenerate."""
    arrays = []
    for ring in rings:
        array = np.asarray(ring, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] < 2:
            raise ValueError("a ring is not a list of [x, y] positions")
        array = array[:, :2]
        if len(array) > 1 and np.array_equal(array[0], array[-1]):
            array = array[:-1]
        if not np.isfinite(array).all():
            raise ValueError("non-finite coordinate")
        arrays.append(np.ascontiguousarray(array))
    if not arrays or len(arrays[0]) < 3:
        return []
    return [arrays[0]] + [hole for hole in arrays[1:] if len(hole) >= 3]


def roi_mask(polygons: list[Polygon], shape: tuple[int, int], *, scale: float) -> np.ndarray:
    """Rasterise ROI polygons at analysis resolution.

    Parameters
    ----------
    polygons : list of Polygon
        From :func:`read_roi`, in level-0 pixel coordinates.
    shape : tuple of int
        ``(M, N)`` of the analysis-resolution image.
    scale : float
        Analysis pixels per level-0 pixel (e.g. 0.5 for a 0.25 um/px slide analysed at 0.5).

    Returns
    -------
    (M, N) ndarray of bool
        True where a pixel's centre lies inside a polygon's exterior and outside its holes.

    Raises
    ------
    ValueError
        If ``shape`` is not two positive integers or ``scale`` is not positive.

    Notes
    -----
    A scanline fill with the even-odd rule over all rings of one polygon, so a hole (inside
    its exterior, as GeoJSON requires) is cut out; polygons are then OR-ed, so overlapping
    polygons add up and a hole only cuts its own polygon. The level-0 point ``(x, y)`` lies at
    analysis column ``x * scale - 0.5`` and row ``y * scale - 0.5`` (pixel centres at whole
    numbers); a centre exactly on a left or top edge is inside, on a right or bottom edge
    outside, so polygons that share an edge never share a pixel. This is the pixel-centre rule
    of ``skimage.draw.polygon``, at a cost proportional to edge crossings rather than to the
    bounding box times the number of vertices.

    Examples
    --------
    >>> square = [np.array([[0, 0], [4, 0], [4, 4], [0, 4]], float)]
    >>> int(roi_mask([square], (8, 8), scale=1.0).sum())
    16
    """
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (M, N) with M, N >= 1, got {shape!r}")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    mask = np.zeros(shape, dtype=bool)
    for polygon in polygons:
        _fill_even_odd(mask, [ring * scale - 0.5 for ring in polygon])
    return mask


def _fill_even_odd(mask: np.ndarray, rings: list[np.ndarray]) -> None:
    """OR the even-odd interior of ``rings`` (analysis pixel-centre coordinates) into mask."""
    rows, xs = _crossings(rings, mask.shape[0])
    if rows.size == 0:
        return
    order = np.lexsort((xs, rows))
    rows, xs = rows[order], xs[order]
    n_cols = mask.shape[1]
    first = np.clip(np.ceil(xs[0::2]), 0, n_cols).astype(np.int64)
    stop = np.clip(np.ceil(xs[1::2]), 0, n_cols).astype(np.int64)
    keep = stop > first
    for row, start_col, stop_col in zip(rows[0::2][keep].tolist(), first[keep].tolist(),
                                        stop[keep].tolist()):
        mask[row, start_col:stop_col] = True  # spans of one polygon never overlap


def _crossings(rings: list[np.ndarray], n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and x positions where ring edges cross the pixel-centre lines ``y = row``.

    An edge from y0 to y1 crosses the rows with ``min(y0, y1) <= row < max(y0, y1)``; this
    half-open rule gives every closed ring an even number of crossings per row.
    """
    start = np.concatenate(rings)
    end = np.concatenate([np.roll(ring, -1, axis=0) for ring in rings])
    low = np.minimum(start[:, 1], end[:, 1])
    high = np.maximum(start[:, 1], end[:, 1])
    first = np.clip(np.ceil(low), 0, n_rows).astype(np.int64)
    counts = np.clip(np.ceil(high), 0, n_rows).astype(np.int64) - first
    counts[high == low] = 0
    counts = np.maximum(counts, 0)
    edge = np.repeat(np.arange(len(start)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    rows = first[edge] + offsets
    y0, y1 = start[edge, 1], end[edge, 1]
    x0, x1 = start[edge, 0], end[edge, 0]
    xs = x0 + (rows - y0) / (y1 - y0) * (x1 - x0)
    return rows, xs


def cells_to_geojson(cells: pd.DataFrame, *, slide_id: str = "") -> dict:
    """Cells as a QuPath GeoJSON FeatureCollection, as QuPath (>= 0.4) writes cell objects.

    Parameters
    ----------
    cells : DataFrame
        Needs ``x`` and ``y`` (level-0 pixels). Optional: ``cell_outline`` and
        ``nucleus_outline`` (flat x, y of each outline; :mod:`cxcr4score.outlines`), which make
        the feature a cell with its ``geometry`` and ``nucleusGeometry`` polygons (else a point
        detection); ``class`` (0-3), the classification Negative / 1+ / 2+ / 3+ of a scored
        cell; ``scored`` and ``cell_type``, which classify a cell not scored by its type
        (Immune, Stroma, Unknown, or Tumour outside the ROI); ``cell_id``, from which a stable
        UUID is made; and the measurements ``dab_membrane``, ``dab_cytoplasm``,
        ``dab_nucleus``, ``dab_cell``, ``membrane_completeness``, ``nucleus_area_um2``,
        ``cell_area_um2`` (missing values left out).
    slide_id : str
        Part of each feature's UUID (a cell id is unique within its slide).

    Returns
    -------
    dict
        ``{"type": "FeatureCollection", "features": [...]}``, one feature per cell: ``id``,
        ``geometry``, ``nucleusGeometry`` (cells with outlines), ``properties`` with
        ``objectType`` ``cell`` (or ``detection``), ``classification`` {``name``, ``color``}
        and ``measurements`` {name: value}; ready for ``json.dump``.

    Raises
    ------
    ValueError
        If ``x`` or ``y`` is missing, or a class is not 0-3.

    Examples
    --------
    >>> table = pd.DataFrame({"x": [10.0], "y": [20.0], "class": [2], "dab_membrane": [0.45]})
    >>> feature = cells_to_geojson(table)["features"][0]
    >>> feature["geometry"], feature["properties"]["classification"]["name"]
    ({'type': 'Point', 'coordinates': [10.0, 20.0]}, '2+')
    """
    # The features hold their rings as arrays (written as they are by write_geojson); as lists here.
    features = orjson.loads(orjson.dumps(list(_cell_features(cells, slide_id)), option=orjson.OPT_SERIALIZE_NUMPY))
    return {"type": "FeatureCollection", "features": features}


def _cell_features(cells: pd.DataFrame, slide_id: str):
    """Yield the features of :func:`cells_to_geojson` one by one (checked at the first), polygon
    rings as (k, 2) float64 arrays."""
    missing = [c for c in ("x", "y") if c not in cells.columns]
    if missing:
        raise ValueError(f"cells table lacks column(s) {missing}; it has {list(cells.columns)}")
    n = len(cells)
    classes = cells["class"].tolist() if "class" in cells.columns else [None] * n
    bad = sorted({c for c in classes if not pd.isna(c) and c not in range(len(_CLASS_NAMES))})
    if bad:
        raise ValueError(f"cell classes must be 0, 1, 2 or 3, got {bad}")
    scored = cells["scored"].tolist() if "scored" in cells.columns else [True] * n
    types = cells["cell_type"].tolist() if "cell_type" in cells.columns else [None] * n
    ids = cells["cell_id"].tolist() if "cell_id" in cells.columns else list(range(n))
    outlines = [_closed_rings(cells[c].tolist()) if c in cells.columns else [None] * n
                for c in ("cell_outline", "nucleus_outline")]
    columns = [c for c in _MEASUREMENTS if c in cells.columns]
    for i, values in enumerate(cells[columns].itertuples(index=False, name=None)):
        feature = {"type": "Feature", "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"cxcr4score:{slide_id}:{ids[i]}"))}
        cell, nucleus = ({"type": "Polygon", "coordinates": [o[i]]} if o[i] is not None else None for o in outlines)
        if cell is not None:
            feature["geometry"] = cell
            if nucleus is not None:
                feature["nucleusGeometry"] = nucleus
            properties = {"objectType": "cell"}
        else:
            feature["geometry"] = {"type": "Point", "coordinates": [float(cells["x"].iat[i]), float(cells["y"].iat[i])]}
            properties = {"objectType": "detection"}
        classification = _classification(classes[i], scored[i], types[i])
        if classification:
            properties["classification"] = classification
        properties["measurements"] = {k: float(v) for k, v in zip(columns, values) if not pd.isna(v)}
        feature["properties"] = properties
        yield feature


def write_cells_geojson(cells, path: str | os.PathLike, *, slide_id: str = "",
                        compress_above: int | None = None) -> Path:
    """Write the cells for QuPath: gzip-compressed always, and plain unless the slide has many.

    Parameters
    ----------
    cells : DataFrame or iterable of DataFrame
        As for :func:`cells_to_geojson`; or the parts of such a table in order (e.g.
        :func:`cxcr4score.tables.read_parts`), written one after another so that a slide of
        millions of cells is never held at once.
    path : str or path-like
        The plain file, ``{slide_id}.geojson``. It and ``path`` + ``.gz`` are always written
        (both are the workflow's outputs, so Snakemake tracks both); QuPath >= 0.4 imports
        ``.geojson.gz`` as it does ``.geojson`` (``PathIO.readObjects``).
    slide_id : str
        As for :func:`cells_to_geojson`.
    compress_above : int, optional
        With more cells than this, ``path`` holds a note instead of the cells (Notes). None:
        the cells always.

    Returns
    -------
    Path
        The plain file when it holds the cells, else ``path`` + ``.gz``.

    Notes
    -----
    The note file is a FeatureCollection whose one feature is a locked point annotation,
    named with the number of cells and the file that holds them, at the centre of the cells;
    so that a pathologist who imports it into QuPath sees where the cells are, not an empty
    slide. Its top-level member ``cxcr4score`` says the same for a script: ``cells_file``
    (the name of the compressed file), ``n_cells`` and ``note``. Both files are written
    atomically; the plain one holds the bytes the compressed one decompresses to.
    """
    path = Path(path)
    packed = path.with_name(path.name + ".gz")
    parts = [cells] if isinstance(cells, pd.DataFrame) else cells
    extents = []  # per part: x min, x max, y min, y max
    n = write_geojson(_features_of_parts(parts, slide_id, extents), packed)
    if compress_above is None or n <= compress_above:
        write_gunzipped(packed, path)
        return path
    text = (f"{n:,} cells, more than geojson_compress_above ({compress_above:,}): they are in {packed.name} "
            f"(QuPath 0.4 or later: File > Import objects, or drag it onto the image); this file holds only this note")
    low, high = np.nanmin(extents, axis=0), np.nanmax(extents, axis=0)
    x, y = (float(low[k] + high[k + 1]) / 2 for k in (0, 2))
    note = {"type": "Feature", "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"cxcr4score:{slide_id}:note")),
            "geometry": {"type": "Point", "coordinates": [round(x, 2), round(y, 2)]},
            "properties": {"objectType": "annotation", "name": f"{n:,} cells are in {packed.name}: import that file",
                           "isLocked": True}}
    write_geojson([note], path, members={"cxcr4score": {"cells_file": packed.name, "n_cells": n, "note": text}})
    return packed


def _features_of_parts(parts, slide_id, extents):
    """The features of every part in turn; each part's x and y range appended to ``extents``."""
    for part in parts:
        if len(part):
            extents.append([np.nanmin(part["x"]), np.nanmax(part["x"]), np.nanmin(part["y"]), np.nanmax(part["y"])])
        yield from _cell_features(part, slide_id)


def _closed_rings(flats) -> list:
    """Each flat x, y outline as a closed ring: a (k + 1, 2) float64 array rounded to 0.01 px,
    its first vertex repeated last; None for a missing or degenerate outline (< 3 vertices).

    One rounding and one gather for the whole slide: per outline, numpy's call overhead was most
    of the time of writing a slide's cells.
    """
    flats = [np.asarray(f).ravel() if isinstance(f, (list, np.ndarray)) and len(f) >= 6 else None for f in flats]
    kept = [f for f in flats if f is not None]
    if not kept:
        return flats
    vertices = np.concatenate(kept).astype(np.float64).reshape(-1, 2).round(2)
    sizes = np.array([len(f) // 2 for f in kept])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    closed_sizes = sizes + 1
    ring = np.repeat(np.arange(len(kept)), closed_sizes)
    position = np.arange(closed_sizes.sum()) - np.repeat(np.cumsum(closed_sizes) - closed_sizes, closed_sizes)
    position[position == sizes[ring]] = 0  # the closing vertex is the first
    rings = iter(np.split(vertices[starts[ring] + position], np.cumsum(closed_sizes)[:-1]))
    return [None if f is None else next(rings) for f in flats]


def _classification(cls, scored, cell_type) -> dict | None:
    if scored and cls is not None and not pd.isna(cls):
        return {"name": _CLASS_NAMES[int(cls)], "color": list(_CLASS_COLOURS[int(cls)])}
    if cell_type:
        name = str(cell_type).capitalize()
        return {"name": name, "color": list(_TYPE_COLOURS.get(name, (128, 128, 128)))}
    return None
