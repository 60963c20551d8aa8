"""The per-slide stages, shared by the Snakemake scripts and ``cxcr4score score``.

:func:`validate_slide` (can it be read) -> :func:`cxcr4score.slide_info.describe_slide`
(metadata, pixel size, background, stains, chunks) -> :func:`measure_chunk` (pixels ->
per-cell measurements, no thresholds) -> :func:`merge_slide` (thresholds -> classes, cell
types, additive class counts per 500 um block and per variant, QC, the slide summary) ->
:func:`qc_slide` (the QC picture). Scores and calls are made from the merged summaries by
:mod:`cxcr4score.eligibility`; :func:`slides_table` is ``slides.csv``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from . import (celltype, eligibility, measure, outlines, qc, qc_metrics, reading_order, roi, score, segment,
               segmentation_stability, stain_pattern, stains, tiling)
from . import grid as grid_module
from .constants import COMPARTMENT_NAMES, SECTOR_COLUMNS
from .errors import InputError
from .slide_info import describe_slide, tissue_of
from .slide_reader import inspect_slide, open_slide
from .tables import PART_ROWS

#: Columns of the per-cell table that DESIGN section 4 fixes, in order.
CELL_COLUMNS = (
    "cell_id", "x", "y", "x_um", "y_um", "nucleus_area_um2", "cell_area_um2",
    "hematoxylin_nucleus", "dab_nucleus", "dab_cytoplasm", "dab_membrane", "dab_cell",
    "membrane_completeness", "membrane_exposed_fraction", "class_nucleus", "class_cytoplasm",
    "class_membrane", "class_cell", "class", "cell_type",
)
#: A measured cell's cell_id = tile index x this + label within the tile (unique within a slide
#: until merge_slide numbers the slide's cells in reading order).
_CELL_ID_STRIDE = 10_000_000


def validate_slide(path: str | os.PathLike, *, roi_path: str | os.PathLike = "", roi_classes=()) -> tuple[dict, list[str]]:
    """Check that a slide (and its ROI file) can be read, without decoding all pixels.

    Parameters
    ----------
    path : str or path-like
        The slide image.
    roi_path : str or path-like, optional
        A QuPath GeoJSON file of annotations; '' for none.
    roi_classes : sequence of str, optional
        Config ``roi_classes``: the annotation classes that make the ROI (empty: all).

    Returns
    -------
    info : dict
        ``width``, ``height`` (level-0 pixels), ``mpp``, ``mpp_source`` and ``format``
        (e.g. 'ome-tiff', 'svs', 'ndpi', 'tiff', 'png', 'jpeg', OpenSlide's vendor such as
        'mirax', or 'vsi'); None where unknown.
    problems : list of str
        Every problem found, each naming the file; empty when the slide is usable.

    Notes
    -----
    The slide is opened as :func:`cxcr4score.slide_reader.open_slide` opens it (the first reader
    that can). TIFF-based files are checked from their metadata plus one decoded tile or strip
    (which catches unknown compressions and corrupt data early), other formats by one small
    region of the coarsest level. PNG and JPEG files are small and are read in full.
    """
    info = {"width": None, "height": None, "mpp": None, "mpp_source": None, "format": None}
    problems = []
    try:
        info.update(inspect_slide(Path(path)))
    except InputError as exc:
        problems.extend(exc.problems)
    if str(roi_path):
        try:
            roi.read_roi(roi_path, roi_classes)
        except InputError as exc:
            problems.extend(exc.problems)
    return info, problems


def block_ids(x_um, y_um, block_um):
    """Integer id of the ``block_um`` square block holding each point (row-major)."""
    rows = np.floor(np.asarray(y_um) / block_um).astype(np.int64)
    cols = np.floor(np.asarray(x_um) / block_um).astype(np.int64)
    return rows * (1 << 20) + cols


#: Per-cell outline polygons (cell, nucleus): flat level-0 x, y of the boundary pixels
#: (:func:`cxcr4score.outlines.label_outlines`), for the cells' GeoJSON.
OUTLINE_COLUMNS = ("cell_outline", "nucleus_outline")
_NO_OUTLINE = np.empty((0, 2))
#: Key of a chunk table's ``attrs`` (kept in its parquet file) holding why the chunk could not
#: be read (``on_bad_slide: skip``); merge_slide then fails the slide.
CHUNK_ERROR = "cxcr4score_chunk_error"


def _slide_centroid(local, area, offset):
    """A nucleus centroid in slide pixels from its tile's, bit-identical whatever the tile.

    ``local + offset`` rounds differently in different tiles (a last-bit difference moves a
    cell in a sorted table and changes the bytes of a rerun with other chunk sizes); the
    integer pixel-coordinate sum, recovered exactly from the tile's mean, is shifted instead.
    """
    return (np.rint(local * area) + offset * area) / area


def measure_chunk(info, chunk, *, config):
    """Pixels to per-cell measurements for one chunk of a slide (no scoring thresholds).

    The chunk's tiles are read, segmented and measured one after another, so that memory is
    that of one tile; each cell is measured in the tile whose core holds its nucleus centroid.

    Parameters
    ----------
    info : SlideInfo
        From :func:`cxcr4score.slide_info.describe_slide`.
    chunk : str
        A chunk id from ``info.chunks``.
    config : dict
        Effective configuration.

    Returns
    -------
    cells : pandas.DataFrame
        One row per cell, in reading order (:func:`cxcr4score.reading_order.sort_cells`):
        identifiers, positions, areas, compartment DAB means (and SDs and
        alternative-background twins), sector means, exposed fraction, ``block_id``,
        ``in_roi``.
    hist : (2, 200, 800) ndarray of int64
        Joint hematoxylin x DAB histograms of the pixels of the region's cells and of its
        cells typed tumour (see
        :func:`measure.measure_cells`).
    """
    tables = stains.concentration_tables(info.i0, np.asarray(info.stain_matrix))
    # The alternative I0 / stain choice (DESIGN 5): default I0 and the default stain vectors.
    alt_i0 = (float(config["default_i0"]),) * 3
    alt_matrix = stains.stain_matrix(config["stains"]["hematoxylin"], config["stains"]["dab"])
    alt_dab = stains.concentration_tables(alt_i0, alt_matrix)[stains.DAB]
    with open_slide(info.path) as reader:
        parts = [_measure_tile(info, tile, reader, tables=tables, alt_dab=alt_dab, config=config)
                 for tile in info.tiles(chunk)]
    # A chunk has at least one tile (tiling.group_tiles). Sorted, so that the merge reads it in parts.
    return (reading_order.sort_cells(pd.concat([cells for cells, _ in parts], ignore_index=True)),
            np.sum([h for _, h in parts], axis=0))


def _measure_tile(info, box, reader, *, tables, alt_dab, config):
    """:func:`measure_chunk` of one tile (a :class:`cxcr4score.tiling.Tile`)."""
    grid = info.grid
    rgb = grid_module.read_box(reader, grid, box.read)
    mpp = grid.mpp
    hematoxylin, dab = stains.deconvolve(rgb, tables)
    # Cells are not restricted to the tissue mask: pale stroma can fall below the tissue
    # threshold, and a nucleus is found on its own hematoxylin signal anyway.
    nuclei, cells, codes, exposed = segment.segment_cells(hematoxylin, dab, mpp=mpp, config=config,
                                                          baseline=info.nucleus_baseline,
                                                          dab_threshold=info.nucleus_dab_threshold)
    n = int(nuclei.max())
    rows, cols, nucleus_px, axis_ratio = measure.nucleus_shape(nuclei, n)
    # A cell belongs to the tile whose core holds its nucleus centroid (DESIGN section 6).
    owned = np.zeros(n + 1, dtype=bool)
    owned[1:] = tiling.in_core(rows[1:], cols[1:], box)
    in_roi = owned.copy()
    roi_mask = _roi_mask(info, box.read, grid.to_level0, config["roi_classes"])
    if roi_mask is not None and n:
        in_roi[1:] &= roi_mask[np.round(rows[1:]).astype(int), np.round(cols[1:]).astype(int)]
    # Typed before they are measured, with the slide's darkness reference and the kernel's own
    # nuclear hematoxylin, as merge_slide types them: the tumour cells' pixels get their own
    # histogram (the pixel H-score counts tumour pixels).
    # Neighbours from every nucleus of the read box: the halo holds those of the owned cells.
    neighbours = celltype.neighbour_nucleus_area(rows[1:] * mpp, cols[1:] * mpp, nucleus_px[1:] * mpp**2)
    types = celltype.classify_cell_types(pd.DataFrame({
        "nucleus_area_um2": nucleus_px[1:] * mpp**2, "nucleus_axis_ratio": axis_ratio[1:],
        "hematoxylin_nucleus": measure.nucleus_hematoxylin(hematoxylin, cells, codes, n),
        "neighbour_nucleus_area_um2": neighbours,
    }), reference=info.typing_reference)
    scope = np.where(in_roi, measure.REGION, 0).astype(np.uint8)
    scope[1:][in_roi[1:] & (types == "tumour")] = measure.TUMOUR
    stats, hist = measure.measure_cells(
        rgb, cells, codes, n_cells=n, tables=tables, alt_dab_table=alt_dab,
        centroid_row=rows, centroid_col=cols, in_scope=scope,
    )
    keep = owned[1:]
    f = grid.to_level0
    x = (_slide_centroid(cols[1:][keep], nucleus_px[1:][keep], box.read[1]) + 0.5) * f
    y = (_slide_centroid(rows[1:][keep], nucleus_px[1:][keep], box.read[0]) + 0.5) * f
    x_um, y_um = x * grid.native_mpp, y * grid.native_mpp
    # Every cell pixel is in one compartment (the ring pooled into cytoplasm): no bincount pass.
    cell_px = stats[[f"n_{name}" for name in COMPARTMENT_NAMES]].to_numpy().sum(axis=1)
    table = _base_table(
        cell_id=np.flatnonzero(keep).astype(np.int64) + 1 + box.index * _CELL_ID_STRIDE,
        x=x, y=y, x_um=x_um, y_um=y_um,
        nucleus_area_um2=nucleus_px[1:][keep] * mpp**2,
        nucleus_axis_ratio=axis_ratio[1:][keep],
        neighbour_nucleus_area_um2=neighbours[keep],
        cell_area_um2=cell_px[keep] * mpp**2,
        membrane_exposed_fraction=exposed[1 : n + 1][keep] if n else np.empty(0),
        block_id=block_ids(x_um, y_um, config["intervals"]["block_um"]),
        in_roi=in_roi[1:][keep],
        **{name: pd.Series(outlines.label_outlines(labels, np.flatnonzero(keep) + 1, row_offset=box.read[0],
                                                   col_offset=box.read[1], scale=f), dtype=object)
           for name, labels in zip(OUTLINE_COLUMNS, (cells, nuclei))},
    )
    return pd.concat([table, stats[keep].reset_index(drop=True)], axis=1), hist


def _roi_mask(info, box, to_level0, classes):
    """The ROI on an analysis-grid box ``(top, left, bottom, right)``, or None without ROI.

    Level-0 and analysis coordinates are continuous here (pixel k spans [k, k + 1)), so the
    box's corner is ``(left, top) * to_level0`` in level-0 units.
    """
    if not info.roi:
        return None
    corner = np.array([box[1], box[0]], dtype=np.float64) * to_level0
    shifted = [[ring - corner for ring in polygon] for polygon in roi.read_roi(info.roi, classes)]
    return roi.roi_mask(shifted, (box[2] - box[0], box[3] - box[1]), scale=1.0 / to_level0)


def _base_table(**columns):
    return pd.DataFrame({name: columns[name] for name in (
        "cell_id", "x", "y", "x_um", "y_um", "nucleus_area_um2", "nucleus_axis_ratio",
        "neighbour_nucleus_area_um2", "cell_area_um2", "membrane_exposed_fraction", "block_id", "in_roi",
        *OUTLINE_COLUMNS)})


def empty_measurements():
    """The measurement table of a slide without cells (the columns of :func:`measure_chunk`)."""
    empty = np.empty(0)
    base = _base_table(cell_id=empty.astype(np.int64), x=empty, y=empty, x_um=empty, y_um=empty,
                       nucleus_area_um2=empty, nucleus_axis_ratio=empty, neighbour_nucleus_area_um2=empty,
                       cell_area_um2=empty,
                       membrane_exposed_fraction=empty,
                       block_id=empty.astype(np.int64), in_roi=empty.astype(bool),
                       **{name: pd.Series([], dtype=object) for name in OUTLINE_COLUMNS})
    return pd.concat([base, measure.empty_table()], axis=1)


def merge_slide(info, measurements, hists, *, config):
    """Apply thresholds to a slide's cells held in memory (see :func:`merge_slide_parts`).

    Parameters
    ----------
    info : SlideInfo
        From :func:`cxcr4score.slide_info.describe_slide`.
    measurements : pandas.DataFrame
        Concatenated outputs of :func:`measure_chunk` for the slide's chunks, in any order.
    hists : sequence of (2, 200, 800) ndarray
        Pixel histograms of the chunks.
    config : dict

    Returns
    -------
    cells : pandas.DataFrame
        The per-cell table of DESIGN section 4 (contract columns first).
    blocks : pandas.DataFrame
    summary : dict
        As :func:`merge_slide_parts`.
    """
    parts = []
    blocks, summary = merge_slide_parts(info, [reading_order.SortedFrame(reading_order.sort_cells(measurements))],
                                        hists, config=config, write_cells=parts.append)
    return pd.concat(parts, ignore_index=True), blocks, summary


def merge_slide_parts(info, tables, hists, *, config, write_cells):
    """Apply thresholds: per-cell classes and types, block class counts per variant, QC, summary.

    The chunks are read part by part and merged in reading order
    (:func:`cxcr4score.reading_order.merge_sorted`), and the cells go out in parts of
    ``PART_ROWS``, so that a slide of millions of cells is never held at once: classes, types
    and block counts are per cell, and the slide's statistics come from a few narrow columns
    kept for every cell.

    Parameters
    ----------
    info : SlideInfo
        From :func:`cxcr4score.slide_info.describe_slide`.
    tables : sequence
        The slide's chunk tables (:func:`measure_chunk`, sorted) as sources for
        :func:`cxcr4score.reading_order.merge_sorted`: ``first_y`` and ``parts(columns=None)``.
        A slide whose sampled tiles held no nucleus (``info.typing_reference`` None) reads their
        nucleus columns first, for the reference of all its nuclei.
    hists : iterable of (2, 200, 800) ndarray
        Pixel histograms of the chunks; the pixel H-score reads the tumour cells' with
        ``tumour_cells: morphology``, the region's with ``all``.
    config : dict
    write_cells : callable
        Called with each part of the per-cell table of DESIGN section 4 (contract columns
        first), in reading order with ``cell_id`` 1..n: ``PART_ROWS`` cells a part, the last
        part the rest; one part without rows for a slide without cells.

    Returns
    -------
    blocks : pandas.DataFrame
        Long table ``slide_id, variant, measure, block_id, n0..n3`` of scored cells.
    summary : dict
        The slide's row for :mod:`cxcr4score.eligibility` (the pixel histogram in
        ``summary["pixel_hist"]`` as nested lists).
    """
    reference = info.typing_reference
    if reference is None:
        reference = _darkness_reference(tables)
    alt_differs = info.i0_source != "default" or info.stain_source == "estimated"
    block_parts, slide_columns, n_cells = [], [], 0

    def merge_part(measurements):
        cells, blocks, kept = _merge_cells(measurements, config=config, reference=reference, alt_differs=alt_differs)
        write_cells(cells)
        block_parts.append(blocks)
        slide_columns.append(kept)

    for part in reading_order.merge_sorted(tables, size=PART_ROWS):
        # ids 1..n in reading order: the chunks' own depend on how the slide was cut into chunks
        part["cell_id"] = np.arange(n_cells + 1, n_cells + 1 + len(part), dtype=np.int64)
        n_cells += len(part)
        merge_part(part)
    if not n_cells:
        merge_part(empty_measurements())
    blocks = eligibility.combine_block_counts(block_parts)
    nominal = blocks[(blocks["variant"] == eligibility.NOMINAL) & (blocks["measure"] == "class")]
    blocks = eligibility.combine_block_counts(
        [blocks, segmentation_stability.variant_blocks(nominal, info.segmentation_sample, config)])
    blocks.insert(0, "slide_id", info.slide_id)
    classified = pd.concat(slide_columns, ignore_index=True)
    del slide_columns[:]  # held once, not twice, from here on
    in_region, scored, immune = (classified[c].to_numpy(bool) for c in ("in_roi", "scored", "immune"))
    hist = measure.slide_histogram(hists, config["pixel_hematoxylin_min"],
                                   tumour_only=config["tumour_cells"] == "morphology")
    qc_status, qc_messages, metrics = _slide_qc(info, classified, in_region, scored, config)
    immune_classes = classified["class"].to_numpy()[immune]
    summary = {
        "slide_id": info.slide_id, "patient_id": info.patient_id, "path": info.path, "mpp": info.mpp,
        "tissue_mm2": info.tissue_mm2, "stain_vectors": info.stain_vectors, "stain_source": info.stain_source,
        "qc_status": qc_status,
        "qc_message": "; ".join(qc_messages),
        "i0": ",".join(f"{v:.1f}" for v in info.i0),
        "i0_source": info.i0_source,
        "has_roi": bool(info.roi),
        "tumour_source": celltype.tumour_source(has_roi=bool(info.roi), tumour_cells=config["tumour_cells"]),
        "n_cells_detected": int(n_cells),
        # CXCR4 on lymphocytes, reported apart from the tumour score
        "n_immune_cells": int(immune.sum()),
        "pct_immune_positive": float(100 * np.mean(immune_classes >= 1)) if immune.any() else float("nan"),
        **_pattern_shares(classified, scored),
        "pixel_hist": np.asarray(hist, dtype=np.int64).tolist(),
        **{f"qc_{name}": value for name, value in metrics.items() if name != "tissue_mm2"},
        # "" for a slide that could not be read, as its slides.csv cells
        "stain_dab_fraction": "" if info.stain_dab_fraction is None else info.stain_dab_fraction,
        "stain_notes": info.stain_notes,
    }
    return blocks, summary


#: The per-cell columns :func:`merge_slide_parts` keeps for every cell of a slide, for its
#: statistics (pattern shares, immune cells, QC metrics).
_SLIDE_COLUMNS = ("class", "scored", "immune", "in_roi", "pattern", "cell_type", "dab_cell")


def _darkness_reference(tables):
    """The typing reference of all the slide's nuclei (for a slide whose sampled tiles held
    none), as a chunk's would be of its own; only three columns are read."""
    columns = ("nucleus_area_um2", "hematoxylin_nucleus", "neighbour_nucleus_area_um2")
    nuclei = [p for t in tables for p in t.parts(columns)]
    return celltype.darkness_reference(*(np.concatenate([p[c].to_numpy(float) for p in nuclei] + [[]])
                                         for c in columns))


