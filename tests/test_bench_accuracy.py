"""The accuracy benchmark (cxcr4score.bench.accuracy): metrics against plain references, and a
quick run over every generator configuration (structure and sanity, never timing)."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cxcr4score import cli, synthetic_cohort
from cxcr4score.bench import accuracy as bench


def _kappa_reference(truth, predicted, k=4):
    """Cohen 1968 weighted kappa, quadratic disagreement weights, written as plain loops."""
    n = len(truth)
    observed = [[0.0] * k for _ in range(k)]
    for t, p in zip(truth, predicted):
        observed[t][p] += 1 / n
    rows = [sum(observed[i]) for i in range(k)]
    cols = [sum(observed[i][j] for i in range(k)) for j in range(k)]
    disagree = sum((i - j) ** 2 * observed[i][j] for i in range(k) for j in range(k))
    chance = sum((i - j) ** 2 * rows[i] * cols[j] for i in range(k) for j in range(k))
    return 1 - disagree / chance


def test_kappa_matches_reference():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, 300)
    predicted = np.clip(truth + rng.integers(-1, 2, 300) * (rng.random(300) < 0.3), 0, 3)
    assert bench._kappa(truth, predicted) == pytest.approx(_kappa_reference(truth, predicted), abs=1e-12)
    assert bench._kappa([0, 1, 2, 3], [0, 1, 2, 3]) == pytest.approx(1.0)
    assert np.isnan(bench._kappa([], []))


def test_pearson_drops_missing_pairs():
    """Reference: scipy.stats.pearsonr on the complete pairs."""
    x = np.array([0.1, 0.5, np.nan, 0.9, 0.3, 0.7])
    y = np.array([0.2, 0.4, 0.5, np.nan, 0.35, 0.8])
    ok = np.isfinite(x) & np.isfinite(y)
    assert bench._pearson(x, y) == pytest.approx(stats.pearsonr(x[ok], y[ok])[0])
    assert np.isnan(bench._pearson([1.0, 1.0, 1.0], [0.0, 1.0, 2.0]))


def test_judge_marks_each_target():
    row = {"tumour_f1": 0.96, "class_kappa": 0.85, "membrane_r": float("nan"), "h_score_mae": 10.0,
           "wrong_outside_ci": 0, "lymphocyte_only_eligible": 1}
    verdicts = {k: v for k, (_, v) in bench.judge(row).items()}
    assert verdicts == {"tumour_f1": "PASS", "class_kappa": "MISS", "membrane_r": "MISS", "h_score_mae": "PASS",
                        "wrong_outside_ci": "PASS", "lymphocyte_only_eligible": "MISS"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One small one-tile patient per configuration, scored through score_slide."""
    return bench.accuracy(patients=1, tiles_per_patient=1, size=384, tmp_dir=tmp_path_factory.mktemp("acc"))


def test_quick_run_covers_every_configuration(quick):
    table, patients = quick
    assert list(table.columns) == list(bench.COLUMNS)
    names = list(synthetic_cohort.CONFIGURATIONS)
    assert table["config"].tolist() == names and table["held_out"].tolist() == [False] * (len(names) - 1) + [True]
    assert (table["tiles"] == 1).all() and (table["patients"] == 1).all()
    assert (table["tumour_f1"] > 0.8).all()
    assert table["h_score_mae"].between(0, 300).all()
    assert table["call_agreement"].isin([0.0, 1.0]).all()
    assert table.set_index("config").loc["lymphocyte_only", "lymphocyte_only_patients"] == 1
    assert set(patients["truth_call"]) <= {"eligible", "not_eligible", "inadequate"}
    assert set(patients["call"]) <= {"eligible", "not_eligible", "indeterminate", "inadequate"}
    # the first patient of each configuration is 35 % positive; lymphocyte_only is tumour-negative
    first = patients.set_index("config")
    assert (first.drop(index="lymphocyte_only")["truth_value"] > 25).all()
    assert first.loc["lymphocyte_only", "truth_value"] == 0


def test_matched_measurements_follow_the_truth(quick):
    table, _ = quick
    scored = table[table["config"] != "lymphocyte_only"]  # no positive tumour cells: r and kappa undefined-ish
    assert (scored["membrane_r"] > 0.5).all() and (scored["class_kappa"] > 0.3).all()


def test_cli_bench_accuracy_rejects_unknown_configuration(capsys):
    assert cli.main(["bench", "accuracy", "--configs", "membrane,nope"]) == 2
    assert "unknown generator configuration(s) nope" in capsys.readouterr().err


def test_cli_bench_accuracy_writes_json(tmp_path, capsys):
    out = tmp_path / "acc.json"
    code = cli.main(["bench", "accuracy", "--configs", "held_out", "--patients", "1", "--tiles", "1",
                     "--size", "256", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "held out" in printed and "held-out targets:" in printed
    payload = json.loads(out.read_text())
    assert pd.DataFrame(payload["table"])["config"].tolist() == ["held_out"]
    assert set(payload["targets"]) == {column for column, _, _ in bench.TARGETS}
    assert set(payload["targets"].values()) <= {"PASS", "MISS"}
