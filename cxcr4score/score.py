"""Classes, H-scores, % positive, Allred, IRS and block-bootstrap intervals.

Pure functions on NumPy arrays and pandas tables; no I/O. Class counts are additive (cell ->
block -> slide -> patient are sums) and every ratio is taken once from the summed counts, as
HistomicsTK combines tile totals (``_totals_to_stats``). Scientific defaults and their sources are
in DESIGN.md section 5.
"""

from fractions import Fraction
from statistics import NormalDist

import numpy as np
import pandas as pd

from .constants import DAB_HIST_EDGES, HIST_BINS, HIST_BINS_PER_OD, HIST_LOW, MIN_LINE_SECTORS, SECTOR_COLUMNS

#: Compartments that carry a mean DAB OD column ``dab_<compartment>`` and a class.
COMPARTMENTS = ("nucleus", "cytoplasm", "membrane", "cell")

#: How a cell's scored class is made (DESIGN section 4, config ``class_rule``).
CLASS_RULES = ("max", "membrane", "cytoplasm", "cell")

#: Class of a compartment without pixels.
MISSING_CLASS = -1

#: Count columns of class totals, in class order 0, 1+, 2+, 3+.
COUNT_COLUMNS = ("n0", "n1", "n2", "n3")

#: A threshold within this of a bin's lower edge counts that bin (pixel H-score).
_EDGE_TOLERANCE = 1e-9

#: Allred proportion score: lower bounds (percent) of PS 2, 3, 4, 5; PS 1 is (0, 1)%.
#: Allred et al., Mod Pathol 1998;11:155-168.
_ALLRED_PS_BOUNDS = (Fraction(1), Fraction(10), Fraction(333, 10), Fraction(667, 10))

#: IRS percentage of positive cells: upper bounds (percent, inclusive) of PP 2 and 3; PP 1 is
#: (0, 10)%, PP 4 > 80%. Remmele & Stegner, Pathologe 1987;8:138-140.
_IRS_PP10 = Fraction(10)
_IRS_PP_UPPER = (Fraction(50), Fraction(80))


def _check_thresholds(thresholds):
    """Return thresholds as a float64 (3,) array; ValueError unless 3 strictly increasing finite."""
    t = np.asarray(thresholds, dtype=np.float64)
    if t.shape != (3,) or not np.all(np.isfinite(t)) or not np.all(np.diff(t) > 0):
        raise ValueError(
            f"thresholds must be 3 strictly increasing finite numbers (1+, 2+, 3+), got {thresholds!r}"
        )
    return t


def classify(values, thresholds):
    """Class 0-3 of each value: the number of thresholds at or below it.

    Parameters
    ----------
    values : array_like of float
        Mean DAB optical densities, any shape; NaN where a compartment has no pixels.
    thresholds : sequence of 3 float
        Strictly increasing 1+, 2+, 3+ thresholds (mean DAB OD).

    Returns
    -------
    classes : ndarray of int8, same shape as ``values``
        0, 1, 2 or 3; -1 where the value is NaN.

    Raises
    ------
    ValueError
        If ``thresholds`` are not 3 strictly increasing finite numbers.

    Notes
    -----
    A value exactly at a threshold belongs to the higher class (``value >= t``).

    Examples
    --------
    >>> classify([0.1, 0.2, 0.45, 0.6, float("nan")], [0.2, 0.4, 0.6]).tolist()
    [0, 1, 2, 3, -1]
    """
    t = _check_thresholds(thresholds)
    v = np.asarray(values, dtype=np.float64)
    classes = np.searchsorted(t, v, side="right").astype(np.int8)
    classes[np.isnan(v)] = MISSING_CLASS
    return classes


def _check_rule(class_rule, compartments):
    if class_rule not in CLASS_RULES:
        raise ValueError(f"class_rule must be one of {CLASS_RULES}, got {class_rule!r}")
    bad = [c for c in compartments if c not in COMPARTMENTS]
    if bad or len(compartments) == 0:
        raise ValueError(f"compartments must be a non-empty subset of {COMPARTMENTS}, got {compartments!r}")


