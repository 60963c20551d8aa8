"""Threshold calibration: measures from shares, the grid search, folds, cross-validation,
the record and the config check. References: classify() + summarize_counts() for the measures,
an exhaustive itertools search for the fit, hand-worked cases for the rest."""

import itertools

import numpy as np
import pandas as pd
import pytest
import yaml

from cxcr4score import __version__, calibration, config
from cxcr4score.calibration_record import FORMAT_KEY, MEASUREMENT_KEYS, config_problems, read_record, write_record
from cxcr4score.config import ConfigError
from cxcr4score.score import classify, count_classes, summarize_counts

RNG = np.random.default_rng(7)


def _units(n_units=8, low=0.0, high=1.2):
    """Units whose values spread over the grid differently (some mostly negative, some strong)."""
    return [RNG.uniform(low, RNG.uniform(0.15, high), size=RNG.integers(50, 400)) for _ in range(n_units)]


def _reference_measures(values, thresholds):
    """pct_positive and h_score of one unit through the product's own classify / summarize_counts."""
    counts = count_classes(classify(values, thresholds), np.zeros(len(values), np.int64))
    summary = summarize_counts(counts.to_numpy()[0])
    return summary["pct_positive"], summary["h_score"]


def test_shares_match_a_plain_count_values_on_a_threshold_count():
    values = [np.array([0.1, 0.2, 0.2, 0.5]), np.array([]), np.array([1.0])]
    grid = np.array([0.1, 0.2, 0.3, 1.0, 1.1])
    out = calibration.shares_at_or_above(values, grid)
    expected = [[100 * np.mean(v >= t) for t in grid] if v.size else [np.nan] * grid.size for v in values]
    np.testing.assert_allclose(out, expected)


@pytest.mark.parametrize("thresholds", [(0.2, 0.4, 0.6), (0.05, 0.33, 0.9), (0.41, 0.42, 0.43)])
def test_predicted_pct_positive_and_h_score_equal_the_class_counts(thresholds):
    units = _units()
    pct = calibration.predict(units, thresholds, "pct_positive")
    h = calibration.predict(units, thresholds, "h_score")
    for values, p, hs in zip(units, pct, h):
        ref_pct, ref_h = _reference_measures(values, thresholds)
        assert p == pytest.approx(ref_pct, abs=1e-9)
        assert hs == pytest.approx(ref_h, abs=1e-9)


def test_ihc_score_counts_classes_reached_by_more_than_the_share():
    # 100 cells: 30 at 0.5 (2+ at [0.2,0.4,0.6]), 10 at 0.7 (3+), 60 at 0.
    values = np.r_[np.zeros(60), np.full(30, 0.5), np.full(10, 0.7)]
    # shares at or above: 1+ 40%, 2+ 40%, 3+ 10% (not more than 10%) -> 2
    assert calibration.predict([values], (0.2, 0.4, 0.6), "ihc_score")[0] == 2
    assert calibration.predict([values], (0.2, 0.4, 0.6), "ihc_score", score_share=5.0)[0] == 3
    assert calibration.predict([values], (0.8, 0.9, 1.0), "ihc_score")[0] == 0
    assert np.isnan(calibration.predict([np.array([])], (0.2, 0.4, 0.6), "ihc_score")[0])


def _exhaustive_fit(units, truth, measure, prior, grid):
    """Reference: every increasing triple, smallest mean |error|, then nearest to the prior."""
    best = None
    for triple in itertools.combinations(grid, 3):
        error = np.mean(np.abs(calibration.predict(units, triple, measure) - truth))
        near = sum(abs(a - b) for a, b in zip(triple, prior))
        key = (round(error, 9), round(near, 9))
        if best is None or key < best[0]:
            best = (key, triple)
    return np.array(best[1]), best[0][0]


