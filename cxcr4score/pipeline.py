"""The stages for one slide, shared by the Snakemake scripts and ``cxcr4score score``.

``slide_info`` (metadata, pixel size, background, chunks) -> ``measure_chunk`` (pixels ->
per-cell measurements, no thresholds) -> ``merge_slide`` (thresholds -> classes, additive
class counts per 500 um block and per variant, slide summary). Scores and calls are made
from the merged summaries by :mod:`cxcr4score.eligibility`.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pandas as pd

from . import (
    __version__, celltype, eligibility, io, measure, qc, qc_metrics, roi, score, segment, stain_estimation, stains,
    tiling, tissue,
)
from . import grid as grid_module
from .measure import SECTOR_COLUMNS, deconvolve_hematoxylin, measure_cells

#: Columns of the per-cell table that DESIGN section 4 fixes, in order.
CELL_COLUMNS = (
    "cell_id", "x", "y", "x_um", "y_um", "nucleus_area_um2", "cell_area_um2",
    "hematoxylin_nucleus", "dab_nucleus", "dab_cytoplasm", "dab_membrane", "dab_cell",
    "membrane_completeness", "membrane_exposed_fraction", "class_nucleus", "class_cytoplasm",
    "class_membrane", "class_cell", "class", "cell_type",
)
#: Compartment DAB columns that have an alternative-background twin (``<name>_alt``).
_ALT_COLUMNS = ("dab_nucleus", "dab_cytoplasm", "dab_membrane", "dab_cell")
#: A glass region is eroded by this much before I0 is measured (um), away from tissue edges.
_GLASS_MARGIN_UM = 10.0
#: cell_id = chunk index x this + label within the chunk (unique within a slide).
_CELL_ID_STRIDE = 10_000_000
#: QC levels from best to worst.
_QC_ORDER = ("ok", "warning", "failed")
#: Per-compartment class columns counted into the block table (nominal variant only).
_COMPARTMENT_MEASURES = ("class_membrane", "class_cytoplasm", "class_nucleus")


def open_grid(path, *, sheet_mpp, config):
    """Open a slide and fix its analysis grid.

    Returns
    -------
    reader : io.SlideReader
        Open; the caller closes it (``with reader:``).
    grid : grid.Grid
    mpp_source : str
    mpp_warning : str or None
    """
    reader = io.open_slide(path)
    try:
        native, source, warning = io.resolve_mpp(reader.mpp, sheet_mpp, config["default_mpp"])
        chosen = grid_module.choose_grid(reader.levels, native_mpp=native, analysis_mpp=config["analysis_mpp"])
    except BaseException:
        reader.close()
        raise
    return reader, chosen, source, warning


def grid_from_info(info):
    """The analysis grid recorded by :func:`slide_info`."""
    return grid_module.Grid(
        level=info["level"], level_shape=tuple(info["level_shape"]), level_mpp=info["level_mpp"],
        mpp=info["analysis_mpp"], shape=tuple(info["shape"]), native_mpp=info["mpp"],
    )


def _tissue(rgb, mpp, config):
    settings = config["tissue"]
    return tissue.tissue_mask(rgb, mpp=mpp, od_threshold=settings["od_threshold"], min_area_um2=settings["min_area_um2"])


def _glass(tissue_mask, mpp):
    margin = max(1, int(round(_GLASS_MARGIN_UM / mpp)))
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * margin + 1, 2 * margin + 1))
    return cv2.erode((~tissue_mask).view(np.uint8), kernel, borderType=cv2.BORDER_REPLICATE).astype(bool)


def _vector_text(vectors):
    return ";".join(",".join(f"{v:.5f}" for v in row) for row in vectors)


def _stain_estimate(overview, mask, i0, config):
    """The slide's stain matrix: estimated directions where trustworthy, else the default."""
    settings, reference = config["stain_estimation"], config["stains"]
    if not settings["enabled"]:
        matrix = stains.stain_matrix(reference["hematoxylin"], reference["dab"])
        return stain_estimation.StainEstimate(matrix, "default")
    od = stain_estimation.stained_od(overview, mask, i0, od_floor=settings["od_floor"])
    try:
        return stain_estimation.estimate_stains(
            od, hematoxylin=reference["hematoxylin"], dab=reference["dab"], max_angle_deg=settings["max_angle_deg"],
            min_dab_fraction=settings["min_dab_fraction"], third_min_angle_deg=settings["third_stain_min_angle_deg"],
        )
    except (ValueError, np.linalg.LinAlgError) as err:  # degenerate OD: the slide is still scored
        matrix = stains.stain_matrix(reference["hematoxylin"], reference["dab"])
        return stain_estimation.StainEstimate(matrix, "default", notes=(f"stain estimation failed ({err}): default kept",))