def _merge_cells(measurements, *, config, reference, alt_differs):
    """:func:`merge_slide_parts` of some of a slide's cells: their rows of the cells table, their
    block counts and the columns of :data:`_SLIDE_COLUMNS`."""
    classified = score.classify_cells(measurements, config)
    classified["cell_type"] = celltype.classify_cell_types(measurements, reference=reference)
    in_region = classified["in_roi"].to_numpy(bool)
    scored, immune = celltype.scored_cells(classified["cell_type"].to_numpy(), in_region,
                                           tumour_cells=config["tumour_cells"])
    classified["scored"] = scored
    classified["pattern"] = score.staining_pattern(measurements, threshold=config["thresholds"][0],
                                                   exposed_max=config["membrane_exposed_max"])
    blocks = eligibility.variant_block_counts(measurements, classified, scored, config=config, alt_differs=alt_differs,
                                              typing_scored=_typing_variants(measurements, in_region, config,
                                                                             reference))
    extra = [c for c in classified.columns if c not in CELL_COLUMNS and c not in SECTOR_COLUMNS]
    # A copy: a selection of columns is a view that would keep every column of the part alive.
    kept = classified[[c for c in _SLIDE_COLUMNS if c != "immune"]].assign(immune=immune).copy()
    return classified[list(CELL_COLUMNS) + extra], blocks, kept