@pytest.mark.parametrize("measure", ["h_score", "pct_positive", "ihc_score"])
def test_fit_is_the_exhaustive_search_optimum(measure):
    grid = np.round(np.arange(5, 100, 7) / 100, 2)
    units = _units(10)
    truth = calibration.predict(units, (0.26, 0.47, 0.75), measure) + RNG.normal(0, 3 if measure != "ihc_score" else 0,
                                                                                  size=10)
    truth = np.clip(np.round(truth) if measure == "ihc_score" else truth, 0, None)
    prior = (0.2, 0.4, 0.6)
    fitted, error = calibration.fit_thresholds(calibration.shares_at_or_above(units, grid), truth, measure,
                                               prior=prior, grid=grid)
    expected, expected_error = _exhaustive_fit(units, truth, measure, prior, grid)
    assert error == pytest.approx(expected_error, abs=1e-9)
    np.testing.assert_allclose(fitted, expected)


def test_fit_recovers_thresholds_that_made_the_scores():
    units = _units(30)
    made_with = (0.27, 0.55, 0.83)
    truth = calibration.predict(units, made_with, "h_score")
    fitted, error = calibration.fit_thresholds(calibration.shares_at_or_above(units), truth, "h_score",
                                               prior=(0.2, 0.4, 0.6))
    assert error == pytest.approx(0, abs=1e-9)
    np.testing.assert_allclose(fitted, made_with, atol=0.011)


def test_thresholds_the_scores_do_not_inform_stay_at_the_prior():
    """% positive informs t1 only: t2 and t3 stay where the cells were classified."""
    units = _units(12)
    truth = calibration.predict(units, (0.31, 0.5, 0.7), "pct_positive")
    fitted, _ = calibration.fit_thresholds(calibration.shares_at_or_above(units), truth, "pct_positive",
                                           prior=(0.2, 0.4, 0.6))
    assert fitted[0] == pytest.approx(0.31, abs=0.011)
    np.testing.assert_allclose(fitted[1:], [0.4, 0.6])


def test_fit_without_usable_units_is_refused():
    with pytest.raises(ValueError, match="no unit"):
        calibration.fit_thresholds(np.full((2, calibration.GRID.size), np.nan), [1.0, 2.0], "h_score",
                                   prior=(0.2, 0.4, 0.6))


def test_folds_keep_a_patient_together_and_span_the_scores():
    truth = [0, 10, 20, 30, 40, 50, 60, 70]
    groups = ["a", "a", "b", "c", "d", "e", "f", "g"]
    fold = calibration.fold_of_units(truth, groups, folds=3)
    assert fold[0] == fold[1]
    assert sorted(set(fold)) == [0, 1, 2]
    # groups ordered by mean score (a=5, b=20, c=30, ...) dealt in turn
    assert fold.tolist() == [0, 0, 1, 2, 0, 1, 2, 0]
    assert calibration.fold_of_units([1, 2], ["x", "y"], folds=5).tolist() == [0, 1]
    with pytest.raises(ValueError, match="at least 2 patients"):
        calibration.fold_of_units([1, 2], ["x", "x"], folds=5)


def test_cross_validation_predicts_each_unit_with_thresholds_fitted_without_it():
    units = _units(10)
    truth = calibration.predict(units, (0.3, 0.5, 0.7), "h_score") + RNG.normal(0, 5, size=10)
    groups = [f"p{i // 2}" for i in range(10)]
    cv = calibration.cross_validate(units, truth, groups, "h_score", prior=(0.2, 0.4, 0.6), folds=3)
    assert len(cv["fold_thresholds"]) == 3
    for i, (values, fold) in enumerate(zip(units, cv["fold"])):
        assert cv["held_out"][i] == calibration.predict([values], cv["fold_thresholds"][fold], "h_score")[0]
        fitted_without, _ = calibration.fit_thresholds(
            calibration.shares_at_or_above([u for u, f in zip(units, cv["fold"]) if f != fold]),
            truth[cv["fold"] != fold], "h_score", prior=(0.2, 0.4, 0.6))
        np.testing.assert_allclose(cv["fold_thresholds"][fold], fitted_without)
    assert cv["agreement"]["n"] == 10
    assert cv["agreement"]["mean_abs_error"] == pytest.approx(np.mean(np.abs(cv["held_out"] - truth)))
    np.testing.assert_allclose(cv["uncalibrated"], calibration.predict(units, (0.2, 0.4, 0.6), "h_score"))