def _pixel_qc(overview, overview_mpp, mask, focus_tiles, i0, estimate, config):
    """The QC metrics of :mod:`cxcr4score.qc_metrics` measured on pixels (see :func:`slide_info`)."""
    pixels = stain_estimation.sample_pixels(overview, mask)
    return {
        # The threshold is applied at merge, so that changing it reruns no pixel work.
        "focus_scores": qc_metrics.focus_scores(focus_tiles),
        "saturated": qc_metrics.saturated_share(pixels),
        "pen": qc_metrics.pen_share(stains.od_table(i0)[np.arange(3), pixels], estimate.matrix[:2]),
        "folds": qc_metrics.fold_share(tissue.od_sum(overview, i0), mask, mpp=overview_mpp),
        "stain_angle_deg": max(stain_estimation.angle_deg(estimate.matrix[row], config["stains"][name])
                               for row, name in ((stains.HEMATOXYLIN, "hematoxylin"), (stains.DAB, "dab"))),
        "second_stain_deg": estimate.second_off_plane_deg,
    }


def slide_info(path, *, slide_id, patient_id="", sheet_mpp="", roi_path="", config):
    """Metadata, pixel size, tissue area, background I0 and the chunk list of one slide.

    Returns
    -------
    dict
        JSON-serialisable; read back by :func:`measure_chunk` and :func:`merge_slide`.
    """
    reader, grid, mpp_source, mpp_warning = open_grid(path, sheet_mpp=sheet_mpp, config=config)
    with reader:
        overview, overview_mpp = grid_module.read_overview(reader, grid)
        mask = _tissue(overview, overview_mpp, config)
        focus_boxes = qc_metrics.focus_tiles(mask, overview_scale=overview_mpp / grid.mpp, shape=grid.shape)
        focus_tiles = [grid_module.read_box(reader, grid, b) for b in focus_boxes]
    background = stains.measure_background(
        overview, _glass(mask, overview_mpp),
        default_i0=config["default_i0"], min_glass_fraction=config["tissue"]["min_glass_fraction"],
    )
    warnings = [w for w in (mpp_warning, background.warning) if w]
    if grid.mpp > config["analysis_mpp"] * (1 + io.MPP_TOLERANCE):
        warnings.append(f"pixel size {grid.mpp:.3g} um is coarser than the analysis pixel size "
                        f"{config['analysis_mpp']:g} um: compartments are less exact")
    tissue_mm2 = float(np.count_nonzero(mask)) * overview_mpp**2 / 1e6
    if tissue_mm2 == 0:
        warnings.append("no tissue found")
    halo_px = math.ceil(tiling.halo_um(config) / grid.mpp)
    chunks = tiling.plan_chunks(grid.shape, halo_px=halo_px, core_px=tiling.CORE_PX, tissue=mask if tissue_mm2 else None)
    estimate = _stain_estimate(overview, mask, background.i0, config)
    return {
        "slide_id": slide_id,
        "patient_id": patient_id,
        "path": str(path),
        "roi": str(roi_path or ""),
        "mpp": grid.native_mpp,
        "mpp_source": mpp_source,
        "level": grid.level,
        "level_shape": list(grid.level_shape),
        "level_mpp": grid.level_mpp,
        "analysis_mpp": grid.mpp,
        "shape": list(grid.shape),
        "overview_mpp": overview_mpp,
        "tissue_mm2": tissue_mm2,
        "i0": list(background.i0),
        "i0_source": background.source,
        "stain_matrix": estimate.matrix.tolist(),
        # Always hematoxylin;DAB (DESIGN section 4); a third stain in use is named in the notes.
        "stain_vectors": _vector_text(estimate.matrix[:2]),
        "stain_source": estimate.source,
        "stain_dab_fraction": estimate.dab_fraction,
        "stain_notes": "; ".join(estimate.notes + ((f"third stain vector {_vector_text(estimate.matrix[2:])} in use "
                                                    "(its OD does not enter DAB)",) if estimate.third_stain else ())),
        "pixel_qc": _pixel_qc(overview, overview_mpp, mask, focus_tiles, background.i0, estimate, config),
        "chunks": [str(c.index) for c in chunks],
        "chunk_boxes": [c.to_json() for c in chunks],
        "qc_status": "warning" if warnings else "ok",
        "qc_message": "; ".join(warnings),
        "cxcr4score_version": __version__,
    }


