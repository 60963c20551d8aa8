"""Fit the intensity thresholds to a pathologist's scores, with cross-validated agreement.

The science of ``cxcr4score calibrate`` (:mod:`cxcr4score.calibrate_command` reads the files).
Pure functions on arrays; no I/O.

A unit (a patient, or a slide) is the pooled scored value (:func:`cxcr4score.score.scored_values`)
of its tumour cells: a cell is class k or above exactly when its value is at or above the k-th
threshold, so for any thresholds the share of cells at or above each one gives every measure:

- ``pct_positive`` = share at or above t1 (the H-score's and eligibility's definitions);
- ``h_score`` = the sum of the three shares (1 x %1+ + 2 x %2+ + 3 x %3+);
- ``ihc_score`` (0-3, a core or a case scored as HER2 is) = the number of thresholds that more
  than :data:`SCORE_SHARE` percent of the cells reach.

The fit is a search over every increasing triple of a fixed grid (:data:`GRID`) for the one
with the smallest mean absolute difference from the pathologist. Equally good triples (a
threshold the scores do not inform, e.g. t2 and t3 when only % positive is given, or t3 when
no core is 3+) are resolved towards the thresholds the cells were classified with, so the fit
moves a threshold only as far as the scores ask. A search is used, not an optimiser, because
the measures are step functions of the thresholds.
"""

from __future__ import annotations

import math

import numpy as np

from .bench.accuracy import _kappa
from .bench.concordance import continuous_agreement

#: What a pathologist's score can be, and its range.
MEASURES = {"h_score": (0.0, 300.0), "pct_positive": (0.0, 100.0), "ihc_score": (0.0, 3.0)}

#: A unit is scored k+ when more than this percentage of its tumour cells stain at k+ or above
#: (HER2 ASCO/CAP 2018: 0 is no staining or staining in <= 10% of tumour cells).
SCORE_SHARE = 10.0

#: Candidate thresholds (mean DAB OD): 0.02 to 1.50 in steps of 0.01.
GRID = np.round(np.arange(2, 151) / 100, 2)

#: Two objective values closer than this are equally good.
_TIE = 1e-9
#: Units whose errors are summed at once in the search (memory: units x G^2 x 3 floats).
_UNITS_PER_BATCH = 64


def shares_at_or_above(values_by_unit, grid=GRID):
    """Percentage of each unit's cells whose value is at or above each grid threshold.

    Parameters
    ----------
    values_by_unit : sequence of (n_i,) array_like of float
        The scored values of each unit's tumour cells.
    grid : (G,) array_like of float
        Thresholds.

    Returns
    -------
    (n_units, G) ndarray of float64
        Percentages (0-100); NaN for a unit without cells.
    """
    grid = np.asarray(grid, dtype=np.float64)
    out = np.full((len(values_by_unit), grid.size), np.nan)
    for i, values in enumerate(values_by_unit):
        values = np.sort(np.asarray(values, dtype=np.float64))
        if np.isnan(values).any():
            raise ValueError("scored values must not be NaN (a cell without pixels scores -inf)")
        if values.size:
            out[i] = 100.0 * (values.size - np.searchsorted(values, grid, side="left")) / values.size
    return out


def measure_from_shares(shares, measure, score_share=SCORE_SHARE):
    """A measure from the shares of cells at or above t1, t2, t3.

    Parameters
    ----------
    shares : (..., 3) array_like of float
        Percentages of cells at or above each threshold.
    measure : {'h_score', 'pct_positive', 'ihc_score'}
    score_share : float
        For ``ihc_score``: the percentage of cells a class must exceed.

    Returns
    -------
    ndarray of float64, shape ``shares.shape[:-1]``
    """
    shares = np.asarray(shares, dtype=np.float64)
    if measure == "pct_positive":
        return shares[..., 0]
    if measure == "h_score":
        return shares.sum(axis=-1)
    if measure == "ihc_score":
        return np.where(np.isnan(shares[..., 0]), np.nan, (shares > score_share).sum(axis=-1).astype(np.float64))
    raise ValueError(f"measure must be one of {tuple(MEASURES)}, got {measure!r}")


