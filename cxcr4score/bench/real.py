"""Our cells against a pathologist's points and scored cores (``cxcr4score bench real``).

Every slide of a sheet is scored through the workflow's code path
(:func:`cxcr4score.pipeline.score_slide` with the given configuration). Then:

- **Points** (a pathologist's nuclei, each positive, negative or other, e.g. lymphocytes):
  detected nuclei are matched one to one to the points within :data:`MATCH_UM` (the pairing
  with the most matches, and among those the smallest total distance). Detection recall is
  the share of tumour points (positive and negative) matched; precision the share of detected
  cells in the annotated area (see below) matched to any point; positive / negative agreement (Cohen's kappa) compares our class
  (>= 1+) with the label on matched tumour points; per field, our % positive over the scored
  cells in the annotated area (within :data:`ANNOTATED_UM` of a point: a pathologist often
  marks part of a field only) is set beside the points' (positive / tumour points), with
  Spearman's rho and the mean absolute error over fields. The product's own % positive over
  the whole field is reported beside it (``pct_positive``). Typing: the share of matched
  tumour points whose cell is typed tumour (``typed_tumour``) and of matched ``other`` points
  typed immune (``typed_immune``; on Ki67 fields with lymphocyte points, the lymphocytes).
- **Scored cores** (a sheet column ``ihc_score``, 0-3, e.g. HER2's): the membrane H-score and
  the share of scored cells with a positive membrane beside each core's score, the tissue share
  of the image (is the glass found?) and where I0 came from.

A point file is a CSV or TSV (``slide_id, x, y, label``; x the column and y the row in level-0
pixels) or QuPath GeoJSON point annotations (a file named ``{slide_id}.geojson`` per slide in a
folder, see :func:`cxcr4score.roi.read_points`). Labels: ``positive``, ``negative`` (tumour
nuclei) and anything else (``other``: lymphocytes, stroma), case-insensitive.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize, sparse, stats
from scipy.spatial import cKDTree

from .. import pipeline, qc, roi
from ..errors import InputError
from ..sheets import load_slides
from .accuracy import _kappa
from .concordance import _read_text_table

#: A detected nucleus matches a point within this distance (um).
MATCH_UM = 6.0
#: The annotated area of a field: within this distance (um) of a point.
ANNOTATED_UM = 15.0
#: Point labels; any other label reads as "other".
TUMOUR_LABELS = ("positive", "negative")
#: Sheet column holding a core's score (0, 1+, 2+, 3+ as 0-3).
SCORE_COLUMN = "ihc_score"
#: Share of a core's scored cells with a positive membrane that HER2's definitions use
#: (0: at most 10% of tumour cells stained; 2+: weak to moderate complete staining in more).
MEMBRANE_SHARE_LINE = 10.0
#: Cost of a pair that is not within reach in the assignment (larger than any sum of distances).
_UNREACHABLE = 1e9


def match_points(ours, points, radius):
    """One-to-one pairs of ``ours`` and ``points`` within ``radius``: as many as possible, and
    among those the pairing with the smallest total distance.

    Parameters
    ----------
    ours, points : (N, 2) and (P, 2) array_like of float
        Positions in one unit (e.g. level-0 pixels).
    radius : float
        Largest distance of a pair (inclusive).

    Returns
    -------
    ours_index, point_index : (K,) ndarray of int64
        Matched pairs, sorted by ``point_index``.

    Notes
    -----
    The pairs within reach form a bipartite graph; each connected component is solved as a
    rectangular assignment (Hungarian method, ``scipy.optimize.linear_sum_assignment``) in
    which an unreachable pair costs more than all reachable distances together, so the count
    of matches is maximised first. Greedy nearest-first matching can lose a match where two
    points compete for one nucleus.
    """
    ours = np.asarray(ours, np.float64).reshape(-1, 2)
    points = np.asarray(points, np.float64).reshape(-1, 2)
    empty = np.zeros(0, np.int64)
    if len(ours) == 0 or len(points) == 0:
        return empty, empty
    pairs = cKDTree(ours).sparse_distance_matrix(cKDTree(points), radius, output_type="ndarray")
    if len(pairs) == 0:
        return empty, empty
    i, j, d = pairs["i"], pairs["j"], pairs["v"]
    n = len(ours)
    graph = sparse.coo_matrix((np.ones(len(i)), (i, n + j)), shape=(n + len(points),) * 2)
    _, component = sparse.csgraph.connected_components(graph, directed=False)
    matched_ours, matched_points = [], []
    for c in np.unique(component[i]):
        keep = component[i] == c
        rows, row_index = np.unique(i[keep], return_inverse=True)
        cols, col_index = np.unique(j[keep], return_inverse=True)
        cost = np.full((len(rows), len(cols)), _UNREACHABLE)
        cost[row_index, col_index] = d[keep]
        r, k = optimize.linear_sum_assignment(cost)
        reachable = cost[r, k] < _UNREACHABLE
        matched_ours.append(rows[r[reachable]])
        matched_points.append(cols[k[reachable]])
    ours_index, point_index = np.concatenate(matched_ours), np.concatenate(matched_points)
    order = np.argsort(point_index, kind="stable")
    return ours_index[order].astype(np.int64), point_index[order].astype(np.int64)


def read_point_table(path, slide_ids):
    """Points of the given slides from a CSV / TSV file or a folder of QuPath GeoJSON files.

    Returns
    -------
    pandas.DataFrame
        ``slide_id, x, y, label`` (label lower-case; ``other`` for labels that are not
        positive or negative).

    Raises
    ------
    InputError
        The file is missing or malformed, or names no slide of the sheet.
    """
    path = Path(path)
    if path.is_dir():
        frames = [roi.read_points(path / f"{sid}.geojson").assign(slide_id=sid)
                  for sid in slide_ids if (path / f"{sid}.geojson").is_file()]
        if not frames:
            raise InputError([f"{path}: no {{slide_id}}.geojson file for any slide of the sheet"])
        table = pd.concat(frames, ignore_index=True)
    elif path.is_file():
        table = _read_csv_points(path)
    else:
        raise InputError([f"{path}: point file not found"])
    table["label"] = table["label"].astype(str).str.strip().str.lower()
    table.loc[~table["label"].isin(TUMOUR_LABELS), "label"] = "other"
    if not table["slide_id"].isin(slide_ids).any():
        raise InputError([f"{path}: none of its slide_ids is in the sheet"])
    return table[["slide_id", "x", "y", "label"]]


def _read_csv_points(path):
    table = _read_text_table(path, "point file")
    missing = [c for c in ("slide_id", "x", "y", "label") if c not in table.columns]
    if missing:
        raise InputError([f"{path}: missing column(s) {', '.join(missing)} (need slide_id, x, y, label)"])
    for column in ("x", "y"):
        values = pd.to_numeric(table[column], errors="coerce")
        bad = np.flatnonzero(~np.isfinite(values.to_numpy(np.float64)))
        if bad.size:
            raise InputError([f"{path} row {bad[0] + 1}: {column} {table[column].iloc[bad[0]]!r} is not a number"])
        table[column] = values.astype(np.float64)
    return table


def point_metrics(cells, points, *, mpp):
    """Detection and positive / negative agreement of one slide's cells with its points.

    Parameters
    ----------
    cells : pandas.DataFrame
        The slide's cell table (``x``, ``y`` in level-0 pixels, ``class``, ``cell_type``,
        ``scored``).
    points : pandas.DataFrame
        ``x``, ``y`` (level-0 pixels) and ``label`` of the slide's points.
    mpp : float
        Level-0 pixel size.

    Returns
    -------
    row : dict
        Counts and ratios of the slide (see the module notes).
    pairs : pandas.DataFrame
        One row per point: ``label``, ``matched``, our ``class`` (-1 unmatched) and
        ``cell_type`` ("" unmatched).
    """
    cell_xy, point_xy = cells[["x", "y"]].to_numpy(np.float64), points[["x", "y"]].to_numpy(np.float64)
    ours, where = match_points(cell_xy, point_xy, MATCH_UM / mpp)
    labels = points["label"].to_numpy()
    classes = np.full(len(points), -1, np.int64)
    classes[where] = cells["class"].to_numpy(np.int64)[ours]
    types = np.full(len(points), "", dtype=object)
    types[where] = cells["cell_type"].to_numpy()[ours]
    tumour = np.isin(labels, TUMOUR_LABELS)
    matched = classes >= 0
    positive = labels == "positive"
    n_tumour = int(tumour.sum())
    near = np.zeros(len(cells), bool)
    if len(cells) and len(points):
        distance, _ = cKDTree(point_xy).query(cell_xy, distance_upper_bound=ANNOTATED_UM / mpp)
        near = np.isfinite(distance)
    row = {
        "n_cells": len(cells), "n_cells_annotated": int(near.sum()), "n_points": len(points),
        "n_tumour_points": n_tumour,
        "recall": _ratio(int((matched & tumour).sum()), n_tumour),
        "precision": _ratio(len(ours), int(near.sum())),
        "recall_positive": _ratio(int((matched & positive).sum()), int(positive.sum())),
        "recall_negative": _ratio(int((matched & (labels == "negative")).sum()), int((labels == "negative").sum())),
        "truth_pct_positive": 100.0 * _ratio(int(positive.sum()), n_tumour),
    }
    in_area = near & cells["scored"].to_numpy(bool)
    row["n_scored_annotated"] = int(in_area.sum())
    row["pct_positive_annotated"] = 100.0 * _ratio(int((cells["class"].to_numpy()[in_area] >= 1).sum()), int(in_area.sum()))
    on = matched & tumour
    row["kappa"] = _kappa(positive[on].astype(int), (classes[on] >= 1).astype(int), n_classes=2)
    row["agreement"] = _ratio(int(((classes[on] >= 1) == positive[on]).sum()), int(on.sum()))
    other = matched & ~tumour
    row["typed_tumour"] = _ratio(int((types[on] == "tumour").sum()), int(on.sum()))
    row["typed_immune"] = _ratio(int((types[other] == "immune").sum()), int(other.sum()))
    pairs = pd.DataFrame({"label": labels, "matched": matched, "class": classes, "cell_type": types})
    return row, pairs


def _ratio(a, b):
    return a / b if b else float("nan")


def _f1(precision, recall):
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else float("nan")


def core_metrics(cells, summary, info):
    """Membrane reading of one scored core: membrane H-score (``summary``'s scores), the share
    of scored cells with a positive membrane, and the tissue share of the image."""
    scored = cells[cells["scored"]]
    area_mm2 = info.shape[0] * info.shape[1] * info.analysis_mpp**2 / 1e6
    return {
        "pct_membrane_positive": 100.0 * _ratio(int((scored["class_membrane"] >= 1).sum()), len(scored)),
        "tissue_share": _ratio(info.tissue_mm2, area_mm2),
        "i0_source": info.i0_source,
        "i0": summary["i0"],
    }


def run(sheet, *, config, points=None, out=None, progress=None):
    """Score every slide of ``sheet`` and compare with its points and core scores.

    Parameters
    ----------
    sheet : str or path-like
        A sample sheet or folder (as the workflow's ``slides``); a column ``ihc_score`` marks
        scored cores.
    config : dict
        Effective configuration.
    points : str or path-like, optional
        Point annotations (see the module notes).
    out : path-like, optional
        Folder for each slide's QC picture and, with points, its matched points
        (``{slide_id}.points.csv``).
    progress : callable, optional
        Called with a line per slide.

    Returns
    -------
    dict
        ``slides`` (one record per slide), ``points`` (summary over fields with points) and
        ``cores`` (summary over scored cores); JSON-serialisable.
    """
    slides = load_slides(sheet)
    _check_scores(sheet, slides)
    truth = read_point_table(points, set(slides["slide_id"])) if points else None
    notes = _point_notes(truth, slides["slide_id"]) if truth is not None else []
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
    rows, summaries, blocks, matched = [], [], [], []
    for slide in slides.to_dict("records"):
        info, cells, block_table, summary = pipeline.score_slide(
            slide["path"], slide_id=slide["slide_id"], patient_id=slide["patient_id"], sheet_mpp=slide["mpp"],
            roi_path=slide["roi"], config=config)
        summary["collected"] = ""
        summaries.append(summary)
        blocks.append(block_table)
        row = {"slide_id": slide["slide_id"]}
        if truth is not None and (truth["slide_id"] == slide["slide_id"]).any():
            mine = truth[truth["slide_id"] == slide["slide_id"]]
            metrics, pairs = point_metrics(cells, mine, mpp=info.mpp)
            row.update(metrics)
            matched.append(pairs[pairs["matched"]])
            if out is not None:
                pairs.to_csv(Path(out) / f"{slide['slide_id']}.points.csv", index=False)
        if str(slide.get(SCORE_COLUMN, "")).strip():
            row[SCORE_COLUMN] = int(float(slide[SCORE_COLUMN]))
            row.update(core_metrics(cells, summary, info))
        if out is not None:
            qc.write_png(pipeline.qc_slide(info, summary, cells, config=config), Path(out) / f"{slide['slide_id']}.png")
        rows.append(row)
        if progress:
            progress(f"{slide['slide_id']}: {len(cells):,} cells")
    scores = pipeline.slides_table(pd.DataFrame(summaries), pd.concat(blocks, ignore_index=True), config)
    columns = ["slide_id", "n_cells", "pct_positive", "h_score", "h_score_membrane", "qc_status"]
    table = pd.DataFrame(rows).merge(scores[columns].rename(columns={"n_cells": "n_scored"}), on="slide_id")
    pooled = pd.concat(matched, ignore_index=True) if matched else None
    return {"slides": _records(table), "points": _point_summary(table, pooled), "cores": _core_summary(table),
            "notes": notes}


def _check_scores(sheet, slides):
    """InputError naming each row whose ``ihc_score`` is given but not 0, 1, 2 or 3."""
    if SCORE_COLUMN not in slides:
        return
    bad = [f"{Path(sheet).name} row {number}: {SCORE_COLUMN} {value!r} is not 0, 1, 2 or 3"
           for number, value in enumerate(slides[SCORE_COLUMN], start=1)
           if str(value).strip() and str(value).strip() not in ("0", "1", "2", "3")]
    if bad:
        raise InputError(bad)


def _point_notes(truth, slide_ids):
    """What the points and the sheet do not share, in words (reported, then left out)."""
    unknown = sorted(set(truth["slide_id"]) - set(slide_ids))
    without = sorted(set(slide_ids) - set(truth["slide_id"]))
    notes = []
    if unknown:
        notes.append(f"points of slides not in the sheet, left out: {', '.join(unknown)}")
    if without:
        notes.append(f"slides without points (scored, not compared): {', '.join(without)}")
    return notes


def _point_summary(table, pooled):
    if pooled is None:
        return {}
    fields = table[table["n_tumour_points"].notna()]
    tumour = pooled[pooled["label"].isin(TUMOUR_LABELS)]
    other = pooled[~pooled["label"].isin(TUMOUR_LABELS)]
    precision = _ratio(float((fields["precision"] * fields["n_cells_annotated"]).sum()),
                       float(fields["n_cells_annotated"].sum()))
    recall = _ratio(float((fields["recall"] * fields["n_tumour_points"]).sum()), float(fields["n_tumour_points"].sum()))
    ours, theirs = fields["pct_positive_annotated"].to_numpy(float), fields["truth_pct_positive"].to_numpy(float)
    ok = np.isfinite(ours) & np.isfinite(theirs)
    rho = float(stats.spearmanr(ours[ok], theirs[ok]).statistic) if ok.sum() >= 3 else float("nan")
    return {
        "fields": len(fields), "tumour_points": int(fields["n_tumour_points"].sum()),
        "recall": recall, "precision": precision, "f1": _f1(precision, recall),
        "kappa": _kappa((tumour["label"] == "positive").astype(int), (tumour["class"] >= 1).astype(int), n_classes=2),
        "agreement": float(((tumour["class"] >= 1) == (tumour["label"] == "positive")).mean()),
        "typed_tumour": float((tumour["cell_type"] == "tumour").mean()) if len(tumour) else float("nan"),
        "typed_immune": float((other["cell_type"] == "immune").mean()) if len(other) else float("nan"),
        "other_points_matched": len(other),
        "pct_positive_spearman": rho,
        "pct_positive_mae": float(np.mean(np.abs(ours[ok] - theirs[ok]))) if ok.any() else float("nan"),
        "pct_positive_bias": float(np.mean(ours[ok] - theirs[ok])) if ok.any() else float("nan"),
    }


def _core_summary(table):
    if SCORE_COLUMN not in table:
        return {}
    cores = table[table[SCORE_COLUMN].notna()]
    score, membrane = cores[SCORE_COLUMN].to_numpy(int), cores["h_score_membrane"].to_numpy(float)
    share = cores["pct_membrane_positive"].to_numpy(float)
    low, high = membrane[score <= 1], membrane[score >= 2]
    return {
        "cores": len(cores),
        "membrane_h_score_spearman": (float(stats.spearmanr(score, membrane).statistic)
                                      if len(cores) >= 3 and np.ptp(score) > 0 else float("nan")),
        "every_2plus_above_every_0_1plus": bool(len(low) and len(high) and high.min() > low.max()),
        "2plus_membrane_positive_at_least_10pct": bool((share[score == 2] >= MEMBRANE_SHARE_LINE).all()),
        "0_membrane_positive_at_most_10pct": bool((share[score == 0] <= MEMBRANE_SHARE_LINE).all()),
        "max_tissue_share": float(cores["tissue_share"].max()),
    }


def _records(table):
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in table.to_dict("records")]


def format_report(result):
    """The benchmark's tables as text."""
    table = pd.DataFrame(result["slides"]).set_index("slide_id")
    lines = [table.to_string(float_format=lambda v: f"{v:.3f}")] + [f"note: {n}" for n in result["notes"]]
    for name in ("points", "cores"):
        if result[name]:
            lines.append(f"{name}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in result[name].items()))
    return "\n".join(lines)


def _fmt(value):
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def main(args, config):
    """``cxcr4score bench real`` from parsed arguments; prints the tables, returns the result."""
    if args.slides is None:
        raise InputError(["bench real needs --slides (a sample sheet or folder)"])
    return run(args.slides, config=config, points=args.points, out=args.out,
               progress=lambda line: print(line, file=sys.stderr, flush=True))