def test_ordinal_agreement_hand_worked():
    result = calibration.agreement([0, 1, 2, 2, np.nan], [0, 1, 1, 3, 2], "ihc_score")
    assert result["n"] == 4
    assert result["exact"] == 0.5 and result["within_one"] == 1.0
    assert result["mean_abs_error"] == 0.5
    assert result["table"]["1"]["2"] == 1 and result["table"]["3"]["2"] == 1


# ---------------------------------------------------------------- the record and the config


def _record(tmp_path, thresholds=(0.25, 0.45, 0.7), version=__version__, **changes):
    effective = config.default_config()
    settings = {k: effective[k] for k in MEASUREMENT_KEYS} | changes
    path = tmp_path / "calibration.yaml"
    write_record({"thresholds": np.array(thresholds), "settings": settings, "assay": {"antibody_clone": "UMB2"},
                  "cross_validation": {"held_out": {"spearman": np.float64(0.9), "ci": np.nan}},
                  "cxcr4score_version": version}, path)
    return path


@pytest.mark.parametrize("version", ["0.9.0", "0.1.0", ""])
def test_a_record_fitted_on_earlier_scored_values_is_refused(tmp_path, version):
    """0.10.0 changed the scored value of exposed cells with a located line: thresholds fitted
    on an earlier version's values do not carry over."""
    path = _record(tmp_path, version=version)
    with pytest.raises(ConfigError, match=f"fitted by cxcr4score {version or '.unknown version.'}, on scored "
                                          "values that 0.10.0 changed: refit"):
        config.validate({"calibration": str(path), "thresholds": [0.25, 0.45, 0.7], "assay": {"antibody_clone": "UMB2"}})


def test_calibrate_on_cells_tables_of_an_earlier_version_says_what_to_do(tmp_path):
    """Cells tables without membrane_line_sectors (before 0.10.0): one line naming the folder,
    how many tables, the first, the column and what to run, not a pyarrow message per slide."""
    from cxcr4score.calibrate_command import calibrate
    from cxcr4score.errors import InputError

    results = _results(tmp_path, [("A1", "A", "ok", [0.5] * 10), ("B1", "B", "ok", [0.1] * 10)])
    for slide in ("A1", "B1"):
        path = results / "cells" / f"{slide}.parquet"
        pd.read_parquet(path).drop(columns="membrane_line_sectors").to_parquet(path)
    with pytest.raises(InputError) as err:
        calibrate(_truth(tmp_path, "patient_id,pct_positive\nA,100\nB,0\n"), results, folds=2)
    assert len(err.value.problems) == 1
    assert (f"2 cells tables (the first {results / 'cells' / 'A1.parquet'}) lack membrane_line_sectors: written by "
            "an older cxcr4score") in err.value.problems[0]
    assert "run the workflow again" in err.value.problems[0]


def test_record_round_trips_as_plain_yaml(tmp_path):
    path = _record(tmp_path)
    text = path.read_text()
    assert text.startswith("# Written by `cxcr4score calibrate`")
    loaded = yaml.safe_load(text)
    assert loaded[FORMAT_KEY] == 1 and loaded["thresholds"] == [0.25, 0.45, 0.7]
    assert loaded["cross_validation"]["held_out"] == {"spearman": 0.9, "ci": None}
    record, problems = read_record(path)
    assert problems == [] and record["thresholds"] == [0.25, 0.45, 0.7]


def test_config_with_its_record_is_calibrated(tmp_path):
    path = _record(tmp_path)
    effective = config.validate({"calibration": str(path), "thresholds": [0.25, 0.45, 0.7],
                                 "assay": {"antibody_clone": "UMB2"}})
    assert effective["calibrated"] is True
    assert config.validate({})["calibrated"] is False


def test_calibrated_by_hand_is_refused():
    with pytest.raises(ConfigError, match="'calibrated': true needs a calibration record"):
        config.validate({"calibrated": True})


