"""``cxcr4score calibrate``: fit the thresholds to a pathologist's scores of scored cases.

Reads a results folder (the workflow's, or ``cxcr4score score --out``'s: ``config.effective.yaml``,
``slides.csv`` and ``cells/{slide_id}.parquet``) and a pathologist's file of per-patient (or
per-slide) scores, fits the thresholds on all folds but one and measures agreement on the
held-out fold (:func:`cxcr4score.calibration.cross_validate`), then fits on every case and
writes the calibration record (:mod:`cxcr4score.calibration_record`). No pixel is read again:
the thresholds apply to the cells' stored DAB values.
"""

from __future__ import annotations

import datetime
import hashlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import yaml

from . import __version__, calibration
from . import config as cx_config
from .bench.concordance import _read_text_table, read_truth
from .calibration_record import MEASUREMENT_KEYS, plain, read_record, write_record
from .errors import InputError
from .score import scored_values

#: Cell columns the scored value needs.
_CELL_COLUMNS = ("scored", "dab_nucleus", "dab_cytoplasm", "dab_membrane", "dab_cell", "membrane_exposed_fraction",
                 "membrane_line_sectors")
UNITS = ("patient", "slide")


def read_results(results):
    """The configuration, the slides and each slide's scored values from a results folder.

    Parameters
    ----------
    results : path-like

    Returns
    -------
    config : dict
        ``config.effective.yaml``, keys it lacks (written by an earlier version) at their
        defaults.
    slides : pandas.DataFrame
        ``slide_id, patient_id, qc_status`` of every slide.
    values : dict
        slide_id -> (n,) float64 scored values of its tumour (scored) cells, for the slides
        whose QC did not fail (a failed slide is left out of calls, and so of calibration).

    Raises
    ------
    InputError
        Naming each missing or unreadable file or column.
    """
    results = Path(results)
    config_path = results / "config.effective.yaml"
    if not config_path.is_file():
        raise InputError([f"{config_path} not found: calibrate needs a results folder written by the workflow "
                          "or by cxcr4score score --out (this version or later)"])
    try:
        loaded = yaml.safe_load(config_path.read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError([f"{config_path}: not valid YAML ({' '.join(str(err).split())})"]) from None
    # A key newer than the results took its default in that run (before it existed, the
    # behaviour was the default's), and the record must hold every measurement setting.
    config = cx_config.merge(cx_config.default_config(), loaded)
    slides = _read_text_table(results / "slides.csv", "slides table")
    missing = [c for c in ("slide_id", "patient_id", "qc_status") if c not in slides.columns]
    if missing:
        raise InputError([f"{results / 'slides.csv'}: missing column {c!r}" for c in missing])
    slides = slides[["slide_id", "patient_id", "qc_status"]]
    values, problems, older = {}, [], []
    for slide_id in slides.loc[slides["qc_status"] != "failed", "slide_id"]:
        path = results / "cells" / f"{slide_id}.parquet"
        try:
            lacking = [c for c in _CELL_COLUMNS if c not in pq.read_schema(path).names]
            if lacking:
                older.append((path, lacking))
                continue
            cells = pd.read_parquet(path, columns=list(_CELL_COLUMNS))
        except (OSError, ValueError, KeyError) as err:
            problems.append(f"{path}: cannot read the cells' {', '.join(_CELL_COLUMNS)} "
                            f"({' '.join(str(err).split())[:200]})")
            continue
        cells = cells[cells["scored"].to_numpy(bool)]
        values[slide_id] = scored_values(cells, class_rule=config["class_rule"],
                                         compartments=tuple(config["compartments"]),
                                         exposed_max=config["membrane_exposed_max"])
    if older:
        (first, lacking), n = older[0], len(older)
        problems.insert(0, f"{results}: {n} cells table{'s' if n > 1 else ''} (the first {first}) lack "
                           f"{', '.join(lacking)}: written by an older cxcr4score, whose scored values differ; run "
                           "the workflow again with this version (it remeasures them) and calibrate on its results")
    if problems:
        raise InputError(problems)
    return config, slides.reset_index(drop=True), values


def _units(slides, values, unit):
    """Unit ids, each unit's patient and its pooled scored values (units with a slide whose QC
    did not fail)."""
    usable = slides[slides["slide_id"].isin(values)]
    if unit == "slide":
        ids = usable["slide_id"].tolist()
        return ids, usable["patient_id"].tolist(), [values[s] for s in ids]
    ids = sorted(usable["patient_id"].unique())
    pooled = [np.concatenate([values[s] for s in usable.loc[usable["patient_id"] == p, "slide_id"]]) for p in ids]
    return ids, ids, pooled


def _prior(config, results):
    """The thresholds the fit starts from and is compared with: the results' own, or, for
    results that were themselves calibrated, the thresholds before that calibration (its
    fitted thresholds have seen every case, and would leak into the held-out folds)."""
    if not config.get("calibration"):
        return [float(t) for t in config["thresholds"]], ""
    record, problems = read_record(config["calibration"])
    if problems:
        raise InputError([f"{results} was scored with calibration {config['calibration']}: {problems[0]}"])
    before = record.get("uncalibrated_thresholds")
    if not isinstance(before, list) or len(before) != 3:
        raise InputError([f"{results} was scored with calibration {config['calibration']}, which does not say "
                          "the thresholds before it (uncalibrated_thresholds)"])
    return [float(t) for t in before], str(config["calibration"])


def _choose_measure(truth, measure, path):
    given = [m for m in calibration.MEASURES if m in truth.columns]
    if measure is None:
        if len(given) != 1:
            raise InputError([f"{path}: gives {', '.join(given) or 'none'} of {', '.join(calibration.MEASURES)}; "
                              "choose the one to fit with --measure"])
        return given[0]
    if measure not in given:
        raise InputError([f"{path}: no column {measure!r} to fit"])
    return measure


def _check_whole_scores(truth, path):
    scores = truth["ihc_score"].to_numpy(np.float64)
    bad = np.flatnonzero(np.isfinite(scores) & (scores != np.round(scores)))
    if bad.size:
        raise InputError([f"{path} row {i + 1}: ihc_score {scores[i]:g} is not 0, 1, 2 or 3" for i in bad])


def calibrate(truth_path, results, *, unit="patient", measure=None, folds=5,
              score_share=calibration.SCORE_SHARE):
    """Fit, cross-validate and describe a calibration (nothing is written).

    Parameters
    ----------
    truth_path : path-like
        The pathologist's scores: ``patient_id`` (or ``slide_id`` with ``unit='slide'``) and one
        of ``h_score`` (0-300), ``pct_positive`` (0-100), ``ihc_score`` (0, 1, 2, 3).
    results : path-like
        A results folder (see the module docstring).
    unit : {'patient', 'slide'}
        What the pathologist scored. Slides of one patient stay in one fold.
    measure : str, optional
        The column to fit when the file gives several.
    folds : int
        Cross-validation folds (fewer when there are fewer patients).
    score_share : float
        For ``ihc_score``: the percentage of cells a class must exceed.

    Returns
    -------
    dict
        The calibration record's content (see :mod:`cxcr4score.calibration_record`) with
        ``per_unit`` rows; ``left_out`` lists ids in only one of the two files.

    Raises
    ------
    InputError
        Bad files, no case in both, fewer than 2 patients.
    """
    if unit not in UNITS:
        raise InputError([f"--unit must be one of {', '.join(UNITS)}, got {unit!r}"])
    key = f"{unit}_id"
    truth = read_truth(truth_path, key=key, measures=calibration.MEASURES)
    measure = _choose_measure(truth, measure, truth_path)
    if measure == "ihc_score":
        _check_whole_scores(truth, truth_path)
    config, slides, values = read_results(results)
    ids, groups, pooled = _units(slides, values, unit)
    scores = dict(zip(truth[key], truth[measure]))
    keep = [i for i, uid in enumerate(ids) if np.isfinite(scores.get(uid, np.nan)) and pooled[i].size]
    known = set(slides[key])
    left_out = {"only_truth": sorted(set(truth[key]) - known),
                "qc_failed": sorted((set(truth[key]) & known) - set(ids)),
                "no_score_or_no_cells": [ids[i] for i in range(len(ids)) if i not in set(keep)]}
    if len(keep) < 2:
        raise InputError([f"{truth_path} and {results}: fewer than 2 {unit}s have both a {measure} and scored "
                          "cells (check that the ids are spelled the same way)"])
    ids, groups, pooled = [ids[i] for i in keep], [groups[i] for i in keep], [pooled[i] for i in keep]
    y = np.array([scores[uid] for uid in ids], dtype=np.float64)
    prior, calibrated_by = _prior(config, results)
    try:
        cv = calibration.cross_validate(pooled, y, groups, measure, prior=prior, folds=folds,
                                        score_share=score_share)
    except ValueError as err:
        raise InputError([f"{truth_path}: {err}"]) from None
    fitted = calibration.predict(pooled, cv["thresholds"], measure, score_share)
    fitted_to = {"measure": measure, "unit": unit}
    if measure == "ihc_score":
        fitted_to["score_share"] = score_share
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cxcr4score_version": __version__,
        "thresholds": [round(float(t), 6) for t in cv["thresholds"]],
        "uncalibrated_thresholds": prior,
        "results_calibrated_by": calibrated_by,
        "fitted_to": fitted_to,
        "settings": {k: config[k] for k in MEASUREMENT_KEYS if k in config},
        "assay": config.get("assay", {}),
        "data": {
            "truth": str(truth_path), "truth_sha256": hashlib.sha256(Path(truth_path).read_bytes()).hexdigest(),
            "results": str(results), f"{unit}s": len(ids), "patients": len(set(groups)),
            "tumour_cells": int(sum(v.size for v in pooled)),
        },
        "training_mean_abs_error": cv["training_mean_abs_error"],
        "cross_validation": {
            "folds": int(cv["fold"].max() + 1),
            "method": f"{unit}s of one patient in one fold; patients ordered by mean score and dealt to the "
                      "folds in turn; thresholds fitted on the other folds",
            "fold_thresholds": [list(t) for t in cv["fold_thresholds"]],
            "held_out": cv["agreement"],
            "uncalibrated": cv["agreement_uncalibrated"],
        },
        "per_unit": [
            {key: uid, "patient_id": g, "fold": int(f), measure: float(t), "held_out": float(h),
             "calibrated": float(c), "uncalibrated": float(u), "tumour_cells": int(v.size)}
            for uid, g, f, t, h, c, u, v in zip(ids, groups, cv["fold"], y, cv["held_out"], fitted,
                                                cv["uncalibrated"], pooled)
        ],
        "left_out": left_out,
    }


