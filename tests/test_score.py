"""Tests of cxcr4score.score against hand-worked examples and plain-NumPy re-derivations.

References: DESIGN.md section 5 (thresholds, class rule, Allred and IRS bins, intervals);
McCarty 1985 (H-score); Allred 1998; Remmele & Stegner 1987; Ram et al. 2021 (pixel H-score);
Wilson 1927 (score interval).
"""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxcr4score.constants import DAB_HIST_EDGES, SECTOR_COLUMNS
from cxcr4score.score import (
    allred_score,
    assign_classes,
    classify,
    count_classes,
    dab_bin_index,
    irs_score,
    pixel_h_score,
    score_intervals,
    summarize_counts,
)

THRESHOLDS = (0.2, 0.4, 0.6)
NAN = float("nan")

counts4 = st.lists(st.integers(0, 10_000), min_size=4, max_size=4)


# ---------------------------------------------------------------- classify


def test_classify_boundaries():
    """DESIGN 5: class = number of thresholds t with value >= t; a value on a threshold is the higher class."""
    values = [-0.5, 0.0, 0.19999, 0.2, 0.39999, 0.4, 0.59999, 0.6, 2.5, np.inf, -np.inf, NAN]
    expected = [0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 0, -1]
    out = classify(values, THRESHOLDS)
    assert out.dtype == np.int8
    assert out.tolist() == expected


def test_classify_keeps_shape():
    """Shape round trip: (2, 2) in, (2, 2) out."""
    assert classify(np.array([[0.1, 0.5], [0.7, NAN]]), THRESHOLDS).tolist() == [[0, 2], [3, -1]]


@pytest.mark.parametrize("bad", [(0.2, 0.4), (0.2, 0.2, 0.6), (0.6, 0.4, 0.2), (0.2, NAN, 0.6), (0.2, 0.4, np.inf)])
def test_classify_rejects_bad_thresholds(bad):
    """Invalid input: thresholds must be 3 strictly increasing finite numbers; the error shows them."""
    with pytest.raises(ValueError, match="thresholds"):
        classify([0.1], bad)


@given(st.lists(st.floats(-2, 4, allow_nan=False), min_size=1, max_size=50))
def test_classify_matches_plain_comparison(values):
    """Plain-NumPy re-derivation: sum over thresholds of (value >= t)."""
    v = np.array(values)
    expected = (v[:, None] >= np.array(THRESHOLDS)).sum(axis=1)
    assert classify(v, THRESHOLDS).tolist() == expected.tolist()


# ---------------------------------------------------------------- assign_classes


def _cells(rows, sectors=None, line_sectors=None):
    """Cells table from (nucleus, cytoplasm, membrane, cell, exposed) tuples; sectors default NaN,
    line sectors 0."""
    frame = pd.DataFrame(
        rows, columns=["dab_nucleus", "dab_cytoplasm", "dab_membrane", "dab_cell", "membrane_exposed_fraction"]
    )
    frame["membrane_line_sectors"] = np.zeros(len(rows), np.int64) if line_sectors is None else line_sectors
    sector_values = np.full((len(rows), 16), NAN) if sectors is None else np.asarray(sectors, float)
    return pd.concat([frame, pd.DataFrame(sector_values, columns=list(SECTOR_COLUMNS))], axis=1)