@pytest.mark.parametrize("overrides, message", [
    ({"thresholds": [0.2, 0.4, 0.6]}, r"thresholds \[0.2, 0.4, 0.6\] are not the calibrated \[0.25, 0.45, 0.7\]"),
    ({"thresholds": [0.25, 0.45, 0.7], "compartments": ["nucleus"]}, "compartments is .*refit"),
    ({"thresholds": [0.25, 0.45, 0.7], "nuclei": {"threshold": 0.2}}, "nuclei is"),
    ({"thresholds": [0.25, 0.45, 0.7], "assay": {"antibody_clone": "12G5"}}, "assay.antibody_clone is '12G5'"),
])
def test_config_that_departs_from_its_record_is_refused(tmp_path, overrides, message):
    path = _record(tmp_path)
    with pytest.raises(ConfigError, match=message) as err:
        config.validate({"calibration": str(path), **overrides})
    assert str(path) in str(err.value)


@pytest.mark.parametrize("content, message", [
    (None, "cannot read calibration record"),
    ("thresholds: [1, 2, 3]\n", "is not a calibration record"),
    (f"{FORMAT_KEY}: 99\n", "has format 99"),
    (f"{FORMAT_KEY}: 1\nthresholds: [0.1]\n", "lacks its thresholds"),
    ("a: [\n", "not valid YAML"),
])
def test_bad_record_files_are_named(tmp_path, content, message):
    path = tmp_path / "record.yaml"
    if content is not None:
        path.write_text(content)
    record, problems = read_record(path)
    assert record is None and message in problems[0] and str(path) in problems[0]
    with pytest.raises(ConfigError, match=message):
        config.validate({"calibration": str(path)})


def test_config_problems_lists_every_difference(tmp_path):
    record, _ = read_record(_record(tmp_path, class_rule="membrane"))
    problems = config_problems(record, config.default_config(), "rec.yaml")
    # thresholds, class_rule, compartments (which the config's max rule reads and the record's
    # membrane rule does not) and the assay
    assert [p.split()[0] for p in problems] == ["thresholds", "compartments", "class_rule", "assay.antibody_clone"]


def _reference_class(row, thresholds, rule, compartments, exposed_max=0.5):
    """Reference (DESIGN section 5, written per cell): the highest class among the chosen
    compartments, membrane read on cytoplasm when exposed without a line on 6 sectors, missing
    ones ignored; else the whole cell's class; else 0."""
    def cls(value):
        return -1 if np.isnan(value) else sum(value >= t for t in thresholds)

    own = {c: cls(row[f"dab_{c}"]) for c in ("nucleus", "cytoplasm", "membrane", "cell")}
    if row["membrane_exposed_fraction"] > exposed_max and row["membrane_line_sectors"] < 6:
        own["membrane"] = own["cytoplasm"]
    chosen = [own[c] for c in (compartments if rule == "max" else (rule,))]
    best = max(chosen)
    if best == -1:
        best = own["cell"]
    return max(best, 0)


def test_scored_value_gives_each_cell_its_class():
    """A cell is class k or above exactly when its scored value reaches the k-th threshold."""
    from cxcr4score.score import scored_values

    n = 300
    frame = pd.DataFrame({f"dab_{c}": np.where(RNG.random(n) < 0.25, np.nan, RNG.uniform(0, 1, n))
                          for c in ("nucleus", "cytoplasm", "membrane", "cell")})
    frame["membrane_exposed_fraction"] = RNG.uniform(0, 1, n)
    frame["membrane_line_sectors"] = RNG.integers(0, 17, n)
    for rule, compartments in (("max", ("membrane", "cytoplasm")), ("max", ("nucleus",)), ("membrane", ("membrane",)),
                               ("cell", ("membrane",)), ("max", ("membrane", "cytoplasm", "nucleus"))):
        values = scored_values(frame, class_rule=rule, compartments=compartments)
        for thresholds in ((0.2, 0.4, 0.6), (0.05, 0.5, 0.95)):
            expected = [_reference_class(row, thresholds, rule, compartments) for _, row in frame.iterrows()]
            np.testing.assert_array_equal(classify(values, thresholds), expected)


# ---------------------------------------------------------------- the command on a results folder