def membrane_unread(cells, exposed_max):
    """Cells whose membrane is not read: more of the band than ``exposed_max`` lies on no
    neighbour, and no stained line was located on it.

    The band of a cell whose expansion meets no neighbour lies where the cell was drawn to
    end, not necessarily on its membrane (a nest's border, a large cell's gap to the next), so
    such a cell is scored on its cytoplasm (DESIGN section 5). A line located on at least
    ``MIN_LINE_SECTORS`` sectors (:func:`cxcr4score.measure.located_membrane`) is where the
    membrane is, and its reading stands: on generated membrane tiles rendered without blur,
    JPEG or noise, 15 of 94 cells drawn 3+ had read 0, all with a 3+ line and a band 52-86%
    exposed (their drawn cells 10-63%).

    Parameters
    ----------
    cells : pandas.DataFrame
        ``membrane_exposed_fraction`` (float) and ``membrane_line_sectors`` (int) per cell.
    exposed_max : float

    Returns
    -------
    (N,) ndarray of bool

    Raises
    ------
    ValueError
        If a column is missing.
    """
    missing = [c for c in ("membrane_exposed_fraction", "membrane_line_sectors") if c not in cells.columns]
    if missing:
        raise ValueError(f"cells is missing columns {missing}")
    exposed = cells["membrane_exposed_fraction"].to_numpy(np.float64) > exposed_max
    return exposed & ~(cells["membrane_line_sectors"].to_numpy(np.float64) >= MIN_LINE_SECTORS)  # NaN: no line


def scored_values(cells, *, class_rule="max", compartments=("membrane", "cytoplasm"), exposed_max=0.5):
    """The mean DAB OD that decides each cell's scored class.

    A cell is class k or above exactly when this value is at or above the k-th threshold, for
    any thresholds: the class of a maximum is the maximum of the classes, since classes grow
    with the value. Calibration (:mod:`cxcr4score.calibration`) tries many thresholds on it.

    Parameters
    ----------
    cells : pandas.DataFrame
        Float columns ``dab_nucleus``, ``dab_cytoplasm``, ``dab_membrane``, ``dab_cell`` and
        ``membrane_exposed_fraction`` (NaN where a compartment has no pixels), and
        ``membrane_line_sectors``. Not modified.
    class_rule, compartments, exposed_max
        As :func:`assign_classes`.

    Returns
    -------
    values : (N,) ndarray of float64
        The highest of the chosen compartments' values (membrane replaced by cytoplasm where
        :func:`membrane_unread`), NaN ignored; ``dab_cell`` where every chosen compartment is
        NaN; -inf (class 0) where that is NaN too.

    Raises
    ------
    ValueError
        If ``class_rule`` or a compartment is unknown, ``compartments`` is empty or a required
        column is missing.
    """
    _check_rule(class_rule, compartments)
    missing = [c for c in [f"dab_{c}" for c in COMPARTMENTS] if c not in cells.columns]
    if missing:
        raise ValueError(f"cells is missing columns {missing}")
    dab = {c: cells[f"dab_{c}"].to_numpy(np.float64) for c in COMPARTMENTS}
    dab["membrane"] = np.where(membrane_unread(cells, exposed_max), dab["cytoplasm"], dab["membrane"])
    chosen = np.stack([dab[c] for c in (compartments if class_rule == "max" else (class_rule,))])
    values = np.full(len(cells), -np.inf)
    some = ~np.all(np.isnan(chosen), axis=0)
    values[some] = np.nanmax(chosen[:, some], axis=0)
    values = np.where(some, values, dab["cell"])
    return np.where(np.isnan(values), -np.inf, values)