def test_assign_classes_max_rule_hand_worked():
    """DESIGN 5 class_rule max of membrane and cytoplasm, exposed cells on cytoplasm, fallbacks to cell then 0."""
    cells = _cells(
        [
            (0.9, 0.1, 0.45, 0.3, 0.0),  # max(membrane 2, cytoplasm 0) = 2; nucleus 3 not used
            (0.0, 0.65, 0.25, 0.3, 0.2),  # max(1, 3) = 3
            (0.0, 0.05, 0.7, 0.3, 0.8),  # exposed: membrane replaced by cytoplasm -> 0
            (0.0, 0.3, 0.7, 0.3, 0.5),  # exposed fraction exactly 0.5 is not above exposed_max -> 3
            (0.0, NAN, 0.25, 0.3, 0.0),  # cytoplasm missing, ignored -> 1
            (0.0, NAN, NAN, 0.45, 0.0),  # both missing -> class_cell 2
            (NAN, NAN, NAN, NAN, NAN),  # everything missing -> 0
            (0.0, NAN, 0.7, 0.45, 0.9),  # exposed and no cytoplasm -> class_cell 2
        ]
    )
    out = assign_classes(cells, thresholds=THRESHOLDS)
    assert out["class"].tolist() == [2, 3, 0, 3, 1, 2, 0, 2]
    assert out["class_nucleus"].tolist() == [3, 0, 0, 0, 0, 0, -1, 0]
    assert out["class_cytoplasm"].tolist() == [0, 3, 0, 1, -1, -1, -1, -1]
    assert out["class_membrane"].tolist() == [2, 1, 3, 3, 1, -1, -1, 3]  # raw membrane class, no substitution
    assert out["class_cell"].tolist() == [1, 1, 1, 1, 1, 2, -1, 2]
    for column in ("class_nucleus", "class_cytoplasm", "class_membrane", "class_cell", "class"):
        assert out[column].dtype == np.int8


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"class_rule": "membrane"}, [2, 1, 0, 3]),  # exposed cell 2 scored on cytoplasm 0
        ({"class_rule": "cytoplasm"}, [0, 3, 0, 1]),
        ({"class_rule": "cell"}, [1, 1, 1, 1]),
        ({"class_rule": "max", "compartments": ("nucleus", "membrane")}, [3, 1, 0, 3]),
        ({"class_rule": "max", "compartments": ("membrane",), "exposed_max": 0.9}, [2, 1, 3, 3]),
    ],
)
def test_assign_classes_rules(kwargs, expected):
    """DESIGN 4 class_rule values; compartments only matter for max; exposed_max is configurable."""
    cells = _cells(
        [(0.9, 0.1, 0.45, 0.3, 0.0), (0.0, 0.65, 0.25, 0.3, 0.2), (0.0, 0.05, 0.7, 0.3, 0.8), (0.0, 0.3, 0.7, 0.3, 0.5)]
    )
    assert assign_classes(cells, thresholds=THRESHOLDS, **kwargs)["class"].tolist() == expected


def test_exposed_cell_with_a_located_line_is_scored_on_its_membrane():
    """An exposed band is read on cytoplasm unless a line was located on at least
    MIN_LINE_SECTORS (6) of the cell's sectors: the line is where the membrane is."""
    rows = [(0.0, 0.05, 0.7, 0.3, 0.8)] * 4 + [(0.0, 0.05, 0.7, 0.3, 0.2)]
    cells = _cells(rows, line_sectors=[0, 5, 6, 16, 0])
    assert assign_classes(cells, thresholds=THRESHOLDS)["class"].tolist() == [0, 0, 3, 3, 3]
    with pytest.raises(ValueError, match="membrane_line_sectors"):
        assign_classes(cells.drop(columns="membrane_line_sectors"), thresholds=THRESHOLDS)
    unknown = cells.assign(membrane_line_sectors=[np.nan, 6.0, np.nan, 16.0, np.nan])  # NaN: no line known
    assert assign_classes(unknown, thresholds=THRESHOLDS)["class"].tolist() == [0, 3, 0, 3, 3]


def test_membrane_completeness_hand_worked():
    """DESIGN 5: fraction of sectors with band pixels whose mean >= the 1+ threshold; NaN without band pixels."""
    sectors = np.full((3, 16), NAN)
    sectors[0, :8] = [0.2, 0.5, 0.1, 0.19, 0.3, 0.0, 0.0, 0.0]  # 3 of 8 (0.2 counts)
    sectors[1, :] = 0.25  # 16 of 16
    out = assign_classes(_cells([(0.1, 0.1, 0.1, 0.1, 0.0)] * 3, sectors), thresholds=THRESHOLDS)
    completeness = out["membrane_completeness"]
    assert completeness.dtype == np.float64
    assert completeness[0] == pytest.approx(3 / 8)
    assert completeness[1] == 1.0
    assert np.isnan(completeness[2])