def _results(tmp_path, slides):
    """A results folder as the workflow writes it: effective config, slides.csv, cells tables.
    ``slides``: (slide_id, patient_id, qc_status, membrane DAB values of its scored cells)."""
    from cxcr4score.tables import write_table, write_yaml

    out = tmp_path / "results"
    write_yaml(config.default_config(), out / "config.effective.yaml")
    write_table(pd.DataFrame([s[:3] for s in slides], columns=["slide_id", "patient_id", "qc_status"]),
                out / "slides.csv")
    for slide_id, _, _, values in slides:
        n = len(values)
        cells = pd.DataFrame({"scored": np.r_[np.ones(n, bool), False], "dab_nucleus": 0.0,
                              "dab_cytoplasm": 0.0, "dab_membrane": np.r_[values, 3.0], "dab_cell": 0.0,
                              "membrane_exposed_fraction": 0.0, "membrane_line_sectors": 0})
        write_table(cells, out / "cells" / f"{slide_id}.parquet")
    return out


def _truth(tmp_path, text):
    path = tmp_path / "truth.csv"
    path.write_text(text)
    return path


def test_calibrate_pools_a_patients_slides_and_skips_failed_ones(tmp_path):
    from cxcr4score.calibrate_command import calibrate

    results = _results(tmp_path, [
        ("A1", "A", "ok", [0.1] * 5 + [0.5] * 5), ("A2", "A", "warning", [0.5] * 10),
        ("A3", "A", "failed", [0.9] * 100), ("B1", "B", "ok", [0.1] * 10), ("C1", "C", "ok", [0.7] * 4 + [0.1] * 6)])
    truth = _truth(tmp_path, "patient_id,pct_positive\nA,75\nB,0\nC,40\nD,10\n")
    record = calibrate(truth, results, folds=3)
    rows = {r["patient_id"]: r for r in record["per_unit"]}
    # A: slides A1 + A2 (the failed A3 and the unscored cell left out): 15 of 20 at or above 0.2
    assert rows["A"]["uncalibrated"] == 75.0 and rows["A"]["tumour_cells"] == 20
    assert rows["C"]["uncalibrated"] == 40.0
    assert record["left_out"]["only_truth"] == ["D"]
    assert record["training_mean_abs_error"] == 0.0 and record["thresholds"][1:] == [0.4, 0.6]
    assert record["settings"]["compartments"] == ["membrane", "cytoplasm"]
    assert record["data"]["patients"] == 3 and len(record["data"]["truth_sha256"]) == 64


@pytest.mark.parametrize("truth_text, kwargs, message", [
    ("patient_id,h_score,pct_positive\nA,10,5\nB,0,0\n", {}, "choose the one to fit with --measure"),
    ("patient_id,h_score\nA,10\nB,0\n", {"measure": "pct_positive"}, "no column 'pct_positive'"),
    ("patient_id,ihc_score\nA,1.5\nB,0\n", {}, "row 1: ihc_score 1.5 is not 0, 1, 2 or 3"),
    ("patient_id,ihc_score\nA,4\nB,0\n", {}, "outside 0-3"),
    ("patient_id,h_score\nX,10\nY,0\n", {}, "fewer than 2 patients have both"),
    ("slide,h_score\nA1,10\n", {}, "no 'patient_id' column"),
    ("slide_id,h_score\nA1,10\nB1,0\n", {"unit": "slide"}, "at least 2 patients"),
])
def test_calibrate_names_what_is_wrong(tmp_path, truth_text, kwargs, message):
    from cxcr4score.calibrate_command import calibrate
    from cxcr4score.errors import InputError

    results = _results(tmp_path, [("A1", "A", "ok", [0.5] * 10), ("A2", "A", "ok", [0.1] * 10),
                                  ("B1", "B", "ok", [0.1] * 10)])
    if message == "at least 2 patients":
        truth_text = "slide_id,h_score\nA1,10\nA2,0\n"
    with pytest.raises(InputError, match=message):
        calibrate(_truth(tmp_path, truth_text), results, **kwargs)


def test_calibrate_needs_a_results_folder(tmp_path):
    from cxcr4score.calibrate_command import calibrate
    from cxcr4score.errors import InputError

    with pytest.raises(InputError, match="config.effective.yaml not found"):
        calibrate(_truth(tmp_path, "patient_id,h_score\nA,1\n"), tmp_path)