def assign_classes(
    cells, *, thresholds, class_rule="max", compartments=("membrane", "cytoplasm"), exposed_max=0.5
):
    """Per-compartment classes, the scored class and membrane completeness of each cell.

    Parameters
    ----------
    cells : pandas.DataFrame
        Per-cell measurements with float columns ``dab_nucleus``, ``dab_cytoplasm``,
        ``dab_membrane``, ``dab_cell``, ``membrane_exposed_fraction`` and
        ``dab_membrane_sector_00`` .. ``dab_membrane_sector_15`` (NaN where a compartment or
        sector has no pixels), and ``membrane_line_sectors``. Not modified.
    thresholds : sequence of 3 float
        1+, 2+, 3+ thresholds (mean DAB OD).
    class_rule : {'max', 'membrane', 'cytoplasm', 'cell'}
        'max': the highest class among ``compartments``; otherwise that compartment's class.
    compartments : sequence of str
        Compartments combined by ``class_rule='max'``; each one of 'nucleus', 'cytoplasm',
        'membrane', 'cell'.
    exposed_max : float
        Cells whose ``membrane_exposed_fraction`` is above this are scored on cytoplasm in place of
        membrane (DESIGN section 5), unless a line was located on their membrane
        (:func:`membrane_unread`).

    Returns
    -------
    classified : pandas.DataFrame
        A copy of ``cells`` with int8 columns ``class_nucleus``, ``class_cytoplasm``,
        ``class_membrane``, ``class_cell``, ``class`` and float64 ``membrane_completeness``.

    Raises
    ------
    ValueError
        If ``class_rule`` or a compartment is unknown, ``compartments`` is empty, a required
        column is missing, or the thresholds are invalid.

    Notes
    -----
    ``class_<compartment>`` is ``classify(dab_<compartment>)`` (-1 without pixels); the membrane
    substitution for exposed cells without a located line (:func:`membrane_unread`) applies to
    the scored ``class`` only, so ``class_membrane``
    stays the membrane's own class. ``class`` is the class of :func:`scored_values`: the
    highest class among the chosen compartments, missing ones ignored; when every chosen
    compartment is missing (an exposed cell without cytoplasm counts as missing), the cell is
    scored on ``class_cell``, and 0 if that is missing too, so ``class`` is always 0-3.
    ``membrane_completeness`` is the fraction of sectors with band pixels whose mean is at or
    above ``thresholds[0]``; NaN when no sector has band pixels.
    """
    _check_rule(class_rule, compartments)
    missing = [c for c in SECTOR_COLUMNS if c not in cells.columns]
    if missing:
        raise ValueError(f"cells is missing columns {missing}")
    t = _check_thresholds(thresholds)
    values = scored_values(cells, class_rule=class_rule, compartments=compartments, exposed_max=exposed_max)

    sectors = cells[list(SECTOR_COLUMNS)].to_numpy(np.float64)
    with_pixels = np.count_nonzero(~np.isnan(sectors), axis=1)
    positive = np.count_nonzero(sectors >= t[0], axis=1)
    completeness = np.full(len(cells), np.nan)
    np.divide(positive, with_pixels, out=completeness, where=with_pixels > 0)

    out = cells.copy()
    for c in COMPARTMENTS:
        out[f"class_{c}"] = classify(cells[f"dab_{c}"].to_numpy(np.float64), t)
    out["class"] = classify(values, t)
    out["membrane_completeness"] = completeness
    return out


def classify_cells(cells, config, *, thresholds=None):
    """:func:`assign_classes` with the effective config's class settings.

    Parameters
    ----------
    cells : pandas.DataFrame
        Per-cell measurements (see :func:`assign_classes`).
    config : dict
        Effective configuration: ``thresholds``, ``class_rule``, ``compartments`` and
        ``membrane_exposed_max``.
    thresholds : sequence of 3 float, optional
        In place of the config's (the sensitivity variants shift them).

    Returns
    -------
    pandas.DataFrame
        As :func:`assign_classes`.
    """
    return assign_classes(
        cells, thresholds=np.asarray(config["thresholds"], dtype=np.float64) if thresholds is None else thresholds,
        class_rule=config["class_rule"], compartments=tuple(config["compartments"]),
        exposed_max=config["membrane_exposed_max"],
    )


def dab_bin_index(values):
    """Histogram bin (0-799) of each DAB optical density, as the measure kernel bins pixels.

    Parameters
    ----------
    values : array_like of float
        DAB optical densities (any shape, not NaN).

    Returns
    -------
    index : ndarray of intp, same shape as ``values``
        ``floor((value + 1) * 200)`` in float64, clamped to 0..799.

    Raises
    ------
    ValueError
        If a value is NaN.

    Notes
    -----
    Values below -1 go to bin 0 and values at or above 3 to bin 799. The arithmetic (not a search
    over ``DAB_HIST_EDGES``) is what the kernel does, so a value within rounding of an edge may
    fall either side of it, identically in both.

    Examples
    --------
    >>> dab_bin_index([-2.0, -1.0, 0.0, 0.2, 2.999, 3.0]).tolist()
    [0, 0, 200, 240, 799, 799]
    """
    v = np.asarray(values, dtype=np.float64)
    if np.isnan(v).any():
        raise ValueError(f"DAB values must not be NaN, got {np.count_nonzero(np.isnan(v))} NaN values")
    scaled = np.floor((v - HIST_LOW) * HIST_BINS_PER_OD)
    return np.clip(scaled, 0, HIST_BINS - 1).astype(np.intp)