def test_assign_classes_does_not_modify_input():
    """Returns a new table; the input keeps its columns and values."""
    cells = _cells([(0.9, 0.1, 0.45, 0.3, 0.0)])
    before = cells.copy()
    out = assign_classes(cells, thresholds=THRESHOLDS)
    pd.testing.assert_frame_equal(cells, before)
    assert "class" in out and "class" not in cells


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"class_rule": "mean"}, "'mean'"),
        ({"compartments": ("membrane", "stroma")}, "stroma"),
        ({"compartments": ()}, r"\(\)"),
        ({"thresholds": (0.4, 0.2, 0.6)}, "0.4"),
    ],
)
def test_assign_classes_rejects_bad_values(kwargs, bad):
    """Invalid input: the ValueError names the bad value."""
    kwargs = {"thresholds": THRESHOLDS} | kwargs
    with pytest.raises(ValueError, match=bad):
        assign_classes(_cells([(0.1, 0.1, 0.1, 0.1, 0.0)]), **kwargs)


def test_assign_classes_missing_column():
    """Invalid input: a missing measurement column is named."""
    with pytest.raises(ValueError, match="dab_membrane_sector_15"):
        cells = _cells([(0.1, 0.1, 0.1, 0.1, 0.0)]).drop(columns="dab_membrane_sector_15")
        assign_classes(cells, thresholds=THRESHOLDS)


# ---------------------------------------------------------------- pixel histogram and pixel H-score


def test_dab_hist_edges():
    """DESIGN 5 / brief: 800 bins of 0.005 OD from -1 to 3."""
    assert DAB_HIST_EDGES.shape == (801,)
    assert DAB_HIST_EDGES[0] == -1.0 and DAB_HIST_EDGES[-1] == 3.0
    np.testing.assert_allclose(np.diff(DAB_HIST_EDGES), 0.005)


def test_dab_bin_index_hand_worked():
    """Hand-worked bins: floor((v + 1) * 200), below -1 -> 0, at/above 3 -> 799."""
    values = [-5.0, -1.0, -0.9975, 0.0, 0.2, 0.2049, 0.6025, 2.9999, 3.0, 100.0, -np.inf, np.inf]
    assert dab_bin_index(values).tolist() == [0, 0, 0, 200, 240, 240, 320, 799, 799, 799, 0, 799]


def test_dab_bin_index_agrees_with_edges():
    """Plain-NumPy re-derivation: bin midpoints fall in their DAB_HIST_EDGES bin, as np.histogram bins them."""
    mid = (DAB_HIST_EDGES[:-1] + DAB_HIST_EDGES[1:]) / 2
    assert dab_bin_index(mid).tolist() == list(range(800))
    np.testing.assert_array_equal(np.bincount(dab_bin_index(mid), minlength=800), np.histogram(mid, DAB_HIST_EDGES)[0])


def test_dab_bin_index_rejects_nan():
    """Invalid input: NaN has no bin."""
    with pytest.raises(ValueError, match="NaN"):
        dab_bin_index([0.1, NAN])


def test_pixel_h_score_hand_worked():
    """Ram et al. 2021: counted = all hematoxylin pixels + DAB pixels >= t0; class by lower bin edge.

    Row 0 (no hematoxylin): 7 px at 0.1 OD (not counted), 10 px in the bin starting at 0.2 (1+),
    5 px at 0.45 (2+), 5 px at 0.65 (3+). Row 1: 20 px at 0.0 (0), 10 px at 0.3 (1+).
    Counted 50; H = 100 * (1*20 + 2*5 + 3*5) / 50 = 90.
    """
    hist = np.zeros((2, 800), np.int64)
    hist[0, dab_bin_index([0.1, 0.2, 0.45, 0.65])] = [7, 10, 5, 5]
    hist[1, dab_bin_index([0.0, 0.3])] = [20, 10]
    assert pixel_h_score(hist, thresholds=THRESHOLDS) == pytest.approx(90.0)


