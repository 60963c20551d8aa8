"""The per-slide choice of finding nuclei on DAB (cxcr4score.stain_pattern): hand-worked counts,
config precedence, and drawn nuclear and membrane stains measured as the workflow would."""

import numpy as np
import pandas as pd
import pytest

from cxcr4score import config, stain_pattern, stains

CONFIG = config.default_config()
MATRIX = stains.stain_matrix(CONFIG["stains"]["hematoxylin"], CONFIG["stains"]["dab"])
TABLES = stains.concentration_tables((255.0, 255.0, 255.0), MATRIX)


def _draw(stain, *, mpp=0.5, spacing_um=14.0, radius_um=3.5, n=8):
    """A grid of round nuclei in pale cytoplasm, every other one stained: ``nuclear`` browns the
    nucleus (weak hematoxylin, as Ki67-positive nuclei), ``membrane`` draws a brown ring 5 um
    out (the cell's outline, as the workflow expands nuclei by 5 um)."""
    size = int(n * spacing_um / mpp)
    rows, cols = np.mgrid[:size, :size] * mpp
    hem = np.full((size, size), 0.04)
    dab = np.zeros((size, size))
    for i in range(n):
        for j in range(n):
            cy, cx = (i + 0.5) * spacing_um, (j + 0.5) * spacing_um
            r = np.hypot(rows - cy, cols - cx)
            inside = r <= radius_um
            stained = (i + j) % 2 == 0
            if stain == "nuclear" and stained:
                hem[inside], dab[inside] = 0.15, 0.8
            else:
                hem[inside] = 0.6
            if stain == "membrane" and stained:
                dab[np.abs(r - 5.5) <= 0.6] = 0.7
    od = hem[..., None] * MATRIX[0] + dab[..., None] * MATRIX[1]
    return np.clip(np.rint(255.0 * 10.0 ** -od), 0, 255).astype(np.uint8)


def test_nuclear_share_hand_worked():
    """Stained = any pattern but negative; the share is of those."""
    assert stain_pattern.nuclear_share(np.array(["nuclear", "nuclear", "membranous", "negative"], dtype=object)) \
        == (3, pytest.approx(200 / 3))
    n, pct = stain_pattern.nuclear_share(np.array(["negative"], dtype=object))
    assert n == 0 and np.isnan(pct)


@pytest.mark.parametrize(("dab_threshold", "n_stained", "pct", "expected"), [
    (0.0, 10, 50.1, 0.3),   # nuclear: more than half of at least 10
    (0.0, 10, 50.0, 0.0),   # exactly half is not more than half
    (0.0, 9, 100.0, 0.0),   # too few stained cells to say
    (0.0, 200, float("nan"), 0.0),
    (0.15, 200, 1.0, 0.15),  # set in the config: every slide, whatever its stain
])
def test_nucleus_dab_threshold(dab_threshold, n_stained, pct, expected):
    settings = config.merge(CONFIG, {"nuclei": {"dab_threshold": dab_threshold}})
    assert stain_pattern.nucleus_dab_threshold(settings, n_stained, pct) == expected


def test_nucleus_dab_threshold_never_when_turned_off():
    settings = config.merge(CONFIG, {"nuclei": {"dab_threshold_nuclear_stain": 0}})
    assert stain_pattern.nucleus_dab_threshold(settings, 500, 99.0) == 0.0


@pytest.mark.parametrize(("stain", "nuclear"), [("nuclear", True), ("membrane", False)])
def test_drawn_stains_read_as_drawn(stain, nuclear):
    """Half the cells stained, in the nucleus or on the outline: the stained cells read nuclear
    or membranous, and only the nuclear stain gets nuclei on DAB."""
    sampled = stain_pattern.sampled_cells([_draw(stain)], tables=TABLES, mpp=0.5, config=CONFIG, baseline=0.0)
    n_stained, pct = stain_pattern.nuclear_share(sampled.loc[sampled["scored"], "pattern"])
    assert 20 <= n_stained <= 40, n_stained
    assert (pct > 90) if nuclear else (pct < 10), pct
    expected = CONFIG["nuclei"]["dab_threshold_nuclear_stain"] if nuclear else 0.0
    assert stain_pattern.nucleus_dab_threshold(CONFIG, n_stained, pct) == expected


def test_the_stain_check_ignores_the_scoring_keys():
    """It decides how nuclei are found (pixel work), which a change of thresholds, class keys or
    tumour_cells does not rerun: other scoring keys must give the same sampled cells."""
    scoring = config.merge(CONFIG, {"thresholds": [0.05, 0.5, 0.9], "membrane_exposed_max": 0.9,
                                    "tumour_cells": "all"})
    for stain in ("nuclear", "membrane"):
        tile = _draw(stain)
        default = stain_pattern.sampled_cells([tile], tables=TABLES, mpp=0.5, config=CONFIG, baseline=0.0)
        other = stain_pattern.sampled_cells([tile], tables=TABLES, mpp=0.5, config=scoring, baseline=0.0)
        pd.testing.assert_frame_equal(default, other)


def test_sampled_cells_of_no_tile_is_an_empty_table():
    sampled = stain_pattern.sampled_cells([], tables=TABLES, mpp=0.5, config=CONFIG, baseline=0.0)
    assert sampled.empty and {"nucleus_area_um2", "hematoxylin_nucleus", "pattern", "scored"} <= set(sampled.columns)