def pixel_h_score(hist, *, thresholds):
    """Pixelwise H-score of a two-row DAB OD histogram (Ram et al. 2021).

    Parameters
    ----------
    hist : (2, 800) array_like of int
        Pixel counts per ``DAB_HIST_EDGES`` bin; row 1 holds pixels whose hematoxylin OD is at or
        above ``pixel_hematoxylin_min``, row 0 the others.
    thresholds : sequence of 3 float
        1+, 2+, 3+ pixel thresholds (DAB OD).

    Returns
    -------
    h_score : float
        ``100 * (n1 + 2 n2 + 3 n3) / n_counted`` in 0-300; NaN when no pixel is counted.

    Raises
    ------
    ValueError
        If ``hist`` is not (2, 800) of non-negative counts, or the thresholds are invalid.

    Notes
    -----
    Counted pixels are all of row 1 (hematoxylin-stained tissue, any DAB) plus row-0 bins whose
    lower edge is at or above ``thresholds[0]``. A bin's class is the number of thresholds at or
    below its lower edge, with a 1e-9 tolerance so a threshold on an edge counts that bin. The
    thresholds are therefore effectively rounded up to the 0.005 OD grid of the histogram.

    References
    ----------
    Ram S, et al. Pixelwise H-score: a novel digital image analysis-based metric to quantify
    membrane biomarker expression from immunohistochemistry images. PLoS One 2021;16:e0245638.
    """
    h = np.asarray(hist)
    if h.shape != (2, HIST_BINS) or not np.issubdtype(h.dtype, np.integer) or (h < 0).any():
        raise ValueError(
            f"hist must be a (2, {HIST_BINS}) array of non-negative integer counts, "
            f"got shape {h.shape} dtype {h.dtype}"
        )
    t = _check_thresholds(thresholds)
    lower = DAB_HIST_EDGES[:-1]
    bin_class = np.searchsorted(t - _EDGE_TOLERANCE, lower, side="right")
    counted = h[1].astype(np.int64) + np.where(bin_class > 0, h[0], 0)
    n = int(counted.sum())
    if n == 0:
        return float("nan")
    return 100.0 * int((counted * bin_class).sum()) / n


#: Staining patterns of a cell, by the compartment that carries its DAB (``negative`` below 1+).
PATTERNS = ("membranous", "cytoplasmic", "nuclear", "negative")


def staining_pattern(cells, *, threshold, exposed_max=None):
    """Where each cell's DAB is: the compartment with the highest mean DAB, if it reaches 1+.

    Parameters
    ----------
    cells : pandas.DataFrame
        ``dab_membrane``, ``dab_cytoplasm`` and ``dab_nucleus`` per cell (NaN where a
        compartment has no pixels), and ``membrane_exposed_fraction`` and
        ``membrane_line_sectors`` with ``exposed_max``.
    threshold : float
        The 1+ threshold (mean DAB OD).
    exposed_max : float, optional
        A cell whose membrane is not read (:func:`membrane_unread`) has no membrane reading
        here, as :func:`assign_classes` scores it on its cytoplasm.

    Returns
    -------
    (K,) ndarray of str
        One of :data:`PATTERNS` per cell.

    Notes
    -----
    Ties go to the membrane, then the cytoplasm. Blur carries a stained nucleus's DAB into
    the cytoplasm around it, but less of it than the nucleus holds, so a cell stained in its
    nucleus reads ``nuclear`` even where its cytoplasm also reaches 1+.

    Examples
    --------
    >>> import pandas as pd
    >>> cells = pd.DataFrame({"dab_membrane": [0.5, 0.1, 0.2, 0.05], "dab_cytoplasm": [0.3, 0.45, 0.3, 0.1],
    ...                       "dab_nucleus": [0.1, 0.2, 0.9, float("nan")]})
    >>> staining_pattern(cells, threshold=0.2).tolist()
    ['membranous', 'cytoplasmic', 'nuclear', 'negative']
    """
    values = np.stack([cells[f"dab_{c}"].to_numpy(np.float64) for c in ("membrane", "cytoplasm", "nucleus")], axis=1)
    if exposed_max is not None:
        values[membrane_unread(cells, exposed_max), 0] = np.nan
    values = np.where(np.isnan(values), -np.inf, values)
    best = values.argmax(axis=1) if len(values) else np.zeros(0, np.intp)
    pattern = np.asarray(PATTERNS[:3], dtype=object)[best]
    return np.where(values.max(axis=1, initial=-np.inf) >= threshold, pattern, PATTERNS[3]).astype(object)