def test_nan_values_are_refused():
    with pytest.raises(ValueError, match="must not be NaN"):
        calibration.shares_at_or_above([np.array([0.1, np.nan])], [0.2])


def test_a_record_without_every_setting_is_refused(tmp_path):
    path = tmp_path / "handmade.yaml"
    path.write_text(f"{FORMAT_KEY}: 1\nthresholds: [0.2, 0.4, 0.6]\nsettings: {{}}\n")
    record, problems = read_record(path)
    assert record is None and "lacks the settings analysis_mpp, default_mpp" in problems[0]


def test_compartment_order_matters_only_as_the_rule_uses_them(tmp_path):
    path = _record(tmp_path, compartments=["cytoplasm", "membrane"])
    ok = {"calibration": str(path), "thresholds": [0.25, 0.45, 0.7], "assay": {"antibody_clone": "UMB2"}}
    assert config.validate(ok)["calibrated"] is True
    membrane_rule = _record(tmp_path, class_rule="membrane", compartments=["nucleus"])
    assert config.validate(ok | {"calibration": str(membrane_rule), "class_rule": "membrane"})["calibrated"]


def test_the_records_assay_must_be_the_configs(tmp_path):
    path = _record(tmp_path)
    with pytest.raises(ConfigError, match="assay.antibody_clone is '' but"):
        config.validate({"calibration": str(path), "thresholds": [0.25, 0.45, 0.7]})


def test_describe_names_the_record_and_its_figures(tmp_path):
    from cxcr4score.calibration_record import describe

    assert describe(config.default_config()) == "thresholds 0.2 / 0.4 / 0.6 (mean DAB OD): not calibrated for this assay"
    path = tmp_path / "rec.yaml"
    write_record({"thresholds": [0.25, 0.45, 0.7], "created": "2026-12-06T10:00:00+00:00",
                  "cxcr4score_version": "9.9", "fitted_to": {"measure": "h_score", "unit": "patient"},
                  "settings": {k: config.default_config()[k] for k in MEASUREMENT_KEYS},
                  "assay": {}, "data": {"patients": 12},
                  "cross_validation": {"held_out": {"mean_abs_error": 8.25, "spearman": 0.9},
                                       "uncalibrated": {"mean_abs_error": 20.0}}}, path)
    text = describe(config.validate({"calibration": str(path), "thresholds": [0.25, 0.45, 0.7]}))
    assert text == (f"thresholds 0.25 / 0.45 / 0.7 (mean DAB OD): calibrated by {path}, fitted to the "
                    "pathologist's h_score of 12 patients (2026-12-06, cxcr4score 9.9); held-out folds: MAE 8.25, "
                    "Spearman 0.9 (MAE 20 at the thresholds before)")


def test_calibrate_per_slide_keeps_a_patients_slides_in_one_fold_and_reports(tmp_path):
    from cxcr4score.calibrate_command import calibrate, format_report

    slides = [(f"{p}{k}", p, "ok", RNG.uniform(0, high, 30)) for p, high in (("A", 0.3), ("B", 0.6), ("C", 0.9))
              for k in range(3)]
    truth = "slide_id,pct_positive\n" + "".join(f"{s[0]},{100 * np.mean(s[3] >= 0.25):.4f}\n" for s in slides)
    record = calibrate(_truth(tmp_path, truth), _results(tmp_path, slides), unit="slide", folds=3)
    folds = {}
    for row in record["per_unit"]:
        folds.setdefault(row["patient_id"], set()).add(row["fold"])
    assert all(len(f) == 1 for f in folds.values()) and record["cross_validation"]["folds"] == 3
    assert record["thresholds"][0] == pytest.approx(0.25, abs=0.011)
    text = format_report(record)
    assert text.startswith("9 slides (3 patients, 270 tumour cells) scored for pct_positive")
    assert "held-out fold, calibrated" in text and "thresholds fitted per fold: " in text