def _typing_variants(measurements, in_region, config, reference):
    """The cells scored with the typing limits shifted -/+ ``celltype.TYPING_TOLERANCE``
    (``typing_fewer`` / ``typing_more``); none when every cell is scored."""
    if config["tumour_cells"] != "morphology":
        return {}
    return {variant: celltype.scored_cells(celltype.classify_cell_types(measurements, shift=shift, reference=reference),
                                           in_region, tumour_cells="morphology")[0]
            for variant, shift in (("typing_fewer", -celltype.TYPING_TOLERANCE),
                                   ("typing_more", celltype.TYPING_TOLERANCE))}


def _pattern_shares(classified, scored):
    """Per staining pattern, the percentage of the slide's positive scored cells
    (``pct_positive_<pattern>``; NaN without positive cells; ``other``: positive by the whole
    cell only, no compartment reaching 1+), and their count; and of the scored cells with any
    compartment at 1+ or above (``n_stained``), the percentage stained most in the nucleus
    (``pct_stained_nuclear``): a nuclear stain whose brown nuclei the scored compartments
    leave out makes few positive cells, but many stained ones."""
    positive = scored & (classified["class"].to_numpy() >= 1)
    all_patterns = classified["pattern"].to_numpy()
    patterns = all_patterns[positive]
    shares = {f"pct_positive_{'other' if p == 'negative' else p}":
              float(100 * np.mean(patterns == p)) if positive.any() else float("nan") for p in score.PATTERNS}
    n_stained, nuclear = stain_pattern.nuclear_share(all_patterns[scored])
    return {"n_positive": int(positive.sum()), **shares, "n_stained": n_stained, "pct_stained_nuclear": nuclear}