def count_classes(classes, groups):
    """Number of cells of each class per group.

    Parameters
    ----------
    classes : (N,) array_like of int
        Classes -1..3; -1 (no pixels) is not counted.
    groups : (N,) array_like
        Group label of each cell (e.g. block id); not NaN.

    Returns
    -------
    counts : pandas.DataFrame
        Index: the sorted distinct groups (named ``group``; a group whose cells are all -1 has
        zero counts); int64 columns ``n0``, ``n1``, ``n2``, ``n3``.

    Raises
    ------
    ValueError
        If lengths differ, a class is outside -1..3 or a group is NaN.
    """
    cls = np.asarray(classes)
    if cls.ndim != 1 or len(groups) != cls.size:
        raise ValueError(f"classes and groups must be 1-D of equal length, got {cls.shape} and {len(groups)}")
    if cls.size and (cls.min() < MISSING_CLASS or cls.max() > 3):
        raise ValueError(f"classes must be in -1..3, got values from {cls.min()} to {cls.max()}")
    codes, uniques = pd.factorize(np.asarray(groups), sort=True)
    if (codes < 0).any():
        raise ValueError("groups must not contain NaN")
    keep = cls != MISSING_CLASS
    flat = np.bincount(codes[keep] * 4 + cls[keep].astype(np.int64), minlength=4 * len(uniques))
    index = pd.Index(uniques, name="group")
    return pd.DataFrame(flat.reshape(-1, 4).astype(np.int64), index=index, columns=list(COUNT_COLUMNS))


def _check_counts(counts):
    """Return counts as int64 (..., 4); ValueError if the last axis is not 4 or a count is negative."""
    c = np.asarray(counts)
    if c.ndim == 0 or c.shape[-1] != 4 or not np.issubdtype(c.dtype, np.integer) or (c < 0).any():
        raise ValueError(f"counts must be non-negative integers, 4 classes on the last axis; got {counts!r}")
    return c.astype(np.int64)


def _ratios(totals):
    """pct_positive (0-100) and H-score (0-300) of (..., 4) class totals; NaN where n = 0."""
    totals = np.asarray(totals, dtype=np.float64)
    n = totals.sum(axis=-1)
    safe = np.where(n > 0, n, 1.0)
    pct_positive = np.where(n > 0, 100.0 * totals[..., 1:].sum(axis=-1) / safe, np.nan)
    h_score = np.where(n > 0, 100.0 * (totals @ np.arange(4.0)) / safe, np.nan)
    return pct_positive, h_score


def summarize_counts(counts):
    """Percentages per class, % positive and H-score of class totals.

    Parameters
    ----------
    counts : (4,) array_like of int
        Numbers of cells of class 0, 1+, 2+, 3+.

    Returns
    -------
    summary : dict
        ``n_cells`` (int), ``pct_0`` .. ``pct_3`` and ``pct_positive`` (0-100), ``h_score``
        (0-300, McCarty 1985: 1 x %1+ + 2 x %2+ + 3 x %3+); the floats are NaN when n = 0.

    Raises
    ------
    ValueError
        If ``counts`` is not 4 non-negative integers.

    Examples
    --------
    >>> s = summarize_counts([50, 30, 15, 5])
    >>> s["pct_positive"], s["h_score"]
    (50.0, 75.0)
    """
    c = _check_counts(counts)
    if c.shape != (4,):
        raise ValueError(f"counts must have shape (4,), got {c.shape}")
    n = int(c.sum())
    pct = 100.0 * c / n if n else np.full(4, np.nan)
    pct_positive, h_score = _ratios(c)
    summary = {"n_cells": n}
    summary.update({f"pct_{k}": float(pct[k]) for k in range(4)})
    summary.update(pct_positive=float(pct_positive), h_score=float(h_score))
    return summary


def _positive_split(counts):
    """(n, n_positive, (n1, n2, n3)) as Python ints, validating ``counts``."""
    c = [int(x) for x in _check_counts(counts).reshape(-1)]
    if len(c) != 4:
        raise ValueError(f"counts must have 4 classes, got {counts!r}")
    return sum(c), sum(c[1:]), c[1:]


