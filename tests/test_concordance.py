"""``cxcr4score bench concordance``: agreement figures against published and hand-worked examples,
input errors, and the command end to end on a small results folder."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from cxcr4score import cli
from cxcr4score.bench import concordance as cc
from cxcr4score.eligibility import ELIGIBILITY_COLUMNS

# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges.
SHROUT_FLEISS = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]


def test_icc_matches_shrout_fleiss_and_mcgraw_wong_interval():
    icc, low, high = cc.icc_a1(SHROUT_FLEISS)
    # Shrout & Fleiss report ICC(2,1) = .29; R psych::ICC on the same table prints the
    # McGraw & Wong interval 0.019 to 0.76.
    assert round(icc, 2) == 0.29
    assert (round(low, 3), round(high, 2)) == (0.019, 0.76)


def test_icc_two_raters_by_hand():
    # Grand mean 3; MSR = 2 * (1.5^2 + 0 + 1.5^2) / 2 = 4.5, MSC = 0, MSE = (10 - 9 - 0) / 2 = 0.5:
    # ICC = (4.5 - 0.5) / (4.5 + 0.5 + 2 * (0 - 0.5) / 3) = 6/7.
    assert cc.icc_a1([[1, 2], [3, 3], [5, 4]])[0] == pytest.approx(6 / 7)
    x = np.array([10.0, 40, 80, 150, 220])
    assert cc.icc_a1(np.column_stack([x, x]))[0] == pytest.approx(1.0)
    assert cc.icc_a1(np.column_stack([x, x + 30]))[0] < 0.95  # absolute agreement: a shift counts


def test_lin_ccc_by_hand():
    # y = x + 1: s_x^2 = s_y^2 = s_xy = 2 (1/n moments), mean shift 1: CCC = 4 / (2 + 2 + 1) = 0.8.
    # Interval: r = 1, u^2 = 1 / 2, var(CCC) = (2 * 0.8^3 * 0.2 * 0.5 - 0.8^4 * 0.25 / 2) / 3
    # = 0.0512 / 3; se(z) = sqrt(0.0512 / 3) / (1 - 0.64) = 0.36289; tanh(atanh(0.8) -+ 1.96 se).
    ccc, low, high = cc.lin_ccc([1, 2, 3, 4, 5], [2, 3, 4, 5, 6])
    assert ccc == pytest.approx(0.8)
    half = 1.959964 * math.sqrt(0.0512 / 3) / 0.36
    assert (low, high) == pytest.approx((math.tanh(math.atanh(0.8) - half), math.tanh(math.atanh(0.8) + half)))
    assert round(low, 3) == 0.369
    # y = 2x on 1, 2, 3: s_x^2 = 2/3, s_y^2 = 8/3, s_xy = 4/3, shift 2: CCC = (8/3) / (2/3 + 8/3 + 4) = 4/11.
    assert cc.lin_ccc([1, 2, 3], [2, 4, 6])[0] == pytest.approx(4 / 11)


def test_a_constant_shift_lowers_ccc_but_not_spearman():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 300, 40)
    y = x + rng.normal(0, 10, 40)
    assert cc.lin_ccc(x, x)[0] == pytest.approx(1.0)
    assert cc.spearman(x, x)[0] == pytest.approx(1.0)
    assert cc.lin_ccc(x, y + 50)[0] < cc.lin_ccc(x, y)[0] - 0.05
    assert cc.spearman(x, y + 50)[0] == pytest.approx(cc.spearman(x, y)[0])
    rho, low, high = cc.spearman(x, y)
    assert low < rho < high


def test_bland_altman_by_hand():
    # Differences 1, 0, 1, -1: bias 0.25, SD sqrt(2.75 / 3), limits 0.25 -+ 1.96 SD;
    # bias interval 0.25 -+ t(0.975, 3) * SD / 2 with t = 3.182446.
    result = cc.bland_altman([1, 2, 3, 4], [0, 2, 2, 5])
    sd = math.sqrt(2.75 / 3)
    assert result["bias"] == pytest.approx(0.25)
    assert result["sd"] == pytest.approx(sd)
    assert (result["loa_low"], result["loa_high"]) == pytest.approx((0.25 - 1.96 * sd, 0.25 + 1.96 * sd))
    assert result["bias_ci"] == pytest.approx([0.25 - 3.182446 * sd / 2, 0.25 + 3.182446 * sd / 2])


def _wilson(k, n, z=1.959964):
    p = k / n
    centre, half = p + z**2 / (2 * n), z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return [(centre - half) / (1 + z**2 / n), (centre + half) / (1 + z**2 / n)]


def test_call_agreement_by_hand():
    # Pathologist eligible: ours 5 eligible, 2 not_eligible. Pathologist not_eligible: ours
    # 1 eligible, 4 not_eligible, 1 indeterminate (left out). p_o = 9/12; p_e = (7*6 + 5*6) / 144
    # = 0.5; kappa = (0.75 - 0.5) / 0.5 = 0.5.
    ours = ["eligible"] * 5 + ["not_eligible"] * 2 + ["eligible"] + ["not_eligible"] * 4 + ["indeterminate", "eligible"]
    truth = ["eligible"] * 7 + ["not_eligible"] * 6 + [""]
    result = cc.call_agreement(ours, truth)
    assert result["n"] == 12
    assert result["table"]["not_eligible"]["indeterminate"] == 1
    assert (result["ppa"], result["npa"], result["overall"]) == pytest.approx((5 / 7, 4 / 5, 9 / 12))
    assert result["ppa_ci"] == pytest.approx(_wilson(5, 7))
    assert result["npa_ci"] == pytest.approx(_wilson(4, 5))
    assert result["kappa"] == pytest.approx(0.5)
    # 13 patients with a pathologist call: 12 definite calls of ours, 9 of them agreeing.
    assert (result["definite"], result["overall_all_calls"]) == pytest.approx((12 / 13, 9 / 13))


def test_kappa_is_undefined_when_everyone_agrees_on_one_call():
    result = cc.call_agreement(["eligible"] * 3, ["eligible"] * 3)
    assert result["ppa"] == 1 and result["npa"] is None and result["kappa"] is None


def _results_folder(folder, rows):
    """An eligibility.csv with the contract columns; ``rows`` are (patient_id, call, h_score, pct_positive)."""
    table = pd.DataFrame([dict.fromkeys(ELIGIBILITY_COLUMNS, "") | {
        "patient_id": pid, "call": call, "h_score": h, "pct_positive": pct, "metric": "h_score", "cutoff": 100,
    } for pid, call, h, pct in rows], columns=list(ELIGIBILITY_COLUMNS))
    folder.mkdir(exist_ok=True)
    table.to_csv(folder / "eligibility.csv", index=False)
    return folder


def test_read_truth_keeps_ids_as_text_and_accepts_call_words(tmp_path):
    path = tmp_path / "pathologist.csv"
    path.write_text("patient_id,h_score,call,notes\n007,120,Positive,x\n7,,negative,\n8,NA,,\n")
    truth = cc.read_truth(path)
    assert truth["patient_id"].tolist() == ["007", "7", "8"]
    assert truth["call"].tolist() == ["eligible", "not_eligible", ""]
    assert truth["h_score"].iloc[0] == 120 and np.isnan(truth["h_score"].iloc[1:]).all()
    assert "pct_positive" not in truth.columns


@pytest.mark.parametrize(("text", "message"), [
    ("patient_id,h_score\nP1,12x\n", "pathologist.csv row 1: h_score '12x' is not a number"),
    ("patient_id,h_score\nP1,10\nP2,310\n", "pathologist.csv row 2: h_score '310' is outside 0-300"),
    ("patient_id,call\nP1,maybe\n", "pathologist.csv row 1: call 'maybe' is not one of"),
    ("patient_id,h_score\nP1,10\nP2,20\nP1,30\n", "patient_id 'P1' appears in rows 1, 3"),
    ("patient_id,score\nP1,10\n", "none of the columns h_score, pct_positive, call"),
    ("id,h_score\nP1,10\n", "no 'patient_id' column"),
    ("patient_id,h_score\nP1,10,3\n", "a row has more values than the header"),
])
def test_bad_pathologist_file_gives_one_clear_message_and_status_2(tmp_path, capsys, text, message):
    path = tmp_path / "pathologist.csv"
    path.write_text(text)
    results = _results_folder(tmp_path / "results", [("P1", "eligible", 150.0, 60.0)])
    assert cli.main(["bench", "concordance", "--truth", str(path), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err and "Traceback" not in err


def test_no_shared_patient_and_missing_truth_are_errors(tmp_path, capsys):
    results = _results_folder(tmp_path / "results", [("P1", "eligible", 150.0, 60.0)])
    path = tmp_path / "pathologist.csv"
    path.write_text("patient_id,h_score\nQ1,10\n")
    assert cli.main(["bench", "concordance", "--truth", str(path), "--results", str(results)]) == 2
    assert "no patient_id is in both" in capsys.readouterr().err
    assert cli.main(["bench", "concordance", "--results", str(results)]) == 2
    assert "needs --truth" in capsys.readouterr().err
    assert cli.main(["bench", "concordance", "--truth", str(path), "--results", str(tmp_path)]) == 2
    assert "eligibility.csv: eligibility table not found" in capsys.readouterr().err


def test_concordance_command_end_to_end(tmp_path, capsys):
    ours = [("P1", "eligible", 180.0, 70.0), ("P2", "not_eligible", 40.0, 15.0),
            ("P3", "eligible", 130.0, 55.0), ("P4", "indeterminate", 95.0, 40.0),
            ("P5", "not_eligible", 20.0, 8.0), ("P6", "inadequate", math.nan, math.nan),
            ("P9", "eligible", 200.0, 80.0)]
    results = _results_folder(tmp_path / "results", ours)
    truth = tmp_path / "pathologist.tsv"
    truth.write_text("patient_id\th_score\tpct_positive\tcall\n"
                     "P1\t170\t65\teligible\nP2\t60\t20\tnot_eligible\nP3\t90\t45\tnot_eligible\n"
                     "P4\t110\t50\teligible\nP5\t10\t5\tnot_eligible\nP6\t30\t10\tnot_eligible\n"
                     "P7\t250\t90\teligible\n")
    out = tmp_path / "concordance.json"
    code = cli.main(["bench", "concordance", "--truth", str(truth), "--results", str(results), "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0
    assert f"1 patient(s) only in {truth}, left out: P7" in captured.err
    assert "only in" in captured.err and "P9" in captured.err
    assert "Lin's CCC" in captured.out and "PPA" in captured.out
    result = json.loads(out.read_text())
    assert (result["matched"], result["only_truth"], result["only_ours"]) == (6, ["P7"], ["P9"])
    # P6 has no score of ours: 5 H-score pairs.
    ours_h, truth_h = [180, 40, 130, 95, 20], [170, 60, 90, 110, 10]
    assert result["h_score"]["n"] == 5
    assert result["h_score"]["ccc"] == pytest.approx(cc.lin_ccc(ours_h, truth_h)[0])
    assert result["h_score"]["icc_2_1"] == pytest.approx(cc.icc_a1(np.column_stack([ours_h, truth_h]))[0])
    assert result["h_score"]["bias"] == pytest.approx(np.mean(np.subtract(ours_h, truth_h)))
    calls = result["calls"]
    # Definite pairs: P1 (E, E), P2 (N, N), P3 (E ours, N path), P5 (N, N); P4, P6 counted apart.
    assert calls["n"] == 4
    assert (calls["ppa"], calls["npa"]) == pytest.approx((1.0, 2 / 3))
    assert calls["table"]["eligible"]["indeterminate"] == 1
    assert calls["table"]["not_eligible"]["inadequate"] == 1