def predict(values_by_unit, thresholds, measure, score_share=SCORE_SHARE):
    """Each unit's measure at the given thresholds (see the module docstring)."""
    return measure_from_shares(shares_at_or_above(values_by_unit, thresholds), measure, score_share)


def fit_thresholds(shares, truth, measure, *, prior, grid=GRID, score_share=SCORE_SHARE):
    """The increasing grid triple whose measure is closest to the pathologist's on average.

    Parameters
    ----------
    shares : (n, G) array_like of float
        :func:`shares_at_or_above` of the training units on ``grid``.
    truth : (n,) array_like of float
        The pathologist's value of each unit.
    measure : {'h_score', 'pct_positive', 'ihc_score'}
    prior : sequence of 3 float
        Thresholds the cells were classified with; among equally good triples the one nearest
        to it (sum of absolute differences) is chosen.
    grid : (G,) array_like of float
    score_share : float

    Returns
    -------
    thresholds : (3,) ndarray of float64
    mean_abs_error : float
        The training units' mean absolute difference at those thresholds.

    Raises
    ------
    ValueError
        If no unit has both cells and a score.
    """
    grid = np.asarray(grid, dtype=np.float64)
    shares, truth = np.asarray(shares, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    usable = np.isfinite(truth) & np.all(np.isfinite(shares), axis=1)
    if not usable.any():
        raise ValueError("no unit has both scored cells and a pathologist's score")
    shares, truth = shares[usable], truth[usable]
    distance = np.abs(grid[:, None] - np.asarray(prior, dtype=np.float64)[None, :])  # (G, 3)
    g = grid.size
    best = (math.inf, math.inf, None)
    for j1 in range(g - 2):
        m = g - j1 - 1
        error = np.zeros((m, m))
        for first in range(0, truth.size, _UNITS_PER_BATCH):  # bounded memory for large cohorts
            batch = slice(first, first + _UNITS_PER_BATCH)
            rest = shares[batch, j1 + 1:]  # t2 and t3 above t1
            # (units, m, m): the measure for t1 = grid[j1] and every (t2, t3) above it.
            triple = np.stack(np.broadcast_arrays(shares[batch, j1, None, None], rest[:, :, None], rest[:, None, :]),
                              axis=-1)
            error += np.abs(measure_from_shares(triple, measure, score_share) - truth[batch, None, None]).sum(axis=0)
        error = np.where(np.triu(np.ones((m, m), bool), k=1), error / truth.size, np.inf)
        lowest = error.min()
        if lowest > best[0] + _TIE:
            continue
        near = distance[j1, 0] + distance[j1 + 1:, 1, None] + distance[None, j1 + 1:, 2]
        near = np.where(error <= lowest + _TIE, near, np.inf)
        j2, j3 = np.unravel_index(np.argmin(near), near.shape)
        if lowest < best[0] - _TIE or near[j2, j3] < best[1]:
            best = (lowest, near[j2, j3], (j1, j1 + 1 + j2, j1 + 1 + j3))
    return grid[list(best[2])], float(best[0])


def fold_of_units(truth, groups, folds):
    """Assign units to cross-validation folds, keeping each group (patient) in one fold.

    Groups are ordered by their mean score (then by name) and dealt to the folds in turn, so
    each fold spans the range of scores; no randomness.

    Parameters
    ----------
    truth : (n,) array_like of float
    groups : (n,) sequence of str
        A unit's group: units of one group are never split between fitting and testing.
    folds : int
        Requested folds; fewer when there are fewer groups.

    Returns
    -------
    (n,) ndarray of int64
        Fold of each unit, 0 to k - 1.

    Raises
    ------
    ValueError
        If there are fewer than 2 groups.
    """
    truth = np.asarray(truth, dtype=np.float64)
    groups = np.asarray([str(g) for g in groups])
    names = np.unique(groups)
    if names.size < 2:
        raise ValueError("cross-validation needs at least 2 patients (groups of units)")
    k = min(int(folds), names.size)
    means = [np.nanmean(truth[groups == name]) if np.isfinite(truth[groups == name]).any() else -1.0
             for name in names]
    order = sorted(range(names.size), key=lambda i: (means[i], names[i]))
    fold_of_group = {names[i]: rank % k for rank, i in enumerate(order)}
    return np.array([fold_of_group[g] for g in groups], dtype=np.int64)


def agreement(predicted, truth, measure):
    """Agreement of our measure with the pathologist's.

    Returns
    -------
    dict
        ``n`` and ``mean_abs_error``; for ``h_score`` / ``pct_positive`` also the
        :func:`cxcr4score.bench.concordance.continuous_agreement` figures; for ``ihc_score``
        ``exact`` (share of units with the same score), ``within_one`` and the quadratic-weighted
        ``kappa``, and the ``table`` (pathologist score -> our score -> count).
    """
    predicted, truth = np.asarray(predicted, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    keep = np.isfinite(predicted) & np.isfinite(truth)
    predicted, truth = predicted[keep], truth[keep]
    result = {"n": int(keep.sum()),
              "mean_abs_error": float(np.abs(predicted - truth).mean()) if keep.any() else None}
    if measure != "ihc_score":
        result.update(continuous_agreement(predicted, truth))
        return result
    ours, theirs = predicted.astype(int), truth.astype(int)
    kappa = _kappa(theirs, ours, n_classes=4) if keep.any() else math.nan
    result.update(
        exact=float(np.mean(ours == theirs)) if keep.any() else None,
        within_one=float(np.mean(np.abs(ours - theirs) <= 1)) if keep.any() else None,
        kappa=kappa if math.isfinite(kappa) else None,
        table={str(t): {str(o): int(np.sum((theirs == t) & (ours == o))) for o in range(4)} for t in range(4)},
    )
    return result


def cross_validate(values_by_unit, truth, groups, measure, *, prior, folds=5, grid=GRID, score_share=SCORE_SHARE):
    """Fit on all folds but one, predict the held-out fold, for every fold; then fit on all.

    Parameters
    ----------
    values_by_unit : sequence of (n_i,) array_like of float
        Scored values of each unit's tumour cells.
    truth : (n,) array_like of float
        The pathologist's score of each unit (NaN: not scored).
    groups : (n,) sequence of str
        Each unit's patient (see :func:`fold_of_units`).
    measure : {'h_score', 'pct_positive', 'ihc_score'}
    prior : sequence of 3 float
        The thresholds the cells were classified with.
    folds : int
    grid, score_share
        See :func:`fit_thresholds`.

    Returns
    -------
    dict
        ``thresholds`` (fitted on every unit) and ``training_mean_abs_error``; ``fold`` (each
        unit's fold), ``held_out`` (each unit's measure predicted by the thresholds fitted
        without its fold), ``fold_thresholds`` (one triple per fold); ``uncalibrated`` (each
        unit's measure at ``prior``); ``agreement`` with the held-out predictions and
        ``agreement_uncalibrated`` (see :func:`agreement`).
    """
    truth = np.asarray(truth, dtype=np.float64)
    fold = fold_of_units(truth, groups, folds)
    shares = shares_at_or_above(values_by_unit, grid)
    held_out = np.full(truth.size, np.nan)
    fold_thresholds = []
    for k in range(fold.max() + 1):
        train = fold != k
        thresholds, _ = fit_thresholds(shares[train], truth[train], measure, prior=prior, grid=grid,
                                       score_share=score_share)
        fold_thresholds.append(thresholds)
        test = np.flatnonzero(~train)
        held_out[test] = predict([values_by_unit[i] for i in test], thresholds, measure, score_share)
    thresholds, training_error = fit_thresholds(shares, truth, measure, prior=prior, grid=grid,
                                                score_share=score_share)
    uncalibrated = predict(values_by_unit, prior, measure, score_share)
    return {
        "thresholds": thresholds, "training_mean_abs_error": training_error,
        "fold": fold, "held_out": held_out, "fold_thresholds": fold_thresholds,
        "uncalibrated": uncalibrated,
        "agreement": agreement(held_out, truth, measure),
        "agreement_uncalibrated": agreement(uncalibrated, truth, measure),
    }