def test_pixel_h_score_threshold_on_grid():
    """A threshold within rounding of a bin edge counts that bin; off-grid thresholds round up to the grid."""
    hist = np.zeros((2, 800), np.int64)
    hist[0, 240] = 1  # bin [0.2, 0.205)
    assert pixel_h_score(hist, thresholds=(0.2 + 1e-12, 0.4, 0.6)) == 100.0
    assert np.isnan(pixel_h_score(hist, thresholds=(0.201, 0.4, 0.6)))  # rounded up to 0.205: nothing counted


def test_pixel_h_score_empty_and_invalid():
    """No counted pixel -> NaN; wrong shape or negative counts -> ValueError."""
    assert np.isnan(pixel_h_score(np.zeros((2, 800), np.int64), thresholds=THRESHOLDS))
    with pytest.raises(ValueError, match=r"\(2, 799\)"):
        pixel_h_score(np.zeros((2, 799), np.int64), thresholds=THRESHOLDS)
    with pytest.raises(ValueError, match="non-negative"):
        pixel_h_score(-np.ones((2, 800), np.int64), thresholds=THRESHOLDS)


@given(st.lists(st.integers(0, 50), min_size=1600, max_size=1600))
@settings(max_examples=25, deadline=None)
def test_pixel_h_score_matches_per_pixel_reference(flat):
    """Plain-NumPy re-derivation: expand the histogram to pixels at bin lower edges and score each pixel."""
    hist = np.array(flat, np.int64).reshape(2, 800)
    lower = np.repeat(np.tile(DAB_HIST_EDGES[:-1], 2), hist.ravel())
    hem = np.repeat([0, 1], hist.sum(axis=1))
    counted = (hem == 1) | (lower >= 0.2 - 1e-9)
    cls = (lower[:, None] >= np.array(THRESHOLDS) - 1e-9).sum(axis=1)
    expected = 100 * cls[counted].mean() if counted.any() else NAN
    np.testing.assert_allclose(pixel_h_score(hist, thresholds=THRESHOLDS), expected)


# ---------------------------------------------------------------- totals