def _nucleus_params(config):
    return segment.NucleusParams(**config["nuclei"])


def _roi_mask(info, box, to_level0):
    """The ROI on an analysis-grid box ``(top, left, bottom, right)``, or None without ROI.

    Level-0 and analysis coordinates are continuous here (pixel k spans [k, k + 1)), so the
    box's corner is ``(left, top) * to_level0`` in level-0 units.
    """
    if not info["roi"]:
        return None
    corner = np.array([box[1], box[0]], dtype=np.float64) * to_level0
    shifted = [[ring - corner for ring in polygon] for polygon in roi.read_roi(info["roi"])]
    return roi.roi_mask(shifted, (box[2] - box[0], box[3] - box[1]), scale=1.0 / to_level0)


def segment_cells(hematoxylin, *, mpp, config):
    """Nuclei, cells and compartments of one image at analysis resolution.

    Returns
    -------
    nuclei, cells : (M, N) ndarray of int32
    codes : (M, N) ndarray of uint8
    exposed_fraction : (n + 1,) ndarray of float64
    """
    nuclei = segment.detect_nuclei(hematoxylin, mpp=mpp, params=_nucleus_params(config))
    cells = segment.expand_cells(nuclei, mpp=mpp, expansion_um=config["cell_expansion_um"])
    codes, exposed = segment.compartments(cells, nuclei, mpp=mpp, band_um=config["membrane_band_um"],
                                          capture_um=config["membrane_capture_um"])
    return nuclei, cells, codes, exposed


def block_ids(x_um, y_um, block_um):
    """Integer id of the ``block_um`` square block holding each point (row-major)."""
    rows = np.floor(np.asarray(y_um) / block_um).astype(np.int64)
    cols = np.floor(np.asarray(x_um) / block_um).astype(np.int64)
    return rows * (1 << 20) + cols