def _slide_qc(info, classified, in_region, scored, config):
    """QC status, messages and metric values of a slide: those of slide_info, an ROI holding no
    cell, and the metrics of :mod:`cxcr4score.qc_metrics` at the config's levels."""
    qc_status, qc_messages = info.qc_status, [info.qc_message] if info.qc_message else []
    if info.roi and qc_status != "failed" and not in_region.any():
        qc_status = "warning"
        qc_messages.append(f"the ROI holds none of the {len(classified)} detected cells")
    if info.pixel_qc is None:  # a slide that could not be read
        return qc_status, qc_messages, {}
    metrics = qc_metrics.slide_metrics(
        info.pixel_qc, tissue_mm2=info.tissue_mm2, tumour_cells=int(scored.sum()),
        region_cells=classified.loc[in_region, ["cell_type", "dab_cell"]],
        min_sharpness=config["qc"]["focus_min_sharpness"],
    )
    metric_status, metric_messages = qc_metrics.evaluate(metrics, config["qc"])
    return qc_metrics.worst_status(qc_status, metric_status), qc_messages + metric_messages, metrics


def qc_slide(info, summary, cells, *, config, outline_parts=None):
    """The QC picture of a slide (see :func:`cxcr4score.qc.qc_picture`), titled with the
    slide's QC verdict as ``slides.csv`` gives it.

    Parameters
    ----------
    info : SlideInfo
    summary : mapping
        The slide's summary (:func:`merge_slide_parts`): its ``qc_status`` and ``qc_message``
        are the verdict after measurement (the QC metrics, the ROI, a chunk that could not be
        read), which ``info`` (before measurement) does not know.
    cells : pandas.DataFrame
        The slide's cells table (``x``, ``y``, ``scored``, ``class``; and the outline columns
        when ``outline_parts`` is None).
    config : dict
    outline_parts : iterable of pandas.DataFrame, optional
        The outline columns of the same cells in the same order, part after part (a large
        slide's table read a part at a time): only the outlines in the crop are kept.
    """
    status, message = summary["qc_status"], summary["qc_message"]
    title = f"{info.slide_id}  QC {status}" + (f": {message}" if message else "")
    blank = np.full((200, 200, 3), 255, np.uint8)
    if status == "failed":
        return qc.qc_picture(blank, overview_scale=1.0, crop=blank, crop_origin=(0, 0), cell_x=[], cell_y=[],
                             cell_class=[], cell_outlines=[], nucleus_outlines=[], title=title)
    grid = info.grid
    f = grid.to_level0
    x, y = cells["x"].to_numpy() / f - 0.5, cells["y"].to_numpy() / f - 0.5
    scored = cells["scored"].to_numpy(bool)
    top, left = qc.densest_window(x, y, grid.shape)
    crop_box = (top, left, min(grid.shape[0], top + qc.CROP_PX), min(grid.shape[1], left + qc.CROP_PX))
    with open_slide(info.path) as reader:
        overview, overview_mpp = grid_module.read_overview(reader, grid)
        crop = grid_module.read_box(reader, grid, crop_box)
    inside = qc.in_box(x, y, (top, left), crop.shape)
    cell_outlines, nucleus_outlines = _outlines_inside(
        [cells[list(OUTLINE_COLUMNS)]] if outline_parts is None else outline_parts, inside, f)
    overview_box = (0, 0, *overview.shape[:2])
    return qc.qc_picture(
        overview, overview_scale=overview_mpp / grid.mpp, crop=crop, crop_origin=(top, left),
        cell_x=x, cell_y=y, cell_class=np.where(scored, cells["class"].to_numpy(int), -1),
        cell_outlines=cell_outlines, nucleus_outlines=nucleus_outlines,
        tissue_mask=tissue_of(overview, overview_mpp, config),
        roi_mask=_roi_mask(info, overview_box, overview_mpp / grid.native_mpp, config["roi_classes"]),
        title=title,
    )