def test_count_classes_hand_worked():
    """Class counts per group; class -1 (no pixels) is not counted; a group of only -1 cells has zeros."""
    out = count_classes([0, 1, 1, 3, -1, 2, -1], [5, 5, 7, 7, 7, 9, 11])
    assert out.index.tolist() == [5, 7, 9, 11]
    assert out.columns.tolist() == ["n0", "n1", "n2", "n3"]
    assert out.to_numpy().tolist() == [[1, 1, 0, 0], [0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert (out.dtypes == np.int64).all()


def test_count_classes_rejects_bad_input():
    """Invalid input: unequal lengths or a class outside -1..3."""
    with pytest.raises(ValueError, match="equal length"):
        count_classes([0, 1], [1])
    with pytest.raises(ValueError, match="4"):
        count_classes([0, 4], [1, 1])


def test_summarize_counts_hand_worked():
    """McCarty 1985: 50/30/15/5 cells -> 50% positive, H = 30 + 2*15 + 3*5 = 75."""
    s = summarize_counts([50, 30, 15, 5])
    assert s == {
        "n_cells": 100, "pct_0": 50.0, "pct_1": 30.0, "pct_2": 15.0, "pct_3": 5.0,
        "pct_positive": 50.0, "h_score": 75.0,
    }  # fmt: skip


def test_summarize_counts_empty_and_invalid():
    """n = 0 -> NaN ratios; wrong length or negative counts -> ValueError."""
    s = summarize_counts([0, 0, 0, 0])
    assert s["n_cells"] == 0 and all(np.isnan(s[k]) for k in s if k != "n_cells")
    with pytest.raises(ValueError, match="counts"):
        summarize_counts([1, 2, 3])
    with pytest.raises(ValueError, match="counts"):
        summarize_counts([1, -2, 3, 4])


@given(counts4)
def test_summary_arithmetic(counts):
    """H-score in [0, 300], equals pct_1 + 2 pct_2 + 3 pct_3; pct_positive = 100 - pct_0; pcts sum to 100."""
    s = summarize_counts(counts)
    if sum(counts) == 0:
        assert np.isnan(s["h_score"])
        return
    assert 0 <= s["h_score"] <= 300
    assert s["h_score"] == pytest.approx(s["pct_1"] + 2 * s["pct_2"] + 3 * s["pct_3"])
    assert s["pct_positive"] == pytest.approx(100 - s["pct_0"])
    assert s["pct_0"] + s["pct_1"] + s["pct_2"] + s["pct_3"] == pytest.approx(100)


@given(st.lists(st.tuples(st.integers(-1, 3), st.integers(0, 4)), min_size=1, max_size=200))
def test_counts_are_additive(cells):
    """HistomicsTK-style additivity: summing the counts of parts then scoring == scoring the whole."""
    classes, groups = map(np.array, zip(*cells))
    parts = count_classes(classes, groups).to_numpy().sum(axis=0)
    whole = count_classes(classes, np.zeros_like(groups)).to_numpy()[0]
    np.testing.assert_array_equal(parts, whole)
    np.testing.assert_array_equal(whole, [np.count_nonzero(classes == k) for k in range(4)])
    assert summarize_counts(parts) == pytest.approx(summarize_counts(whole), nan_ok=True)


# ---------------------------------------------------------------- Allred


def _positives(n_pos, n, cls=1):
    """Counts with n_pos positive cells of class cls among n."""
    counts = [n - n_pos, 0, 0, 0]
    counts[cls] += n_pos
    return counts


@pytest.mark.parametrize(
    ("counts", "ps"),
    [
        (_positives(0, 100), 0),  # 0%
        (_positives(1, 101), 1),  # 0.99% in (0, 1)
        (_positives(1, 100), 2),  # exactly 1% -> [1, 10)
        (_positives(99, 1000), 2),  # 9.9%
        (_positives(10, 100), 3),  # exactly 10% -> [10, 33.3)
        (_positives(332, 1000), 3),  # 33.2%
        (_positives(333, 1000), 4),  # exactly 33.3% -> [33.3, 66.7)
        (_positives(1, 3), 4),  # 33.33...% >= 33.3
        (_positives(2, 3), 4),  # 66.66...% < 66.7
        (_positives(666, 1000), 4),  # 66.6%
        (_positives(667, 1000), 5),  # exactly 66.7% -> >= 66.7
        (_positives(100, 100), 5),  # 100%
    ],
)
def test_allred_proportion_score_boundaries(counts, ps):
    """Allred 1998 / DESIGN 5 PS bins at every boundary (all positives 1+, so IS = 1 unless PS = 0)."""
    assert allred_score(counts) == ps + (ps > 0)


@pytest.mark.parametrize(
    ("counts", "intensity"),
    [
        ([0, 1, 0, 0], 1),  # mean 1
        ([0, 1, 1, 0], 2),  # mean 1.5 rounds half up
        ([0, 51, 49, 0], 1),  # mean 1.49
        ([0, 0, 1, 0], 2),  # mean 2
        ([0, 0, 1, 1], 3),  # mean 2.5 rounds half up
        ([0, 1, 0, 1], 2),  # mean 2
        ([0, 0, 0, 5], 3),  # mean 3
    ],
)
def test_allred_intensity_score_rounding(counts, intensity):
    """Allred IS = mean class of positive cells rounded half up (all 100% positive: PS 5)."""
    assert allred_score(counts) == 5 + intensity


def test_allred_empty():
    """No cells -> NaN; cells but no positives -> 0."""
    assert np.isnan(allred_score([0, 0, 0, 0]))
    assert allred_score([7, 0, 0, 0]) == 0


# ---------------------------------------------------------------- IRS


@pytest.mark.parametrize(
    ("counts", "pp"),
    [
        (_positives(0, 100), 0),  # 0%
        (_positives(1, 1000), 1),  # 0.1%
        (_positives(99, 1000), 1),  # 9.9% in (0, 10)
        (_positives(10, 100), 2),  # exactly 10% -> [10, 50]
        (_positives(50, 100), 2),  # exactly 50% -> [10, 50]
        (_positives(501, 1000), 3),  # 50.1% -> (50, 80]
        (_positives(80, 100), 3),  # exactly 80% -> (50, 80]
        (_positives(801, 1000), 4),  # 80.1% -> > 80
        (_positives(100, 100), 4),  # 100%
    ],
)
def test_irs_proportion_boundaries(counts, pp):
    """Remmele & Stegner 1987 / DESIGN 5 PP bins at every boundary; all positives 3+, so IRS = 3 PP."""
    counts = [counts[0], 0, 0, counts[1]]
    assert irs_score(counts) == 3 * pp


@pytest.mark.parametrize(
    ("counts", "si"),
    [
        ([0, 5, 3, 1], 1),  # mode 1+
        ([0, 3, 3, 1], 2),  # tie 1+/2+ goes up
        ([0, 2, 2, 2], 3),  # three-way tie goes up
        ([0, 4, 1, 4], 3),  # tie 1+/3+ goes up
        ([0, 0, 1, 0], 2),
    ],
)
def test_irs_intensity_mode_ties_up(counts, si):
    """IRS SI = modal class of positive cells, ties to the higher class (100% positive: PP 4)."""
    assert irs_score(counts) == 4 * si


def test_irs_empty():
    """No cells -> NaN; no positives -> 0."""
    assert np.isnan(irs_score([0, 0, 0, 0]))
    assert irs_score([9, 0, 0, 0]) == 0


@given(counts4)
def test_allred_and_irs_ranges(counts):
    """Allred in 0..8 (0 only without positives, never 1); IRS a product PP x SI in 0..12."""
    if sum(counts) == 0:
        assert np.isnan(allred_score(counts)) and np.isnan(irs_score(counts))
        return
    allred, irs = allred_score(counts), irs_score(counts)
    assert allred in {0, 2, 3, 4, 5, 6, 7, 8}
    assert (allred == 0) == (sum(counts[1:]) == 0)
    assert irs in {pp * si for pp in range(5) for si in range(4)}
    assert (irs == 0) == (sum(counts[1:]) == 0)


# ---------------------------------------------------------------- intervals


def _reference_bootstrap(block_counts, strata, n_bootstrap, seed):
    """Plain re-derivation of the stratified block bootstrap: fancy-index the drawn blocks and sum them."""
    rng = np.random.default_rng(seed)
    totals = np.zeros((n_bootstrap, 4), np.int64)
    for label in sorted(set(strata)):
        members = block_counts[np.asarray(strata) == label]
        draws = rng.integers(0, len(members), size=(n_bootstrap, len(members)))
        totals += members[draws].sum(axis=1)
    n = totals.sum(axis=1)
    return 100 * totals[:, 1:].sum(axis=1) / n, 100 * (totals @ np.arange(4)) / n


def test_bootstrap_matches_reference():
    """Percentile intervals equal those of the plain loop-and-index bootstrap with the same draws."""
    rng = np.random.default_rng(1)
    block_counts = rng.integers(0, 40, size=(60, 4))
    strata = np.repeat(["S1", "S2", "S3"], [10, 20, 30])
    pct, h = _reference_bootstrap(block_counts, strata, 500, seed=7)
    # design_effect ~0 makes the design-effect interval a point, isolating the bootstrap
    out = score_intervals(block_counts, strata, n_bootstrap=500, seed=7, design_effect=1e-9)
    point_pct, point_h = (summarize_counts(block_counts.sum(axis=0))[k] for k in ("pct_positive", "h_score"))
    lo, hi = np.quantile(pct, [0.025, 0.975])
    assert out["pct_positive_ci_low"] == pytest.approx(min(lo, point_pct))
    assert out["pct_positive_ci_high"] == pytest.approx(max(hi, point_pct))
    lo, hi = np.quantile(h, [0.025, 0.975])
    assert out["h_score_ci_low"] == pytest.approx(min(lo, point_h))
    assert out["h_score_ci_high"] == pytest.approx(max(hi, point_h))


def test_bootstrap_is_stratified():
    """Blocks identical within each stratum: stratified resampling keeps the composition, so a zero-width interval.

    (Unstratified resampling of 10 all-negative and 10 all-positive blocks would give a wide interval.)
    """
    block_counts = np.array([[100, 0, 0, 0]] * 10 + [[0, 0, 100, 0]] * 10)
    strata = ["S1"] * 10 + ["S2"] * 10
    out = score_intervals(block_counts, strata, n_bootstrap=300, design_effect=1e-9)
    assert out == pytest.approx({
        "pct_positive_ci_low": 50.0, "pct_positive_ci_high": 50.0, "h_score_ci_low": 100.0, "h_score_ci_high": 100.0,
    }, abs=1e-3)  # fmt: skip


def test_bootstrap_deterministic_for_seed():
    """Fixed seed -> identical intervals; another seed -> (here) different ones."""
    rng = np.random.default_rng(2)
    block_counts = rng.integers(0, 30, size=(200, 4))
    strata = np.repeat(["S1", "S2"], 100)
    first = score_intervals(block_counts, strata, seed=11)
    assert score_intervals(block_counts, strata, seed=11) == first
    assert score_intervals(block_counts, strata, seed=12) != first


def test_wilson_fallback_hand_worked():
    """Wilson 1927 on n_eff = n / 5: 50 positive of 500 cells -> p = 0.1 on 100 -> 95% CI 5.52-17.44%.

    The H interval: 250 cells of class 0 and 250 of 3 -> mean 1.5, sd 1.5, se 1.5/sqrt(100) = 0.15,
    H = 150 +- 100 * 1.959964 * 0.15 = 150 +- 29.40.
    """
    out = score_intervals(np.array([[450, 50, 0, 0]]), ["S1"])
    assert out["pct_positive_ci_low"] == pytest.approx(5.52, abs=0.005)
    assert out["pct_positive_ci_high"] == pytest.approx(17.44, abs=0.005)
    out = score_intervals(np.array([[125, 0, 0, 125]] * 2), ["S1", "S1"])
    assert out["h_score_ci_low"] == pytest.approx(150 - 29.3995, abs=1e-3)
    assert out["h_score_ci_high"] == pytest.approx(150 + 29.3995, abs=1e-3)


def test_fallback_clamped():
    """Few cells: the normal H interval is clamped to [0, 300], Wilson stays in [0, 100]."""
    out = score_intervals(np.array([[1, 0, 0, 1]]), ["S1"])
    assert (out["h_score_ci_low"], out["h_score_ci_high"]) == (0.0, 300.0)
    assert 0.0 <= out["pct_positive_ci_low"] < 50 < out["pct_positive_ci_high"] <= 100.0


def test_bootstrap_never_narrower_than_design_effect_interval():
    """Identical blocks make the percentile bootstrap zero-width; the Wilson n/5 interval stays.

    Hand-worked (Wilson 1927): 50 positive of 500 cells, n_eff = 100 -> 5.52-17.44%, whether
    the 5 blocks are below min_blocks (Wilson alone) or not (bootstrap joined with Wilson).
    """
    block_counts = np.array([[90, 10, 0, 0]] * 5)
    below = score_intervals(block_counts, ["S1"] * 5, min_blocks=10)
    above = score_intervals(block_counts, ["S1"] * 5, min_blocks=5)
    assert below == above
    assert below["pct_positive_ci_low"] == pytest.approx(5.52, abs=0.01)
    assert below["pct_positive_ci_high"] == pytest.approx(17.44, abs=0.01)
    zero = score_intervals(np.array([[120, 0, 0, 0]] * 12), ["S1"] * 12)
    assert zero["pct_positive_ci_low"] == 0.0 and zero["pct_positive_ci_high"] > 0.9  # 0 of 288 effective cells


def test_intervals_no_cells():
    """n = 0 (no blocks, or empty blocks) -> NaN."""
    for block_counts in (np.zeros((0, 4), np.int64), np.zeros((12, 4), np.int64)):
        out = score_intervals(block_counts, ["S1"] * len(block_counts))
        assert all(np.isnan(v) for v in out.values())


@pytest.mark.parametrize(
    ("kwargs", "bad"), [({"confidence": 1.5}, "1.5"), ({"design_effect": 0}, "0"), ({"n_bootstrap": 0}, "0")]
)
def test_intervals_reject_bad_parameters(kwargs, bad):
    """Invalid parameters -> ValueError showing the value."""
    with pytest.raises(ValueError, match=bad):
        score_intervals(np.ones((3, 4), np.int64), ["S1"] * 3, **kwargs)


@given(
    st.lists(st.lists(st.integers(0, 60), min_size=4, max_size=4), min_size=1, max_size=40),
    st.integers(1, 3),
)
@settings(max_examples=40, deadline=None)
def test_intervals_contain_point_and_are_bounded(blocks, n_strata):
    """Property: each interval contains its point estimate and lies in [0, 100] / [0, 300]."""
    block_counts = np.array(blocks)
    strata = [f"S{i % n_strata}" for i in range(len(blocks))]
    out = score_intervals(block_counts, strata, n_bootstrap=200)
    s = summarize_counts(block_counts.sum(axis=0))
    if s["n_cells"] == 0:
        assert all(np.isnan(v) for v in out.values())
        return
    assert 0 <= out["pct_positive_ci_low"] <= s["pct_positive"] <= out["pct_positive_ci_high"] <= 100
    assert 0 <= out["h_score_ci_low"] <= s["h_score"] <= out["h_score_ci_high"] <= 300


def test_staining_pattern_by_the_compartment_that_carries_the_dab():
    """Hand-worked: the highest compartment mean wins if it reaches 1+ (ties: membrane, then
    cytoplasm); a nucleus' blur into its cytoplasm does not make it cytoplasmic; NaN is no
    compartment."""
    from cxcr4score.score import staining_pattern

    cells = pd.DataFrame({"dab_membrane": [0.5, 0.1, 0.25, 0.05, 0.3, NAN],
                          "dab_cytoplasm": [0.3, 0.45, 0.35, 0.1, 0.3, NAN],
                          "dab_nucleus": [0.1, 0.2, 0.9, NAN, 0.3, 0.25]})
    assert staining_pattern(cells, threshold=0.2).tolist() == [
        "membranous", "cytoplasmic", "nuclear", "negative", "membranous", "nuclear"]
    assert staining_pattern(cells.iloc[:0], threshold=0.2).tolist() == []


def test_staining_pattern_of_an_exposed_cell_is_not_membranous():
    """Review finding: a cell scored on its cytoplasm because its band is exposed (as
    assign_classes does) has no membrane reading for its pattern either; one whose line was
    located on 6 sectors keeps it."""
    from cxcr4score.score import staining_pattern

    cells = pd.DataFrame({"dab_membrane": [0.5, 0.5, 0.5], "dab_cytoplasm": [0.3, 0.1, 0.3],
                          "dab_nucleus": [0.1, 0.1, 0.1], "membrane_exposed_fraction": [0.9, 0.1, 0.9],
                          "membrane_line_sectors": [5, 0, 6]})
    assert staining_pattern(cells, threshold=0.2, exposed_max=0.5).tolist() == ["cytoplasmic", "membranous",
                                                                                 "membranous"]
    assert staining_pattern(cells.iloc[1:2], threshold=0.6, exposed_max=0.5).tolist() == ["negative"]