def _figure_lines(name, figures, measure):
    keys = (("exact", "exact agreement"), ("within_one", "within one step"), ("kappa", "weighted kappa")) \
        if measure == "ihc_score" else (("spearman", "Spearman rho"), ("ccc", "Lin's CCC"), ("bias", "mean difference"))
    parts = [f"MAE {figures['mean_abs_error']:.3g}"] + [
        f"{label} {figures[k]:.3g}" if figures.get(k) is not None else f"{label} -" for k, label in keys]
    return f"  {name:<26}" + ", ".join(parts)


def format_report(record):
    """The calibration as a few plain lines, ending with the config lines that use it."""
    measure, unit = record["fitted_to"]["measure"], record["fitted_to"]["unit"]
    cv = record["cross_validation"]
    patients = "" if unit == "patient" else f"{record['data']['patients']} patients, "
    lines = [
        f"{record['data'][unit + 's']} {unit}s ({patients}{record['data']['tumour_cells']:,} tumour cells) "
        f"scored for {measure}",
        f"thresholds fitted on all {unit}s: {record['thresholds']} (were {record['uncalibrated_thresholds']}); "
        f"training MAE {record['training_mean_abs_error']:.3g}",
        f"agreement with the pathologist over {cv['held_out']['n']} {unit}s, {cv['folds']} folds:",
        _figure_lines("uncalibrated thresholds", cv["uncalibrated"], measure),
        _figure_lines("held-out fold, calibrated", cv["held_out"], measure),
        "thresholds fitted per fold: " + "; ".join(" / ".join(f"{t:g}" for t in f) for f in cv["fold_thresholds"]),
    ]
    return "\n".join(lines)


