"""Accuracy benchmark (``cxcr4score bench accuracy``).

For each named generator configuration (:mod:`cxcr4score.synthetic_cohort`) a small cohort of
synthetic patients is written to disk, every tile is scored through the workflow's own code
path (:func:`cxcr4score.pipeline.score_slide` with the default configuration) and each
patient is called by :func:`cxcr4score.eligibility.patient_eligibility`, as the workflow's
eligibility step does. Detected tumour cells are matched to truth tumour cells within 4 um.
The ``held_out`` configuration, never used for tuning, is judged against the targets.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from .. import __version__, eligibility, pipeline, score, synthetic, synthetic_cohort
from .. import config as cx_config

#: A detected cell matches a truth cell when their nucleus centroids are this close (um).
MATCH_UM = 4.0

#: Targets judged on the held-out row: column, comparison, bound (issue 4).
TARGETS = (
    ("tumour_f1", ">=", 0.95),
    ("class_kappa", ">=", 0.90),
    ("membrane_r", ">=", 0.95),
    ("h_score_mae", "<=", 10.0),
    ("wrong_outside_ci", "<=", 0),
    ("lymphocyte_only_eligible", "<=", 0),
)

#: Columns of the table returned by :func:`accuracy`.
COLUMNS = (
    "config", "held_out", "tiles", "patients", "tumour_precision", "tumour_recall", "tumour_f1",
    "class_kappa", "membrane_r", "cytoplasm_r", "h_score_mae", "h_score_max_error", "call_agreement", "wrong_calls",
    "wrong_outside_ci", "lymphocyte_only_patients", "lymphocyte_only_eligible",
)  # fmt: skip


def _kappa(truth, predicted, n_classes=4):
    """Quadratic-weighted Cohen's kappa (NaN when there is no disagreement to expect)."""
    observed = np.zeros((n_classes, n_classes))
    np.add.at(observed, (np.asarray(truth, int), np.asarray(predicted, int)), 1)
    if observed.sum() == 0:
        return float("nan")
    expected = np.outer(observed.sum(1), observed.sum(0)) / observed.sum()
    i, j = np.indices((n_classes, n_classes))
    weights = (i - j) ** 2 / (n_classes - 1) ** 2
    chance = (weights * expected).sum()
    return float(1 - (weights * observed).sum() / chance) if chance > 0 else float("nan")


def _pearson(x, y):
    """Pearson r over the pairs where both values are finite (NaN with fewer than 3 or no spread)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(x[ok], y[ok])[0, 1])


def _match(cells, truth, mpp):
    """Indices (truth, cells) of one-to-one pairs whose centroids lie within :data:`MATCH_UM`."""
    if len(cells) == 0 or len(truth) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    distance, index = cKDTree(cells[["x", "y"]].to_numpy()).query(
        truth[["x", "y"]].to_numpy(), distance_upper_bound=MATCH_UM / mpp
    )
    matched = np.isfinite(distance)
    # One detection may be the nearest of two truth cells: keep the closer pair only.
    order = np.argsort(distance[matched])
    truth_idx = np.flatnonzero(matched)[order]
    _, first = np.unique(index[truth_idx], return_index=True)
    truth_idx = truth_idx[first]
    return truth_idx, index[truth_idx]


def _tile_pairs(cells, truth, mpp):
    """Matched tumour cells of one tile: counts and the (truth, ours) values compared."""
    ours = cells[cells["cell_type"] == "tumour"].reset_index(drop=True)
    true = truth[truth["cell_type"] == "tumour"].reset_index(drop=True)
    t_idx, c_idx = _match(ours, true, mpp)
    t, c = true.iloc[t_idx], ours.iloc[c_idx]
    pairs = {f"{side}_{col}": frame[col].to_numpy()
             for side, frame in (("truth", t), ("ours", c))
             for col in ("class", "dab_membrane", "dab_cytoplasm")}
    return {"n_ours": len(ours), "n_truth": len(true), "n_matched": len(t_idx)}, pairs


def _truth_patient(truth, cfg):
    """Truth scores of a patient's pooled tumour cells and the call the default rule gives them."""
    tumour = truth[truth["cell_type"] == "tumour"]
    summary = score.summarize_counts(np.bincount(tumour["class"].to_numpy(int), minlength=4))
    rule = cfg["eligibility"]
    value = summary[rule["metric"]]
    call = ("inadequate" if summary["n_cells"] < rule["min_cells"]
            else "eligible" if value >= rule["cutoff"] else "not_eligible")
    immune = truth[truth["cell_type"] == "immune"]
    return {"truth_call": call, "truth_value": value, "truth_h_score": summary["h_score"],
            "truth_n_cells": summary["n_cells"],
            "lymphocyte_only": bool((tumour["class"] == 0).all() and (immune["class"] > 0).any())}