def measure_chunk(info, chunk, *, config):
    """Pixels to per-cell measurements for one chunk of a slide (no scoring thresholds).

    Parameters
    ----------
    info : dict
        From :func:`slide_info`.
    chunk : str
        A chunk id from ``info["chunks"]`` (one chunk per image for now).
    config : dict
        Effective configuration.

    Returns
    -------
    cells : pandas.DataFrame
        One row per cell: identifiers, positions, areas, compartment DAB means (and SDs
        and alternative-background twins), sector means, exposed fraction, ``block_id``,
        ``in_roi``.
    hist : (200, 800) ndarray of int64
        Joint hematoxylin x DAB histogram of the pixels of in-scope cells (see
        :func:`measure.measure_cells`).
    """
    if chunk not in info["chunks"]:
        raise ValueError(f"chunk {chunk!r} is not one of {info['chunks']!r} of slide {info['slide_id']}")
    box = tiling.Chunk.from_json(info["chunk_boxes"][info["chunks"].index(chunk)])
    grid = grid_from_info(info)
    with io.open_slide(info["path"]) as reader:
        rgb = grid_module.read_box(reader, grid, box.read)
    mpp = grid.mpp
    tables = stains.concentration_tables(info["i0"], np.asarray(info["stain_matrix"]))
    # The alternative I0 / stain choice (DESIGN 5): default I0 and the default stain vectors.
    alt_i0 = (float(config["default_i0"]),) * 3
    alt_matrix = stains.stain_matrix(config["stains"]["hematoxylin"], config["stains"]["dab"])
    alt_dab = stains.concentration_tables(alt_i0, alt_matrix)[stains.DAB]
    hematoxylin = deconvolve_hematoxylin(rgb, tables)  # the DAB plane is not needed here
    # Cells are not restricted to the tissue mask: pale stroma can fall below the tissue
    # threshold, and a nucleus is found on its own hematoxylin signal anyway.
    nuclei, cells, codes, exposed = segment_cells(hematoxylin, mpp=mpp, config=config)
    n = int(nuclei.max())
    rows, cols, nucleus_px, axis_ratio = measure.nucleus_shape(nuclei, n)
    # A cell belongs to the chunk whose core holds its nucleus centroid (DESIGN section 6).
    owned = np.zeros(n + 1, dtype=bool)
    owned[1:] = tiling.in_core(rows[1:], cols[1:], box)
    in_roi = owned.copy()
    roi_mask = _roi_mask(info, box.read, grid.to_level0)
    if roi_mask is not None and n:
        in_roi[1:] &= roi_mask[np.round(rows[1:]).astype(int), np.round(cols[1:]).astype(int)]
    stats, hist = measure_cells(
        rgb, cells, codes, n_cells=n, tables=tables, alt_dab_table=alt_dab,
        centroid_row=rows, centroid_col=cols, in_scope=in_roi,
    )
    keep = owned[1:]
    f = grid.to_level0
    x = (cols[1:][keep] + box.read[1] + 0.5) * f
    y = (rows[1:][keep] + box.read[0] + 0.5) * f
    x_um, y_um = x * grid.native_mpp, y * grid.native_mpp
    # Every cell pixel is in one compartment (the ring pooled into cytoplasm): no bincount pass.
    cell_px = stats[[f"n_{name}" for name in measure.COMPARTMENT_NAMES]].to_numpy().sum(axis=1)
    table = _base_table(
        cell_id=np.flatnonzero(keep).astype(np.int64) + 1 + int(chunk) * _CELL_ID_STRIDE,
        x=x, y=y, x_um=x_um, y_um=y_um,
        nucleus_area_um2=nucleus_px[1:][keep] * mpp**2,
        nucleus_axis_ratio=axis_ratio[1:][keep],
        cell_area_um2=cell_px[keep] * mpp**2,
        membrane_exposed_fraction=exposed[1 : n + 1][keep] if n else np.empty(0),
        block_id=block_ids(x_um, y_um, config["intervals"]["block_um"]),
        in_roi=in_roi[1:][keep],
    )
    return pd.concat([table, stats[keep].reset_index(drop=True)], axis=1), hist


def _with_alt_values(measurements):
    swapped = measurements.copy()
    for name in _ALT_COLUMNS:
        swapped[name] = measurements[f"{name}_alt"]
    return swapped


def _classes(measurements, config, thresholds):
    return score.assign_classes(
        measurements, thresholds=thresholds, class_rule=config["class_rule"],
        compartments=tuple(config["compartments"]), exposed_max=config["membrane_exposed_max"],
    )


def _count_rows(classes, blocks, *, variant, measure):
    counts = score.count_classes(classes, blocks)
    counts = counts.rename_axis("block_id").reset_index()
    counts.insert(0, "measure", measure)
    counts.insert(0, "variant", variant)
    return counts