def main(args):
    """Run ``cxcr4score calibrate`` from parsed arguments; write the record; print the report."""
    record = calibrate(args.truth, args.results, unit=args.unit, measure=args.measure, folds=args.folds,
                       score_share=args.score_share)
    for key, what in (("only_truth", "only in the pathologist file"),
                      ("qc_failed", "whose every slide failed QC"),
                      ("no_score_or_no_cells", "without a score or without scored cells")):
        if record["left_out"][key]:
            print(f"warning: {len(record['left_out'][key])} {args.unit}(s) {what}, left out: "
                  f"{', '.join(record['left_out'][key])}", file=sys.stderr)
    write_record(record, args.out)
    print(format_report(record))
    cv = record["cross_validation"]
    if cv["held_out"]["mean_abs_error"] > cv["uncalibrated"]["mean_abs_error"]:
        print(f"warning: on held-out {args.unit}s the fitted thresholds agree less with the pathologist "
              f"(MAE {cv['held_out']['mean_abs_error']:.3g}) than the thresholds before "
              f"(MAE {cv['uncalibrated']['mean_abs_error']:.3g}): the fit does not carry over to new cases; "
              "more cases, or the thresholds before, may serve better", file=sys.stderr)
    print(f"\nrecord written to {args.out}; to use it, set in the config:\n"
          f"  thresholds: {record['thresholds']}\n  calibration: {args.out}")
    return plain(record)