def test_calibrating_calibrated_results_starts_from_the_thresholds_before(tmp_path):
    """A calibrated run's thresholds have seen every case: the fit starts from (and compares
    with) the thresholds before that calibration, so nothing leaks into the held-out folds."""
    from cxcr4score.calibrate_command import calibrate
    from cxcr4score.tables import write_yaml

    results = _results(tmp_path, [("A1", "A", "ok", [0.5] * 10), ("B1", "B", "ok", [0.1] * 10),
                                  ("C1", "C", "ok", [0.3] * 5 + [0.05] * 5)])
    earlier = tmp_path / "earlier.yaml"
    write_record({"thresholds": [0.3, 0.5, 0.8], "uncalibrated_thresholds": [0.2, 0.4, 0.6],
                  "settings": {k: config.default_config()[k] for k in MEASUREMENT_KEYS}}, earlier)
    effective = config.default_config() | {"thresholds": [0.3, 0.5, 0.8], "calibration": str(earlier)}
    write_yaml(effective, results / "config.effective.yaml")
    record = calibrate(_truth(tmp_path, "patient_id,pct_positive\nA,100\nB,0\nC,50\n"), results, folds=3)
    assert record["uncalibrated_thresholds"] == [0.2, 0.4, 0.6]
    assert record["results_calibrated_by"] == str(earlier)


def test_patients_whose_slides_all_failed_are_named_so(tmp_path):
    from cxcr4score.calibrate_command import calibrate

    results = _results(tmp_path, [("A1", "A", "ok", [0.5] * 10), ("B1", "B", "ok", [0.1] * 10),
                                  ("C1", "C", "failed", [0.3] * 10)])
    record = calibrate(_truth(tmp_path, "patient_id,pct_positive\nA,100\nB,0\nC,50\nD,1\n"), results, folds=2)
    assert record["left_out"]["qc_failed"] == ["C"] and record["left_out"]["only_truth"] == ["D"]


def test_cli_warns_when_the_fit_does_not_carry_over(tmp_path, capsys):
    """Hand-worked: A's cells read 0.25 OD (pathologist 100%), B's 0.28 (pathologist 0%): no
    threshold fits both. At the thresholds before (t1 0.3) A is wrong, B right: MAE 50. Fitted
    on A alone t1 is 0.25, which calls B 100%; fitted on B alone t1 stays 0.3, which calls A
    0%: held-out MAE 100, and the command says so."""
    from cxcr4score import cli
    from cxcr4score.tables import write_yaml

    results = _results(tmp_path, [("A1", "A", "ok", [0.25] * 10), ("B1", "B", "ok", [0.28] * 10)])
    write_yaml(config.default_config() | {"thresholds": [0.3, 0.4, 0.6]}, results / "config.effective.yaml")
    truth = _truth(tmp_path, "patient_id,pct_positive\nA,100\nB,0\n")
    code = cli.main(["calibrate", "--truth", str(truth), "--results", str(results), "--out",
                     str(tmp_path / "rec.yaml"), "--folds", "2"])
    out = capsys.readouterr()
    assert code == 0 and "calibration: " in out.out
    cv = yaml.safe_load((tmp_path / "rec.yaml").read_text())["cross_validation"]
    assert cv["held_out"]["mean_abs_error"] == 100 and cv["uncalibrated"]["mean_abs_error"] == 50
    assert "agree less with the pathologist (MAE 100) than the thresholds before (MAE 50)" in out.err


def test_results_of_an_earlier_version_give_a_usable_record(tmp_path):
    """A results folder whose effective config predates a measurement setting: the setting is
    recorded at its default (as the run behaved), so the record passes the config check."""
    from cxcr4score.calibrate_command import calibrate
    from cxcr4score.tables import write_yaml

    results = _results(tmp_path, [("A1", "A", "ok", [0.5] * 10), ("B1", "B", "ok", [0.1] * 10)])
    older = {k: v for k, v in config.default_config().items() if k != "roi_classes"}
    write_yaml(older, results / "config.effective.yaml")
    record = calibrate(_truth(tmp_path, "patient_id,pct_positive\nA,100\nB,0\n"), results, folds=2)
    assert record["settings"]["roi_classes"] == []
    path = tmp_path / "rec.yaml"
    write_record(record, path)
    assert config.validate({"calibration": str(path), "thresholds": record["thresholds"]})["calibrated"]