def merge_slide(info, measurements, hists, *, config):
    """Apply thresholds: per-cell classes, block class counts per variant, slide summary.

    Parameters
    ----------
    info : dict
        From :func:`slide_info`.
    measurements : pandas.DataFrame
        Concatenated outputs of :func:`measure_chunk` for the slide's chunks.
    hists : sequence of (200, 800) ndarray
        Pixel histograms of the chunks.
    config : dict

    Returns
    -------
    cells : pandas.DataFrame
        The per-cell table of DESIGN section 4 (contract columns first).
    blocks : pandas.DataFrame
        Long table ``slide_id, variant, measure, block_id, n0..n3`` of scored cells.
    summary : dict
        The slide's row for :mod:`cxcr4score.eligibility` (without the pixel histogram,
        which is returned in ``summary["pixel_hist"]`` as nested lists).
    """
    thresholds = np.asarray(config["thresholds"], dtype=np.float64)
    tolerance = config["eligibility"]["threshold_tolerance"]
    classified = _classes(measurements, config, thresholds)
    classified["cell_type"] = celltype.classify_cell_types(measurements)
    in_region = classified["in_roi"].to_numpy(bool)
    by_morphology = config["tumour_cells"] == "morphology"
    scored = in_region & ((classified["cell_type"] == "tumour").to_numpy() if by_morphology else True)
    classified["scored"] = scored
    immune = in_region & (classified["cell_type"] == "immune").to_numpy()
    blocks = classified["block_id"].to_numpy()[scored]
    parts = [_count_rows(classified["class"].to_numpy()[scored], blocks, variant="nominal", measure="class")]
    for name in _COMPARTMENT_MEASURES:
        parts.append(_count_rows(classified[name].to_numpy()[scored], blocks, variant="nominal", measure=name))
    for variant, shift in (("thresholds_minus", -tolerance), ("thresholds_plus", tolerance)):
        shifted = _classes(measurements, config, thresholds + shift)["class"].to_numpy()[scored]
        parts.append(_count_rows(shifted, blocks, variant=variant, measure="class"))
    if info["i0_source"] != "default" or info["stain_source"] == "estimated":
        alt = _classes(_with_alt_values(measurements), config, thresholds)["class"].to_numpy()[scored]
        parts.append(_count_rows(alt, blocks, variant="alt_i0", measure="class"))
    block_table = pd.concat(parts, ignore_index=True)
    block_table.insert(0, "slide_id", info["slide_id"])

    extra = [c for c in classified.columns if c not in CELL_COLUMNS and c not in SECTOR_COLUMNS]
    cells = classified[list(CELL_COLUMNS) + extra]
    joint = np.sum(hists, axis=0) if len(hists) else measure.empty_histogram()
    hist = measure.split_by_hematoxylin(joint, config["pixel_hematoxylin_min"])
    qc_status, qc_messages = info["qc_status"], [info["qc_message"]] if info["qc_message"] else []
    if info["roi"] and qc_status != "failed" and not in_region.any():
        qc_status = "warning"
        qc_messages.append(f"the ROI holds none of the {len(cells)} detected cells")
    metrics = {}
    if "pixel_qc" in info:  # not for a slide that could not be read (failed_info)
        pixel_qc = {k: v for k, v in info["pixel_qc"].items() if k != "focus_scores"}
        blurred = qc_metrics.blurred_share(info["pixel_qc"]["focus_scores"], min_sharpness=config["qc"]["focus_min_sharpness"])
        metrics = {"tissue_mm2": info["tissue_mm2"], "tumour_cells": float(scored.sum()), "blurred_tiles": blurred,
                   **pixel_qc, "stroma_dab": qc_metrics.stroma_dab(classified[in_region])}
        metric_status, metric_messages = qc_metrics.evaluate(metrics, config["qc"])
        qc_status = max(qc_status, metric_status, key=_QC_ORDER.index)
        qc_messages += metric_messages
    immune_classes = classified["class"].to_numpy()[immune]
    summary = {
        **{k: info[k] for k in ("slide_id", "patient_id", "path", "mpp", "tissue_mm2", "stain_vectors",
                                "stain_source")},
        "qc_status": qc_status,
        "qc_message": "; ".join(qc_messages),
        "i0": ",".join(f"{v:.1f}" for v in info["i0"]),
        "i0_source": info["i0_source"],
        "has_roi": bool(info["roi"]),
        "tumour_source": "roi" if info["roi"] else ("morphology" if by_morphology else "all_cells"),
        "n_cells_detected": int(len(cells)),
        # CXCR4 on lymphocytes, reported apart from the tumour score
        "n_immune_cells": int(immune.sum()),
        "pct_immune_positive": float(100 * np.mean(immune_classes >= 1)) if immune.any() else float("nan"),
        "pixel_hist": np.asarray(hist, dtype=np.int64).tolist(),
        **{f"qc_{name}": value for name, value in metrics.items() if name != "tissue_mm2"},
        **{k: info.get(k, "") for k in ("stain_dab_fraction", "stain_notes")},
    }
    return cells, block_table, summary