def allred_score(counts):
    """Allred score (proportion score + intensity score, 0-8) of class totals.

    Parameters
    ----------
    counts : (4,) array_like of int
        Numbers of cells of class 0, 1+, 2+, 3+.

    Returns
    -------
    allred : int or float
        PS + IS; NaN when there are no cells.

    Notes
    -----
    PS: 0 = 0%, 1 = (0, 1)%, 2 = [1, 10)%, 3 = [10, 33.3)%, 4 = [33.3, 66.7)%, 5 >= 66.7% positive.
    IS: mean class of the positive cells rounded half up (1.5 -> 2); 0 without positive cells.
    Percentages are compared as exact fractions of the counts, so 1 of 3 cells (33.33...%) is in
    [33.3, 66.7) and exactly 1 of 100 is PS 2.

    References
    ----------
    Allred DC, Harvey JM, Berardo M, Clark GM. Prognostic and predictive factors in breast cancer
    by immunohistochemical analysis. Mod Pathol 1998;11:155-168.
    """
    n, n_pos, (n1, n2, n3) = _positive_split(counts)
    if n == 0:
        return float("nan")
    if n_pos == 0:
        return 0
    pct = Fraction(100 * n_pos, n)
    proportion = 1 + sum(pct >= bound for bound in _ALLRED_PS_BOUNDS)
    intensity = int(Fraction(n1 + 2 * n2 + 3 * n3, n_pos) + Fraction(1, 2))  # floor(x + 1/2), x > 0
    return proportion + intensity


def irs_score(counts):
    """Immunoreactive score (Remmele) of class totals: PP x SI, 0-12.

    Parameters
    ----------
    counts : (4,) array_like of int
        Numbers of cells of class 0, 1+, 2+, 3+.

    Returns
    -------
    irs : int or float
        PP x SI; NaN when there are no cells.

    Notes
    -----
    PP: 0 = 0%, 1 = (0, 10)%, 2 = [10, 50]%, 3 = (50, 80]%, 4 > 80% positive (exact fractions of
    the counts). SI: the modal class of the positive cells, ties to the higher class; 0 without
    positive cells.

    References
    ----------
    Remmele W, Stegner HE. Vorschlag zur einheitlichen Definition eines Immunreaktiven Score (IRS)
    fuer den immunhistochemischen Oestrogenrezeptor-Nachweis (ER-ICA) im Tumorgewebe.
    Pathologe 1987;8:138-140.
    """
    n, n_pos, positive = _positive_split(counts)
    if n == 0:
        return float("nan")
    if n_pos == 0:
        return 0
    pct = Fraction(100 * n_pos, n)
    proportion = 1 + (pct >= _IRS_PP10) + sum(pct > upper for upper in _IRS_PP_UPPER)
    intensity = max(range(1, 4), key=lambda k: (positive[k - 1], k))
    return proportion * intensity


def _bootstrap_totals(block_counts, strata, *, n_bootstrap, rng):
    """(n_bootstrap, 4) class totals of blocks resampled with replacement within each stratum.

    Strata are visited in sorted order; per stratum of m blocks one ``rng.integers(0, m,
    (n_bootstrap, m))`` draw picks the blocks, turned into multiplicities by ``bincount``.
    """
    labels, codes = np.unique(np.asarray(strata), return_inverse=True)
    totals = np.zeros((n_bootstrap, 4), np.int64)
    for k in range(labels.size):
        members = np.flatnonzero(codes == k)
        m = members.size
        draws = rng.integers(0, m, size=(n_bootstrap, m))
        flat = (np.arange(n_bootstrap)[:, None] * m + draws).ravel()
        weights = np.bincount(flat, minlength=n_bootstrap * m).reshape(n_bootstrap, m)
        totals += weights @ block_counts[members]
    return totals


def _wilson(p, n, z):
    """Wilson score interval of a proportion p observed on n trials."""
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denom
    half = z * np.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
    return centre - half, centre + half