def _outlines_inside(parts, inside, to_level0):
    """The cell and nucleus outlines (analysis px, (k, 2)) of the cells marked ``inside``, an
    empty one for every other cell; ``parts`` hold the outline columns of all the cells in order."""
    outlines, start = ([], []), 0
    for part in parts:
        keep = inside[start:start + len(part)]
        start += len(part)
        for column, kept in zip(OUTLINE_COLUMNS, outlines):
            kept.extend(np.reshape(o, (-1, 2)) / to_level0 - 0.5 if k else _NO_OUTLINE for o, k in zip(part[column], keep))
    return outlines


def score_slide(path, *, slide_id, patient_id="", sheet_mpp="", roi_path="", config, on_chunk=None):
    """All per-slide stages in one call (the ``cxcr4score score`` path).

    ``on_chunk(done, total)``, when given, is called after each measured chunk (progress).

    Returns
    -------
    info : SlideInfo
    cells : pandas.DataFrame
    blocks : pandas.DataFrame
    summary : dict
    """
    info = describe_slide(path, slide_id=slide_id, patient_id=patient_id, sheet_mpp=sheet_mpp,
                      roi_path=roi_path, config=config)
    parts = []
    for chunk in info.chunks:
        parts.append(measure_chunk(info, chunk, config=config))
        if on_chunk is not None:
            on_chunk(len(parts), len(info.chunks))
    measurements = pd.concat([p[0] for p in parts], ignore_index=True) if parts else empty_measurements()
    cells, blocks, summary = merge_slide(info, measurements, [p[1] for p in parts], config=config)
    return info, cells, blocks, summary