def _score_tiles(slides, folder, cfg):
    """Write and score every tile; returns per-tile counts, pairs, summaries, blocks and truths."""
    counts, pairs, summaries, blocks, truths = [], [], [], [], []
    for slide in slides:
        tile = synthetic.generate_tile(slide.spec, seed=slide.seed)
        path = synthetic.write_tile(tile, Path(folder) / f"{slide.slide_id}.tif", jpeg_quality=slide.jpeg_quality)
        _, cells, block_table, summary = pipeline.score_slide(path, slide_id=slide.slide_id,
                                                              patient_id=slide.patient_id, config=cfg)
        count, pair = _tile_pairs(cells, tile.truth, tile.mpp)
        counts.append(count)
        pairs.append(pair)
        summaries.append(summary)
        blocks.append(block_table)
        truths.append(tile.truth.assign(patient_id=slide.patient_id))
    return counts, pairs, summaries, blocks, truths


def _patients(summaries, blocks, truths, cfg):
    """Per patient: our call and scores (the real eligibility code) beside the truth's."""
    slides = pd.DataFrame(summaries).assign(collected="")
    calls = eligibility.patient_eligibility(slides, pd.concat(blocks, ignore_index=True), cfg,
                                            version=__version__)
    truth = pd.concat(truths, ignore_index=True)
    rows = []
    for row in calls.itertuples():
        metric = row.metric
        low, high = getattr(row, f"{metric}_ci_low"), getattr(row, f"{metric}_ci_high")
        true = _truth_patient(truth[truth["patient_id"] == row.patient_id], cfg)
        outside = not low <= true["truth_value"] <= high  # NaN bounds (no cells) count as outside
        rows.append({"patient_id": row.patient_id, "call": row.call, "h_score": row.h_score,
                     "value": getattr(row, metric), "ci_low": low, "ci_high": high, **true,
                     "truth_outside_ci": outside})
    return pd.DataFrame(rows)


def _config_row(name, counts, pairs, patients):
    """One table row from a configuration's tiles and patients."""
    n_ours, n_truth, n_matched = (sum(c[k] for c in counts) for k in ("n_ours", "n_truth", "n_matched"))
    pooled = {k: np.concatenate([p[k] for p in pairs]) for k in pairs[0]}
    precision = n_matched / n_ours if n_ours else float("nan")
    recall = n_matched / n_truth if n_truth else float("nan")
    wrong = patients["call"] != patients["truth_call"]
    definite = patients["call"].isin(["eligible", "not_eligible"])
    lymph = patients["lymphocyte_only"]
    return {
        "config": name, "held_out": name == synthetic_cohort.HELD_OUT, "tiles": len(counts),
        "patients": len(patients), "tumour_precision": precision, "tumour_recall": recall,
        "tumour_f1": 2 * precision * recall / (precision + recall) if precision + recall else float("nan"),
        "class_kappa": _kappa(pooled["truth_class"], pooled["ours_class"]),
        "membrane_r": _pearson(pooled["truth_dab_membrane"], pooled["ours_dab_membrane"]),
        "cytoplasm_r": _pearson(pooled["truth_dab_cytoplasm"], pooled["ours_dab_cytoplasm"]),
        "h_score_mae": float(np.mean(np.abs(patients["h_score"] - patients["truth_h_score"]))),
        "h_score_max_error": float(np.max(np.abs(patients["h_score"] - patients["truth_h_score"]))),
        "call_agreement": float(np.mean(~wrong)),
        "wrong_calls": int((wrong & definite).sum()),
        "wrong_outside_ci": int((wrong & patients["truth_outside_ci"]).sum()),
        "lymphocyte_only_patients": int(lymph.sum()),
        "lymphocyte_only_eligible": int((lymph & (patients["call"] == "eligible")).sum()),
    }