def score_intervals(
    block_counts, strata, *, n_bootstrap=2000, seed=20180501, confidence=0.95, min_blocks=10, design_effect=5
):
    """Confidence intervals of % positive and H-score from spatial blocks of cells.

    Parameters
    ----------
    block_counts : (B, 4) array_like of int
        Class totals of each 500 um block of tumour cells.
    strata : (B,) array_like
        Stratum of each block (slide id); blocks are resampled within their stratum.
    n_bootstrap : int
        Bootstrap replicates.
    seed : int
        Seed of ``numpy.random.default_rng``; equal inputs give equal intervals.
    confidence : float
        Two-sided confidence level in (0, 1).
    min_blocks : int
        Fewer blocks than this: Wilson / normal intervals on ``n / design_effect`` cells.
    design_effect : float
        Variance inflation for spatially clustered positivity (> 0).

    Returns
    -------
    intervals : dict
        ``pct_positive_ci_low``, ``pct_positive_ci_high`` (0-100), ``h_score_ci_low``,
        ``h_score_ci_high`` (0-300); NaN when there are no cells.

    Raises
    ------
    ValueError
        If shapes, counts or parameters are invalid.

    Notes
    -----
    Design-effect interval: Wilson score interval for the positive fraction on
    ``n_eff = n / design_effect`` cells, and ``100 * (mean_class +- z * sd_class / sqrt(n_eff))``
    for the H-score (``sd_class`` the population standard deviation of the cells' classes).
    With fewer than ``min_blocks`` blocks it is the interval. With more, a stratified block
    bootstrap (each replicate draws, per stratum, as many blocks as observed, with
    replacement; statistic from the summed counts; percentile interval) is taken, joined with
    the design-effect interval so that it is never the narrower of the two (a percentile
    bootstrap is degenerate when all blocks agree, e.g. at 0% positive).
    Intervals are clamped to [0, 100] / [0, 300] and widened, if needed, to contain the point
    estimate (a percentile interval can exclude it in degenerate cases).

    References
    ----------
    Efron B, Tibshirani RJ. An Introduction to the Bootstrap. Chapman & Hall 1993 (percentile
    interval). Wilson EB. Probable inference, the law of succession, and statistical inference.
    J Am Stat Assoc 1927;22:209-212.
    """
    bc = _check_counts(block_counts)
    if bc.ndim != 2 or len(strata) != bc.shape[0]:
        raise ValueError(f"block_counts must be (B, 4) with B strata; got {bc.shape} and {len(strata)} strata")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if int(n_bootstrap) < 1 or int(min_blocks) < 1 or not design_effect > 0:
        raise ValueError(
            f"need n_bootstrap >= 1, min_blocks >= 1, design_effect > 0; "
            f"got {n_bootstrap!r}, {min_blocks!r}, {design_effect!r}"
        )
    totals = bc.sum(axis=0)
    n = int(totals.sum())
    keys = ("pct_positive_ci_low", "pct_positive_ci_high", "h_score_ci_low", "h_score_ci_high")
    if n == 0:
        return dict.fromkeys(keys, float("nan"))
    pct_point, h_point = _ratios(totals)
    alpha = 1.0 - confidence
    z = NormalDist().inv_cdf(1.0 - alpha / 2)
    n_eff = n / design_effect
    pct_ci = 100.0 * np.array(_wilson(pct_point / 100.0, n_eff, z))
    mean = h_point / 100.0
    sd = np.sqrt(totals @ (np.arange(4.0) - mean) ** 2 / n)
    h_ci = 100.0 * (mean + np.array([-1.0, 1.0]) * z * sd / np.sqrt(n_eff))
    if bc.shape[0] >= min_blocks:
        rng = np.random.default_rng(seed)
        pct_b, h_b = _ratios(_bootstrap_totals(bc, strata, n_bootstrap=int(n_bootstrap), rng=rng))
        pct_boot = np.nanquantile(pct_b, [alpha / 2, 1 - alpha / 2])
        h_boot = np.nanquantile(h_b, [alpha / 2, 1 - alpha / 2])
        # Never narrower than the design-effect interval: a percentile bootstrap has zero
        # width when every block has the same proportion (0% positive), and would otherwise
        # jump from Wilson's [0, 15] to [0, 0] when a tenth block appears.
        pct_ci = np.array([min(pct_ci[0], pct_boot[0]), max(pct_ci[1], pct_boot[1])])
        h_ci = np.array([min(h_ci[0], h_boot[0]), max(h_ci[1], h_boot[1])])
    pct_lo, pct_hi = np.clip(pct_ci, 0.0, 100.0)
    h_lo, h_hi = np.clip(h_ci, 0.0, 300.0)
    return {
        keys[0]: float(min(pct_lo, pct_point)),
        keys[1]: float(max(pct_hi, pct_point)),
        keys[2]: float(min(h_lo, h_point)),
        keys[3]: float(max(h_hi, h_point)),
    }