#: slides.csv columns around the score columns (DESIGN section 4).
SLIDES_HEAD = ("slide_id", "patient_id", "path", "mpp", "tissue_mm2")
SLIDES_TAIL = ("i0", "stain_vectors", "stain_source", "qc_status", "qc_message")


def slides_table(slides, blocks, config):
    """The rows of ``slides.csv``: identity, scores (:func:`eligibility.slide_scores`), QC.

    Parameters
    ----------
    slides : pandas.DataFrame
        One row per slide: the summaries of :func:`merge_slide` (plus ``collected``).
    blocks : pandas.DataFrame
        The slides' block class counts.
    config : dict

    Returns
    -------
    pandas.DataFrame
        Contract columns first; extra columns (``i0_source``, ``mpp_source``,
        ``n_cells_detected``, ``has_roi``) after them.
    """
    scores = eligibility.slide_scores(slides, blocks, config)
    head = slides[list(SLIDES_HEAD)].reset_index(drop=True)
    tail = slides[list(SLIDES_TAIL)].reset_index(drop=True)
    extra_names = [c for c in ("n_immune_cells", "pct_immune_positive", "n_positive", "pct_positive_membranous",
                               "pct_positive_cytoplasmic", "pct_positive_nuclear", "pct_positive_other",
                               "n_stained", "pct_stained_nuclear",
                               "tumour_source", "i0_source",
                               "n_cells_detected", "has_roi", "stain_dab_fraction", "stain_notes") if c in slides]
    extra_names += [c for c in slides.columns if c.startswith("qc_") and c not in SLIDES_TAIL]
    return pd.concat([head, scores.drop(columns="slide_id"), tail, slides[extra_names].reset_index(drop=True)], axis=1)