def accuracy(*, patients=6, tiles_per_patient=2, size=1024, configs=None, tmp_dir=None, progress=None):
    """Score synthetic cohorts of each generator configuration and compare with their truth.

    Parameters
    ----------
    patients, tiles_per_patient : int, optional
        Cohort size per configuration.
    size : int, optional
        Tile side in pixels at the analysis pixel size 0.5 um/px (a 0.25 um/px tile covers the
        same field with twice the pixels per side).
    configs : sequence of str, optional
        Configuration names (default: all, ``held_out`` last).
    tmp_dir : str or Path, optional
        Where the tiles are written (a temporary folder inside it, removed afterwards).
    progress : callable, optional
        Called with a message after each configuration.

    Returns
    -------
    table : pandas.DataFrame
        One row per configuration, columns :data:`COLUMNS`: tumour-cell detection precision,
        recall and F1 (detected cells typed tumour against truth tumour cells, matched within
        4 um), quadratic-weighted kappa of the classes and Pearson r of membrane and cytoplasm
        DAB means over matched tumour cells, patient H-score MAE (reported vs truth, 0-300) and
        the worst patient's absolute error,
        the fraction of patients whose call equals the truth call, definite calls
        (``eligible``/``not_eligible``) that differ from it, wrong calls whose truth value lies
        outside our interval, and patients whose only positive cells are lymphocytes, and how
        many of them were called ``eligible``.
    patients : pandas.DataFrame
        One row per patient: our call, value and interval beside the truth.

    Raises
    ------
    ValueError
        For an unknown configuration name.

    Notes
    -----
    The truth call applies the default rule to the truth classes of the patient's tumour
    cells: ``inadequate`` below ``min_cells``, else ``eligible`` when the metric is at or
    above the cutoff, else ``not_eligible``. An ``indeterminate`` call is counted as not
    agreeing, and as a wrong call outside the interval only if the interval misses the truth.
    """
    names = list(synthetic_cohort.CONFIGURATIONS) if configs is None else list(configs)
    unknown = [n for n in names if n not in synthetic_cohort.CONFIGURATIONS]
    if unknown:
        raise ValueError(f"unknown generator configuration(s) {', '.join(unknown)}; "
                         f"known: {', '.join(synthetic_cohort.CONFIGURATIONS)}")
    names.sort(key=lambda n: n == synthetic_cohort.HELD_OUT)
    cfg = cx_config.default_config()
    rows, tables = [], []
    with tempfile.TemporaryDirectory(dir=tmp_dir) as folder:
        for name in names:
            slides = synthetic_cohort.cohort(name, patients=patients, tiles_per_patient=tiles_per_patient,
                                             size_um=size * 0.5)
            counts, pairs, summaries, blocks, truths = _score_tiles(slides, folder, cfg)
            table = _patients(summaries, blocks, truths, cfg).assign(config=name)
            rows.append(_config_row(name, counts, pairs, table))
            tables.append(table)
            if progress is not None:
                progress(f"{name}: {len(slides)} tiles scored")
    return pd.DataFrame(rows, columns=list(COLUMNS)), pd.concat(tables, ignore_index=True)


def judge(row):
    """PASS/MISS of each target (:data:`TARGETS`) on one table row, as ``{column: (value, verdict)}``."""
    verdicts = {}
    for column, op, bound in TARGETS:
        value = row[column]
        ok = value >= bound if op == ">=" else value <= bound
        verdicts[column] = (value, "PASS" if ok else "MISS")
    return verdicts