def failed_info(*, slide_id, patient_id="", path="", roi_path="", message):
    """The :func:`slide_info` record of a slide that could not be used (``qc_status`` failed)."""
    return {
        "slide_id": slide_id, "patient_id": patient_id, "path": str(path), "roi": str(roi_path or ""),
        "mpp": float("nan"), "mpp_source": "", "analysis_mpp": float("nan"), "shape": [0, 0],
        "tissue_mm2": 0.0, "i0": [float("nan")] * 3, "i0_source": "", "stain_vectors": "",
        "stain_source": "", "chunks": [], "qc_status": "failed", "qc_message": message,
        "cxcr4score_version": __version__,
    }


def _base_table(**columns):
    return pd.DataFrame({name: columns[name] for name in (
        "cell_id", "x", "y", "x_um", "y_um", "nucleus_area_um2", "nucleus_axis_ratio", "cell_area_um2",
        "membrane_exposed_fraction", "block_id", "in_roi")})


def empty_measurements():
    """The measurement table of a slide without cells (the columns of :func:`measure_chunk`)."""
    empty = np.empty(0)
    base = _base_table(cell_id=empty.astype(np.int64), x=empty, y=empty, x_um=empty, y_um=empty,
                       nucleus_area_um2=empty, nucleus_axis_ratio=empty, cell_area_um2=empty,
                       membrane_exposed_fraction=empty,
                       block_id=empty.astype(np.int64), in_roi=empty.astype(bool))
    return pd.concat([base, measure.empty_table()], axis=1)


def qc_slide(info, cells, *, config):
    """The QC picture of a slide (see :func:`cxcr4score.qc.qc_picture`)."""
    title = f"{info['slide_id']}  QC {info['qc_status']}"
    if info["qc_message"]:
        title += f": {info['qc_message']}"
    blank = np.full((200, 200, 3), 255, np.uint8)
    if info["qc_status"] == "failed":
        return qc.qc_picture(blank, overview_scale=1.0, crop=blank, crop_origin=(0, 0), cell_x=[], cell_y=[],
                             cell_class=[], cell_radius=[], title=title)
    grid = grid_from_info(info)
    f = grid.to_level0
    x, y = cells["x"].to_numpy() / f - 0.5, cells["y"].to_numpy() / f - 0.5
    scored = cells["scored"].to_numpy(bool)
    top, left = qc.densest_window(x, y, grid.shape)
    crop_box = (top, left, min(grid.shape[0], top + qc.CROP_PX), min(grid.shape[1], left + qc.CROP_PX))
    with io.open_slide(info["path"]) as reader:
        overview, overview_mpp = grid_module.read_overview(reader, grid)
        crop = grid_module.read_box(reader, grid, crop_box)
    overview_box = (0, 0, *overview.shape[:2])
    return qc.qc_picture(
        overview, overview_scale=overview_mpp / grid.mpp, crop=crop, crop_origin=(top, left),
        cell_x=x, cell_y=y, cell_class=np.where(scored, cells["class"].to_numpy(int), -1),
        cell_radius=np.sqrt(cells["cell_area_um2"].to_numpy() / np.pi) / grid.mpp,
        tissue_mask=_tissue(overview, overview_mpp, config),
        roi_mask=_roi_mask(info, overview_box, overview_mpp / grid.native_mpp),
        title=title,
    )


def score_slide(path, *, slide_id, patient_id="", sheet_mpp="", roi_path="", config):
    """All per-slide stages in one call (the ``cxcr4score score`` path).

    Returns
    -------
    info : dict
    cells : pandas.DataFrame
    blocks : pandas.DataFrame
    summary : dict
    """
    info = slide_info(path, slide_id=slide_id, patient_id=patient_id, sheet_mpp=sheet_mpp,
                      roi_path=roi_path, config=config)
    parts = [measure_chunk(info, chunk, config=config) for chunk in info["chunks"]]
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
    extra_names = [c for c in ("n_immune_cells", "pct_immune_positive", "tumour_source", "i0_source",
                               "n_cells_detected", "has_roi", "stain_dab_fraction", "stain_notes") if c in slides]
    extra_names += [c for c in slides.columns if c.startswith("qc_") and c not in SLIDES_TAIL]
    return pd.concat([head, scores.drop(columns="slide_id"), tail, slides[extra_names].reset_index(drop=True)], axis=1)
